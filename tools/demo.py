"""The main job on the embedded default (x86-cpu, ONNX Runtime, no torch).

Grows with the pipeline: today it lists plugins and device profiles, resolves
the `jetson` alias, generates labelled fundus and OCT phantoms in the layout
the training/eval readers take, reads them back, grades them with the
committed quality and DR models on ONNX Runtime, restores a capture (denoise,
x2 super-resolution), encodes captures to `.ert` streams on the device side and
decodes them as the hub would; finally runs the hub (`edgeret serve`) and the
device agent (`edgeret agent`), which grades, encodes and uploads a camera's
inbox; the hub decodes, grades and writes DICOM.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from edgeret.cli import main as edgeret
from edgeret.link.protocol import wait_for_hub

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "out/demo")


def step(title: str, *argv: str) -> None:
    print(f"\n$ edgeret {' '.join(argv)}    # {title}", flush=True)
    code = edgeret(list(argv))
    if code != 0:
        raise SystemExit(code)


def run_hub_and_agent(captures: list[str]) -> None:
    """Start the hub as its own process, let the agent send a camera's inbox to it, show the records."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    print(f"\n$ edgeret serve --store {OUT / 'hub'} --port {port} &    # the hub, in the background",
          flush=True)
    hub = subprocess.Popen([sys.executable, "-m", "edgeret", "serve", "--store", str(OUT / "hub"),
                            "--port", str(port)])
    try:
        wait_for_hub(url, timeout=10)
        inbox = OUT / "camera" / "inbox"
        inbox.mkdir(parents=True)
        for path in captures:
            shutil.copy(path, inbox)
        step("device: grade, encode and upload the camera's captures (store-and-forward)", "agent",
             "--inbox", str(inbox), "--spool", str(OUT / "camera" / "spool"), "--hub", url, "--once",
             "--settle", "0")
        # the hub answers each upload once the stream is stored; its workers decode and grade after
        health = json.loads(urllib.request.urlopen(f"{url}/v1/health", timeout=5).read())
        deadline = time.monotonic() + 120
        while health.get("queued") and time.monotonic() < deadline:
            time.sleep(0.2)
            health = json.loads(urllib.request.urlopen(f"{url}/v1/health", timeout=5).read())
        print(f"hub: {health['captures']} captures stored and processed, DICOM under "
              f"{OUT / 'hub' / 'dicom'}/")
    finally:
        hub.terminate()
        hub.wait(timeout=30)


if __name__ == "__main__":
    shutil.rmtree(OUT, ignore_errors=True)  # the demo's own outputs from a previous run
    step("installed plugins", "plugins")
    step("device profiles and the backend each would use here", "devices")
    step("resolve the jetson alias", "devices", "show", "jetson")
    step("synthetic fundus phantoms with DR grade and quality labels",
         "data", "synth", "--modality", "fundus", "--n", "24", "--seed", "1",
         "--out", str(OUT / "fundus"))
    step("synthetic OCT B-scans with quality sub-labels",
         "data", "synth", "--modality", "oct", "--n", "12", "--seed", "1",
         "--out", str(OUT / "oct"))
    step("read them back as a dataset", "data", "check", str(OUT / "fundus"))
    fundus = sorted(str(p) for p in (OUT / "fundus" / "images").glob("*.png"))[:6]
    octs = sorted(str(p) for p in (OUT / "oct" / "images").glob("*.png"))[:4]
    step("grade fundus capture quality on ONNX Runtime (no torch)", "run", "quality-fundus", *fundus)
    step("quality-guided DR grading: poor captures say 'retake'", "run", "dr-grade", *fundus)
    step("OCT quality with the paper's sub-labels", "run", "quality-oct", *octs)
    step("denoise a fundus capture (DnCNN, tiled)", "run", "denoise", fundus[0],
         "-o", str(OUT / "restored" / "denoised.png"))
    step("x2 super-resolution (LapSRN)", "run", "sr", fundus[0], "--scale", "2",
         "-o", str(OUT / "restored" / "x2.png"))
    step("device: encode an OCT B-scan to the learned codec's bitstream", "encode", octs[0],
         "-o", str(OUT / "streams" / "scan.ert"))
    step("device: encode a fundus photograph", "encode", fundus[0], "-o", str(OUT / "streams" / "photo.ert"))
    for name in ("scan", "photo"):
        step("hub: decode the stream", "decode", str(OUT / "streams" / f"{name}.ert"),
             "-o", str(OUT / "decoded" / f"{name}.png"))
    run_hub_and_agent(fundus[1:4] + octs[1:3])
    print(f"\ndemo finished: outputs under {OUT}/")
