"""Import OpenVINO and NNCF with their usage telemetry declined (``EDGERET_VENDOR_TELEMETRY=1`` allows it).

``import openvino`` initialises ``openvino_telemetry``, which by default writes a client id under
``~/intel`` and lets OpenVINO's model converter and NNCF send usage events to Google Analytics,
forking a process per event. Neither belongs on a medical build host or camera, and a fork in a
process that already runs threads (JAX, which litert-torch loads) can deadlock. The consent is
decided once per process, when the telemetry object is first made; besides a consent file in the
user's home its only switch is ``CI=true``, so that is set around the first import and restored.
Later re-initialisations (``openvino.convert_model`` makes one) would ask again: edgeret reads ONNX
with ``Core.read_model`` instead.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

OPT_IN_ENV = "EDGERET_VENDOR_TELEMETRY"


def quiet_import(name: str) -> ModuleType:
    """``importlib.import_module(name)``, the first import made with vendor telemetry declined."""
    if name in sys.modules or os.environ.get(OPT_IN_ENV) == "1":
        return importlib.import_module(name)
    saved = os.environ.get("CI")
    os.environ["CI"] = "true"  # openvino_telemetry: disable_in_ci
    try:
        return importlib.import_module(name)
    finally:
        if saved is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = saved
