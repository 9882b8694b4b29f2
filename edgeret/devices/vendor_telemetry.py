"""OpenVINO and NNCF with their usage telemetry declined (``EDGERET_VENDOR_TELEMETRY=1`` allows it).

``import openvino`` initialises ``openvino_telemetry``, which by default writes a client id under
``~/intel`` and lets OpenVINO's model converter and NNCF send usage events to Google Analytics,
forking a process per event. Neither belongs on a medical build host or camera, and a fork in a
process that already runs threads (JAX, which litert-torch loads) can deadlock. The consent is
decided when the telemetry object is (re-)initialised: at the first ``import openvino`` and again
by each ``openvino.convert_model``. Besides a consent file in the user's home its only switch is
``CI=true``, so :func:`telemetry_declined` sets it around those calls and restores it after.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

OPT_IN_ENV = "EDGERET_VENDOR_TELEMETRY"


@contextmanager
def telemetry_declined() -> Iterator[None]:
    """Inside: openvino_telemetry declines (its ``disable_in_ci`` check), unless the user opted in."""
    if os.environ.get(OPT_IN_ENV) == "1":
        yield
        return
    saved = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = saved


def quiet_import(name: str) -> ModuleType:
    """``importlib.import_module(name)``, the first import made inside :func:`telemetry_declined`."""
    if name in sys.modules:
        return importlib.import_module(name)
    with telemetry_declined():
        return importlib.import_module(name)
