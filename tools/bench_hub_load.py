"""Load the hub as cameras would: pre-encoded captures uploaded by several cameras at once.

    python tools/bench_hub_load.py [--fundus 8] [--oct 8] [--cameras 4] [--workers 1 2]

Encodes the captures once (the agent's own path, as a camera would), then for each
``--workers`` value starts ``edgeret serve --workers N`` as its own process and lets
``--cameras`` threads upload their share at once (each retrying a 503 after its
Retry-After, as the agent does). Prints, per run: acknowledgement latency of the PUTs
(p50 / p95 / max), the time until every capture is graded and captures/s over it, the
hub's RSS at idle and its peak (VmHWM), and whether the store, the database and the
uploads agree (nothing lost or duplicated).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hub_helpers import make_agent  # noqa: E402
from net_faults import free_port  # noqa: E402

from edgeret.camera.upload import Uploader  # noqa: E402
from edgeret.link.protocol import wait_for_hub  # noqa: E402


def encode(work: Path, n_fundus: int, n_oct: int) -> list:
    import cv2
    import numpy as np

    from edgeret.build.data.fundus import generate_fundus
    from edgeret.build.data.oct import generate_oct

    inbox = work / "inbox"
    inbox.mkdir(parents=True)
    for i in range(n_fundus):
        image = generate_fundus(9_200_000 + i, size=512, quality="good").image
        cv2.imwrite(str(inbox / f"fundus{i:02d}.png"), np.ascontiguousarray(image[:, :, ::-1]))
    for i in range(n_oct):
        cv2.imwrite(str(inbox / f"oct{i:02d}.png"), generate_oct(9_300_000 + i, quality="good").image)
    agent = make_agent(inbox, work / "spool", "http://127.0.0.1:1")
    agent.ingest()
    items = agent.spool.pending()
    agent.spool.close()
    return items


def status(pid: int, key: str) -> int:
    """VmRSS / VmHWM of a process in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def one_run(items: list, work: Path, workers: int, cameras: int) -> dict:
    from edgeret.hub.db import open_repository, sqlite_url

    store, port = work / f"store-{workers}", free_port()
    hub = subprocess.Popen([sys.executable, "-m", "edgeret", "serve", "--store", str(store), "--port",
                            str(port), "--workers", str(workers), "--threads", "1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_for_hub(url, timeout=60):
            raise SystemExit("the hub did not start")
        time.sleep(1.0)
        idle_rss = status(hub.pid, "VmRSS")
        latencies: list[float] = []
        sent: list[str] = []
        retries = [0]
        lock = threading.Lock()

        def camera(share: list) -> None:
            uploader = Uploader(url, timeout=60)
            for item in share:
                stream = item.read_stream()
                while True:
                    begun = time.perf_counter()
                    outcome = uploader.send(item.capture_id, stream, item.meta)
                    if outcome.kind == "delivered":
                        with lock:
                            latencies.append(time.perf_counter() - begun)
                            sent.append(item.capture_id)
                        break
                    with lock:
                        retries[0] += 1
                    time.sleep(10 if "503" in outcome.detail else 0.5)  # the 503's Retry-After

        shares = [items[k::cameras] for k in range(cameras)]
        start = time.perf_counter()
        threads = [threading.Thread(target=camera, args=(share,)) for share in shares]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        acknowledged = time.perf_counter() - start
        db = open_repository(sqlite_url(store), upgrade=False)
        try:
            while db.ids("stored") or db.ids("decoded"):
                time.sleep(0.05)
            done = time.perf_counter() - start
            statuses = [db.get(i)["status"] for i in db.ids()]
        finally:
            db.close()
        peak = status(hub.pid, "VmHWM")
    finally:
        hub.terminate()
        hub.wait(timeout=120)
    latencies.sort()
    return {"workers": workers, "captures": len(items), "cameras": cameras, "retries": retries[0],
            "ack_p50_s": statistics.median(latencies),
            "ack_p95_s": latencies[int(0.95 * (len(latencies) - 1))],
            "ack_max_s": latencies[-1], "acknowledged_s": acknowledged, "graded_s": done,
            "captures_per_s": len(items) / done, "idle_rss_mb": idle_rss / 1e6, "peak_rss_mb": peak / 1e6,
            "graded": statuses.count("graded"), "rows": len(statuses),
            "streams": len(list((store / "streams").iterdir())),
            "dicom": len(list((store / "dicom").iterdir())),
            "unique_sent": len(set(sent))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fundus", type=int, default=8)
    parser.add_argument("--oct", type=int, default=8)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-hub-load-") as tmp:
        items = encode(Path(tmp), args.fundus, args.oct)
        rows = [one_run(items, Path(tmp), w, args.cameras) for w in args.workers]
    print(f"{os.cpu_count()} cores; {len(items)} captures ({args.fundus} fundus 512x512, {args.oct} OCT "
          f"640x1024), {args.cameras} cameras at once")
    for r in rows:
        print(f"workers {r['workers']}: PUT answered p50 {r['ack_p50_s']:.2f} s, p95 {r['ack_p95_s']:.2f} s, "
              f"max {r['ack_max_s']:.2f} s ({r['retries']} retries after 503); all acknowledged in "
              f"{r['acknowledged_s']:.1f} s, all graded in {r['graded_s']:.1f} s = {r['captures_per_s']:.2f} "
              f"captures/s; hub RSS idle {r['idle_rss_mb']:.0f} MB, peak {r['peak_rss_mb']:.0f} MB; "
              f"rows {r['rows']} (graded {r['graded']}), streams {r['streams']}, DICOM {r['dicom']}, "
              f"uploads {r['unique_sent']}")


if __name__ == "__main__":
    main()
