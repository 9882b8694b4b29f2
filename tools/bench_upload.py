"""Benchmark the upload path: camera agent -> hub (-> Orthanc when installed).

    python tools/bench_upload.py [--fundus 10] [--oct 10] [--out benchmarks] [--threads 1] [--workers 1]

Writes benchmarks/upload.{json,md} and prints the table. Runtime only (no torch):
the hub runs as its own process (`edgeret serve`), the agent in this one, both on
ONNX Runtime with the committed models, over loopback. Three runs over the same
captures, side by side:

* ``clean``  the agent uploads straight to the hub;
* ``faulty`` through a TCP proxy that resets, cuts mid-body or stalls half of the
  connections (the agent's retry delays start at 0.05 s here, 1 s by default);
* ``pacs``   as clean, with the hub forwarding to a real Orthanc (skipped, and said
  so, when Orthanc is not installed).

Captures: fundus phantoms 512x512 (seeds 9 000 000+) and OCT B-scans 640x1024
(seeds 9 100 000+), good quality, written as PNG like a camera would.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# the loopback fault proxy, the Orthanc launcher and the in-process agent live with the tests
sys.path.insert(0, str(ROOT / "tests"))

from hub_helpers import make_agent  # noqa: E402
from net_faults import FaultyProxy, free_port  # noqa: E402
from orthanc_server import orthanc_missing_reason, start_orthanc  # noqa: E402

from edgeret.link.protocol import wait_for_hub  # noqa: E402
from edgeret.reports import markdown_table, write_report  # noqa: E402


def write_captures(folder: Path, n_fundus: int, n_oct: int) -> None:
    from edgeret.build.data.fundus import generate_fundus
    from edgeret.build.data.oct import generate_oct

    folder.mkdir(parents=True)
    for i in range(n_fundus):
        image = generate_fundus(9_000_000 + i, size=512, quality="good").image
        cv2.imwrite(str(folder / f"fundus{i:02d}.png"), np.ascontiguousarray(image[:, :, ::-1]))
    for i in range(n_oct):
        cv2.imwrite(str(folder / f"oct{i:02d}.png"), generate_oct(9_100_000 + i, quality="good").image)


def start_hub(store: Path, port: int, threads: int, pacs: str | None, workers: int = 1) -> subprocess.Popen:
    argv = [sys.executable, "-m", "edgeret", "serve", "--store", str(store), "--port", str(port),
            "--threads", str(threads), "--workers", str(workers)] + (["--pacs", pacs] if pacs else [])
    hub = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_for_hub(f"http://127.0.0.1:{port}"):
        raise SystemExit("the hub did not start")
    return hub


def hub_records(store: Path, *, pacs: bool, seconds: float = 600) -> list[dict]:
    """The hub's records once its workers finished them all (and, with ``pacs``, its outbox is empty)."""
    from edgeret.hub.db import open_repository, sqlite_url

    db = open_repository(sqlite_url(store), upgrade=False)
    try:
        deadline = time.perf_counter() + seconds
        while ((db.ids("stored") or db.ids("decoded") or (pacs and db.outbox_waiting()))
               and time.perf_counter() < deadline):
            time.sleep(0.05)
        return [db.get(i) for i in db.ids()]
    finally:
        db.close()


