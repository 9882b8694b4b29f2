"""Benchmark phantom generation: 1,000 fundus 512x512 images on all cores (target < 60 s),
and OCT 640x1024 B-scans. Prints figures; writes benchmarks/phantoms.{json,md}.

    python tools/bench_phantoms.py [--n 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from edgeret.reports import markdown_table, write_report


def _fundus(seed: int) -> int:
    from edgeret.build.data.fundus import generate_fundus

    return int(generate_fundus(seed, size=512).image[0, 0, 0])


def _oct(seed: int) -> int:
    from edgeret.build.data.oct import generate_oct

    return int(generate_oct(seed).image[0, 0])


def timed(fn, n: int, workers: int) -> float:
    start = time.perf_counter()
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(fn, range(n), chunksize=16))
    else:
        for seed in range(n):
            fn(seed)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks"))
    args = parser.parse_args()
    rows, results = [], {}
    for name, fn, n in (("fundus 512x512", _fundus, args.n), ("OCT 640x1024", _oct, args.n // 2)):
        seconds = timed(fn, n, args.workers)
        single = timed(fn, 50, 1) / 50
        results[name] = {"n": n, "workers": args.workers, "seconds": seconds,
                         "per_image_ms_single_process": single * 1000}
        rows.append((name, n, args.workers, round(seconds, 2), round(single * 1000, 1)))
        print(f"{name}: {n} images in {seconds:.1f} s on {args.workers} workers; "
              f"{single * 1000:.1f} ms/image in one process")
    target = results["fundus 512x512"]["seconds"] * 1000 / args.n
    verdict = "meets" if target <= 60 else "misses"
    print(f"target: 1,000 fundus images < 60 s -> {target:.1f} s per 1,000 ({verdict})")
    md = (f"# Phantom generation ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores)\n\n"
          + markdown_table(("generator", "images", "workers", "seconds", "ms/image (1 process)"), rows)
          + f"\nTarget 1,000 fundus images < 60 s: {target:.1f} s ({verdict}).\n")
    write_report(args.out, "phantoms", {"results": results, "target_s_per_1000": target}, md)


if __name__ == "__main__":
    main()
