"""The device runtime never imports torch (it is not installed on cameras)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys, json
from edgeret.plugin.host import Host, device_catalog
from edgeret.cli import main
host = Host()
host.tasks(); host.backends(); host.exporters(); host.subcommands()
catalog = device_catalog(host)
assert catalog.resolve("jetson").name == "jetson-orin-nano"
for argv in (["plugins", "--json"], ["devices", "--json"], ["devices", "show", "jetson"]):
    assert main(argv) == 0
BUILD_HOST_ONLY = {"torch", "onnx", "onnxscript", "nncf", "tensorflow", "litert_torch"}
heavy = sorted(m for m in sys.modules if m.split(".")[0] in BUILD_HOST_ONLY)
print("HEAVY=" + json.dumps(heavy), file=sys.stderr)
"""


def test_runtime_paths_do_not_import_torch():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    heavy_line = [line for line in proc.stderr.splitlines() if line.startswith("HEAVY=")][0]
    assert heavy_line == "HEAVY=[]", heavy_line


AGENT_PROBE = """
import sys, json, pathlib, tempfile
import cv2, numpy as np
from edgeret.cli import main
import edgeret.hub.server, edgeret.hub.forwarder, edgeret.hub.pacs, edgeret.hub.dicom_out  # the hub's modules
tmp = pathlib.Path(tempfile.mkdtemp())
(tmp / "inbox").mkdir()
cv2.imwrite(str(tmp / "inbox" / "scan.png"), np.random.default_rng(0).integers(0, 255, (256, 512), np.uint8))
code = main(["agent", "--inbox", str(tmp / "inbox"), "--spool", str(tmp / "spool"), "--hub", "http://127.0.0.1:9",
             "--once", "--settle", "0", "--max-wait", "0"])
assert code == 3, code  # graded and encoded, then queued: nothing listens on port 9
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "onnx", "nncf", "litert_torch"})
print("HEAVY=" + json.dumps(heavy), file=sys.stderr)
"""


def test_the_device_agent_and_the_hub_do_not_import_torch():
    proc = subprocess.run([sys.executable, "-c", AGENT_PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("HEAVY=")] == ["HEAVY=[]"]
