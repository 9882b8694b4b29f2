"""Hub decode time per backend: the codec decoders on ONNX Runtime and OpenVINO, side by side.

    python tools/bench_hub_decode.py [--repeats 10] [--threads 1,2] [--out benchmarks]

The hub decodes every capture (``edgeret serve``); its throughput is the decoder's
time. Each round decodes the same streams (fundus 512x512 and OCT 640x1024, the
factorized codecs at their default rate points) once per backend in turn, so the
ratios compare like with like on a noisy machine. Also checks what must hold on any
hub: the entropy-decoded symbols are identical on every backend (they are decoded by
the same integer code before any graph runs), and reports the largest pixel
difference of the reconstructions (floating-point kernels differ by a grey level).
Writes ``hub-decode.json`` and ``hub-decode.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeret.codec.ert.container import encode_stream  # noqa: E402
from edgeret.codec.session import CodecCatalog, CodecSession  # noqa: E402
from edgeret.plugin.host import Host  # noqa: E402
from edgeret.reports import markdown_table  # noqa: E402
from edgeret_plugins.tasks.codec.specs import BENCH_SEED, phantom  # noqa: E402

BACKENDS = ("onnxruntime", "openvino")


def streams(catalog: CodecCatalog, session: CodecSession) -> dict[str, bytes]:
    images = {"fundus": phantom("fundus", BENCH_SEED + 999, size=512)[0],
              "oct": phantom("oct", BENCH_SEED + 999)[0]}
    out = {}
    for model in catalog.models.values():
        if model.variant == "factorized":
            enc = session.encode(images[model.modality], model, model.default_point(), scale=1)
            name = f"{model.name} {enc.header.width}x{enc.header.height}"
            out[name] = encode_stream(enc.header, enc.payloads)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    args = parser.parse_args(argv)
    host = Host()
    catalog = CodecCatalog.of_plugin(host)
    load0 = os.getloadavg()
    data = streams(catalog, CodecSession(catalog, host.backend("onnxruntime"), threads=1))
    rows, results = [], {}
    for threads in (int(t) for t in args.threads.split(",")):
        sessions = {b: CodecSession(catalog, host.backend(b), threads=threads) for b in BACKENDS}
        for name, stream in data.items():
            times = {b: [] for b in BACKENDS}
            decoded = {b: s.decode_bytes(stream) for b, s in sessions.items()}  # load + warm up
            for _ in range(args.repeats):
                for b, s in sessions.items():
                    t0 = time.perf_counter()
                    s.decode_bytes(stream)
                    times[b].append((time.perf_counter() - t0) * 1000)
            ref = decoded[BACKENDS[0]]
            same_symbols = all(np.array_equal(a, b) for d in decoded.values()
                               for a, b in zip(d.symbols, ref.symbols, strict=True))
            diff = max(int(np.abs(d.image.astype(np.int64) - ref.image.astype(np.int64)).max())
                       for d in decoded.values())
            med = {b: statistics.median(v) for b, v in times.items()}
            ratio = med["onnxruntime"] / med["openvino"]
            results[f"{name}, {threads} thread(s)"] = {
                "median_ms": med, "min_ms": {b: min(v) for b, v in times.items()}, "ort_over_openvino": ratio,
                "same_symbols": same_symbols, "max_pixel_difference": diff}
            rows.append([name, threads, f"{med['onnxruntime']:.0f}", f"{med['openvino']:.0f}",
                         f"{ratio:.2f}x", "yes" if same_symbols else "NO", diff])
            print(f"{name}, {threads} thread(s): ORT {med['onnxruntime']:.0f} ms, OpenVINO "
                  f"{med['openvino']:.0f} ms ({ratio:.2f}x), symbols identical: {same_symbols}, "
                  f"max pixel difference {diff}", flush=True)
    command = "python tools/bench_hub_decode.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"command": command, "cpus": os.cpu_count(), "load_average_start": load0,
              "load_average_end": os.getloadavg(), "repeats": args.repeats, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hub-decode.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Hub decode time per backend (`{command}`)", "",
             f"{report['cpus']} CPUs; load average {load0[0]:.2f} at the start, "
             f"{report['load_average_end'][0]:.2f} at the end. Median of {args.repeats} decodes per backend, "
             "interleaved (entropy decoding, the decoder graph, clipping to pixels).", "",
             markdown_table(["stream", "threads", "ONNX Runtime ms", "OpenVINO ms", "ORT / OpenVINO",
                             "same symbols", "max pixel difference"], rows), "",
             "`edgeret serve --device intel-x86` decodes on OpenVINO (falling back to ONNX Runtime where it "
             "is not installed); the default `x86-cpu` profile uses ONNX Runtime."]
    (args.out / "hub-decode.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'hub-decode.json'}, {args.out / 'hub-decode.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
