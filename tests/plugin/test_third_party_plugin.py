"""A separately packaged plugin, pip-installed into this environment, just works."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import ROOT, run_cli, run_cli_json

PLUGIN_DIR = ROOT / "tests" / "third_party_plugin"


@pytest.fixture(scope="module")
def installed_plugin():
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", str(PLUGIN_DIR)],
                   check=True, capture_output=True, timeout=300)
    yield
    subprocess.run([*pip, "uninstall", "-y", "edgeret-example-plugin"], check=True,
                   capture_output=True, timeout=300)


def test_installed_plugin_is_listed_with_its_distribution(installed_plugin):
    data = run_cli_json("plugins")
    plugin = {p["name"]: p for p in data["plugins"]}["exposure"]
    assert plugin["distribution"] == "edgeret-example-plugin"
    assert plugin["version"] == "0.4.0"
    assert plugin["registers"] == {"task": ["exposure-check"]}


def test_installed_plugin_task_runs_on_onnxruntime(installed_plugin, tmp_path):
    dark, bright = tmp_path / "dark.png", tmp_path / "bright.png"
    cv2.imwrite(str(dark), np.full((90, 120, 3), 20, np.uint8))
    gradient = np.tile(np.linspace(200, 255, 120, dtype=np.float32), (90, 1))
    cv2.imwrite(str(bright), gradient.astype(np.uint8))
    data = run_cli_json("run", "exposure-check", str(dark), str(bright))
    assert data["backend"] == "onnxruntime"
    by_image = {r["image"]: r for r in data["results"]}
    assert by_image[str(dark)]["exposure"] == "under"
    assert by_image[str(dark)]["mean_intensity"] == pytest.approx(20 / 255, abs=1e-4)
    assert by_image[str(bright)]["exposure"] == "over"
    assert by_image[str(bright)]["mean_intensity"] == pytest.approx(gradient.mean() / 255, abs=2e-3)


def test_one_bad_image_does_not_hide_the_others(installed_plugin, tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    cv2.imwrite(str(good), np.full((64, 64), 128, np.uint8))
    bad.write_bytes(b"not an image at all")
    proc = run_cli("run", "exposure-check", str(good), str(bad), "--json")
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "Traceback" not in proc.stderr
    assert '"exposure": "ok"' in proc.stdout



def test_the_hub_grades_with_an_installed_plugin_task(installed_plugin, tmp_path):
    """A researcher's own task runs at the hub with `--grade oct=TASK`, no edgeret code changed."""
    import socket

    from hub_helpers import stored_records

    from edgeret.build.data.oct import generate_oct
    from edgeret.link.protocol import wait_for_hub

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cv2.imwrite(str(inbox / "scan.png"), generate_oct(41, height=256, width=512, quality="good").image)
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    hub = subprocess.Popen([sys.executable, "-m", "edgeret", "serve", "--store", str(tmp_path / "store"),
                            "--port", str(port), "--grade", "oct=exposure-check"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for_hub(f"http://127.0.0.1:{port}"), "the hub did not start"
        proc = run_cli("agent", "--inbox", str(inbox), "--spool", str(tmp_path / "spool"), "--hub",
                       f"http://127.0.0.1:{port}", "--once", "--settle", "0", "--quality", "oct=none")
    finally:
        hub.terminate()
        hub.wait(timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (record,) = stored_records(tmp_path / "store").values()
    assert record["findings"]["task"] == "exposure-check" and record["findings"]["exposure"] in (
        "under", "ok", "over")
    assert record["device_quality"] == {"task": None}
    bad = run_cli("serve", "--store", str(tmp_path / "x"), "--port", "0", "--grade", "oct=no-such-task")
    assert bad.returncode == 2 and "no-such-task" in bad.stderr


def test_a_third_party_exporter_backend_and_device_make_a_verified_bundle(installed_plugin, tmp_path):
    """A new artifact format needs no edit of the core: the example plugin's exporter targets its own
    backend, the backend loads its format, its device profile names the backend."""
    out = tmp_path / "bundle"
    proc = run_cli("export", "--device", "example-npu-board", "--tasks", "quality-oct", "--heldout", "24",
                   "--golden", "4", "--threads", "1", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "edgeret.json").read_text())
    entry = manifest["tasks"]["quality-oct"]
    assert (entry["format"], entry["exporter"], entry["target_backend"], entry["gate_backend"]) == (
        "example-npu-blob", "example-npu-compiler", "example-npu", "example-npu")
    assert entry["artifact"] == "quality-oct/model.blob" and entry["gate"]["passed"]
    assert entry["exporter_options"] == {"tiling": "auto"}  # the exporter's own options, recorded
    assert entry["quantization"]["quantization"] == "example-npu blob, auto tiling"  # read back from the blob
    proc = run_cli("verify", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "example-npu" in proc.stdout and "quality-oct" in proc.stdout
