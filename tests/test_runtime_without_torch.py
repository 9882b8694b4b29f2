"""The device runtime never imports torch (it is not installed on cameras)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys, json
from edgeret.host import Host, device_catalog
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
