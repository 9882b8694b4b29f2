"""Peak memory and time of the hub's decoder for images of a declared size, each in a fresh process.

A ~200-byte stream (empty payloads) may declare any size; the hub refuses those over
`edgeret serve --max-pixels` before decoding. This measures what decoding costs up to that limit, with
the tiled decoder (today) and, side by side for the smaller sizes, the whole-image decoder.
Writes benchmarks/hub-decode-memory.{json,md}.

    python tools/bench_hub_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

SIZES = [(1024, 1024, True), (2048, 2048, True), (4096, 2048, False), (4000, 3000, False)]
CHILD = """
import resource, sys, time
import edgeret.codec.session as codec_io
from edgeret.plugin.host import get_host
if sys.argv[2] == "whole":
    codec_io.run_decoder.__defaults__ = (1 << 20, codec_io.HALO_Y0)  # one tile: the whole image
host = get_host()
session = codec_io.CodecSession(codec_io.CodecCatalog.of_plugin(host), host.backend("onnxruntime"), threads=2)
start = time.perf_counter()
session.decode_bytes(open(sys.argv[1], "rb").read())
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def main() -> int:
    from hub_helpers import empty_stream

    from edgeret.codec.session import CodecCatalog
    from edgeret.plugin.host import get_host
    from edgeret.reports import markdown_table

    catalog = CodecCatalog.of_plugin(get_host())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for width, height, with_whole in SIZES:
            path = Path(tmp) / f"{width}x{height}.ert"
            path.write_bytes(empty_stream(catalog, "fundus-factorized-q6", width, height))
            for mode in ("tiled", "whole") if with_whole else ("tiled",):
                out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], capture_output=True,
                                     text=True, cwd=REPO, check=True).stdout.split()
                row = {"declared": f"{width}x{height}", "megapixels": round(width * height / 1e6, 2),
                       "stream_bytes": path.stat().st_size, "decoder": mode,
                       "seconds": round(float(out[0]), 2), "peak_rss_gb": round(int(out[1]) / 1e9, 3)}
                rows.append(row)
                print(row, flush=True)
    out_dir = REPO / "benchmarks"
    (out_dir / "hub-decode-memory.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = markdown_table(list(rows[0]), [list(r.values()) for r in rows])
    (out_dir / "hub-decode-memory.md").write_text(
        "# Hub decoder: peak memory per declared image size\n\n"
        "`python tools/bench_hub_memory.py`: fundus q6, ONNX Runtime, two threads, each decode in a fresh "
        "process (peak RSS includes the interpreter and runtime). Streams are ~200 bytes with empty "
        "payloads, as an attacker would send; the hub refuses sizes over `--max-pixels` (default "
        "12,000,000) before decoding.\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
