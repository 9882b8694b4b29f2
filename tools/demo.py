"""The main job on the embedded default (x86-cpu, ONNX Runtime, no torch).

Grows with the pipeline: today it lists plugins and device profiles, resolves
the `jetson` alias, generates labelled fundus and OCT phantoms in the layout
the training/eval readers take, reads them back, grades them with the
committed quality and DR models on ONNX Runtime, restores a capture (denoise,
x2 super-resolution), encodes captures to `.ert` streams on the device side and
decodes them as the hub would; finally runs the hub (`edgeret serve`) and the
device agent (`edgeret agent`), which grades, encodes and uploads a camera's
inbox; the hub decodes, grades and writes DICOM; last, the reader app on the hub's database, with
screenshots of its worklist and of one capture when headless chromium is available.
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


def show_reader_app() -> None:
    """The reader app on the demo hub's database: a demo reader logs in; screenshots of the worklist and
    one capture under OUT with headless chromium when this environment has it (else how to see it)."""
    import secrets

    from edgeret.reader.serve import reader_extra_missing

    missing = reader_extra_missing()
    if missing:
        print(f"\nreader app: skipped ({missing})")
        return
    from edgeret.hub.db import sqlite_url
    from edgeret.hub.db.repository import HubRepository
    from edgeret.reader.screens import screenshot_app, unavailable
    from edgeret.reader.serve import ReaderServer

    hub = OUT / "hub"
    secret = OUT / "reader-password"
    secret.write_text(secrets.token_urlsafe(12) + "\n")
    secret.chmod(0o600)
    step("a reader who may log in to the reader app", "readers", "add", "demo", "--store", str(hub),
         "--password-file", str(secret))
    server = ReaderServer(sqlite_url(hub), hub, log=lambda line: None).start()
    try:
        print(f"reader app: {server.url}/ on the demo hub's database (edgeret serve starts one beside "
              "the hub)")
        reason = unavailable()
        if reason:
            print(f"reader app: no screenshots ({reason}); to see it: edgeret serve --store {hub}, open the "
                  f"'reader app:' URL it prints, log in as demo with the password in {secret}")
            return
        repo = HubRepository(server.engine)
        ids = repo.ids()
        fundus = [i for i in ids if (repo.row(i).modality == "fundus")] or ids
        try:
            saved = screenshot_app(server.url, "demo", secret.read_text().strip(), OUT,
                                   fundus[0] if fundus else None)
        except Exception as exc:  # a browser that cannot start here must not fail the demo
            print(f"reader app: no screenshots (chromium: {str(exc).splitlines()[0][:200]})")
            return
        print("reader app: screenshots " + ", ".join(str(p) for p in saved))
    finally:
        server.stop()


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
    show_reader_app()
    print(f"\ndemo finished: outputs under {OUT}/")