def one_run(name: str, captures: Path, work: Path, threads: int, *, faults: bool = False,
            pacs: str | None = None, workers: int = 1) -> dict:
    inbox, store = work / name / "inbox", work / name / "store"
    shutil.copytree(captures, inbox)
    port = free_port()
    hub = start_hub(store, port, threads, pacs, workers)
    proxy = None
    url = f"http://127.0.0.1:{port}"
    if faults:
        n = len(list(captures.iterdir()))
        proxy = FaultyProxy(port, ["reset", "pass", "cut", "pass", "stall", "pass"] * n, cut_after=2000)
        url = proxy.url
    agent = make_agent(inbox, work / name / "spool", url, timeout=2.0, retry_first=0.05, threads=threads)
    try:
        start = time.perf_counter()
        agent.ingest()
        ingested = time.perf_counter()
        code = agent.run_once(max_wait=600)
        delivered = time.perf_counter()
        records = hub_records(store, pacs=False)  # the hub answers before decoding: wait for its workers
        processed = time.perf_counter()
        if pacs:
            records = hub_records(store, pacs=True)
        forwarded = time.perf_counter()
    finally:
        if proxy:
            proxy.close()
        hub.terminate()
        hub.wait(timeout=30)
    count = len(records)
    png = sum(p.stat().st_size for p in captures.iterdir())
    sent = sum(r["stream"]["bytes"] for r in records)
    raw = sum(r["stream"]["height"] * r["stream"]["width"] * r["stream"]["channels"] for r in records)
    row = {
        "run": name, "exit_code": code, "captures": count, "retries": sum(s != "pass" for s in proxy.seen)
        if proxy else 0,
        "device_ms_per_capture": (ingested - start) * 1000 / count,
        "upload_s": delivered - ingested, "processed_s": processed - ingested,
        "captures_per_s": count / (processed - ingested),
        "hub_decode_ms_median": statistics.median(r["decode_ms"] for r in records),
        "bytes_sent": sent, "png_bytes": png, "raw_bytes": raw,
        "png_over_sent": png / sent, "raw_over_sent": raw / sent,
    }
    if pacs:
        row["pacs_forwarded"] = sum(bool((r.get("pacs") or {}).get("sop_instance_uid")) for r in records)
        row["pacs_s"] = forwarded - delivered
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fundus", type=int, default=10)
    parser.add_argument("--oct", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="edgeret serve --workers")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        work = Path(tmp)
        write_captures(work / "captures", args.fundus, args.oct)
        rows = [one_run("clean", work / "captures", work, args.threads, workers=args.workers),
                one_run("faulty", work / "captures", work, args.threads, faults=True, workers=args.workers)]
        missing = orthanc_missing_reason()
        if missing is None:
            orthanc = start_orthanc(work / "orthanc")
            try:
                rows.append(one_run("pacs", work / "captures", work, args.threads, pacs=orthanc.dicomweb,
                                    workers=args.workers))
            finally:
                orthanc.stop()
    headers = ["run", "captures", "exit", "retries", "device ms/capture", "acknowledged s", "processed s",
               "captures/s",
               "hub decode ms (median)", "sent KiB", "PNG / sent", "raw / sent", "to PACS"]
    table = [[r["run"], r["captures"], r["exit_code"], r["retries"],
              f"{r['device_ms_per_capture']:.0f}",
              f"{r['upload_s']:.2f}", f"{r['processed_s']:.2f}", f"{r['captures_per_s']:.1f}",
              f"{r['hub_decode_ms_median']:.0f}",
              f"{r['bytes_sent'] / 1024:.0f}", f"{r['png_over_sent']:.1f}", f"{r['raw_over_sent']:.1f}",
              f"{r['pacs_forwarded']} in {r['pacs_s']:.2f} s" if "pacs_forwarded" in r else "-"]
             for r in rows]
    md = ["# Upload path: camera agent -> hub -> PACS", "",
          f"`python tools/bench_upload.py --fundus {args.fundus} --oct {args.oct} --threads {args.threads} "
          f"--workers {args.workers}` "
          f"on {os.cpu_count()} cores; hub = `edgeret serve` in its own process, loopback HTTP, "
          "ONNX Runtime.",
          "device ms/capture = quality grading + learned-codec encoding + spool commit (no torch); "
          "acknowledged s = from the first upload to the last acknowledgement (the hub answers once a "
          "stream is stored); processed s = until the hub's workers decoded, graded and wrote DICOM for "
          "all (captures/s is over this). to PACS = objects in Orthanc, and how long after the last "
          "acknowledgement the hub's outbox was empty (forwarding runs while uploads go on). "
          "faulty = every other connection reset, cut mid-body or stalled (2 s timeout).",
          "", markdown_table(headers, table), ""]
    if missing:
        md.append(f"No PACS run: {missing}.")
    data = {"rows": rows, "args": vars(args) | {"out": str(args.out)}}
    write_report(args.out, "upload", data, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
