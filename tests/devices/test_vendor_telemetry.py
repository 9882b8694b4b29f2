"""OpenVINO export and runtime send no vendor telemetry and write nothing in the user's home.

Each probe runs in a fresh interpreter (the telemetry consent is decided once per process, at the
first ``import openvino``) with HOME in a temporary folder and CI unset, as on a build host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

EXPORT_PROBE = """
import json, os, sys
import numpy as np, torch
forks = []
_fork = os.fork
def counting_fork():
    forks.append(1)
    return _fork()
os.fork = counting_fork  # openvino_telemetry sends each event from a forked process
from edgeret_exporters.onnx_exporter import export_onnx
from edgeret_exporters.openvino_ir import onnx_to_openvino
from edgeret_plugins.backends.openvino_backend import OpenVinoRunner
out = sys.argv[1]
nn = torch.nn
net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
export_onnx(net, (torch.zeros(1, 1, 16, 16),), f"{out}/m.onnx", input_names=["x"], output_names=["y"])
onnx_to_openvino(f"{out}/m.onnx", f"{out}/m32.xml", "fp32")
calibration = [{"x": np.random.default_rng(i).random((1, 1, 16, 16), dtype=np.float32)} for i in range(4)]
onnx_to_openvino(f"{out}/m.onnx", f"{out}/m8.xml", "int8", calibration)
OpenVinoRunner(__import__("pathlib").Path(f"{out}/m8.xml"))
print(json.dumps({"forks": len(forks), "ci": os.environ.get("CI")}))
"""


def _run(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    home = tmp_path / "home"
    home.mkdir()
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "EDGERET_VENDOR_TELEMETRY")}
    return subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env={**clean, "HOME": str(home), **env})


def test_an_openvino_int8_export_sends_nothing_and_leaves_home_alone(tmp_path):
    proc = _run(EXPORT_PROBE, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"forks": 0, "ci": None}  # no sender process; CI is unset again after the import
    assert (tmp_path / "m8.xml").exists()
    assert not (tmp_path / "home" / "intel").exists()


def test_the_opt_in_gives_openvino_its_default_telemetry(tmp_path):
    # only the import: with consent, openvino_telemetry writes its client id (no event is sent)
    code = "from edgeret.devices.vendor_telemetry import quiet_import; quiet_import('openvino')"
    proc = _run(code, tmp_path, EDGERET_VENDOR_TELEMETRY="1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "home" / "intel").is_dir()
