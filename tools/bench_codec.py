"""Rate-distortion benchmark of the learned codec against JPEG, JPEG 2000, WebP, AVIF and JPEG XL.

    python tools/bench_codec.py [--quick] [--threads 1] [--out benchmarks]

Needs the `bench` extra (imagecodecs) and scikit-image (the real fundus photo).
Image sets (none used in training; training used seeds 0..239, the export's
validation 50_000..50_003):

* ``oct``: held-out synthetic OCT B-scans, 640x1024 8-bit, seeds 100_000.. (quality
  good, every 4th usable: the training mix);
* ``fundus``: held-out synthetic fundus photographs, 512x512 RGB, seeds 100_000..;
* ``retina``: ``skimage.data.retina()``, a real 1411x1411 fundus photograph.

Ours runs the device path on ONNX Runtime: encoder graph, numpy quantization,
entropy coding, the whole ``.ert`` stream (header included) is what is counted.
bpp = file bits / pixels; compression ratio = raw bits (H x W x channels x 8) /
file bits. Quality: PSNR and five-scale MS-SSIM (``plugins/tasks/codec/processing``;
colour = mean over R, G, B). Curves average bpp and quality over each set per
quality setting. BD-rate (Bjontegaard, piecewise-cubic (PCHIP) interpolation of
log-rate over quality, integrated over the overlapping quality interval; MS-SSIM
in dB, -10 log10(1 - MS-SSIM)) of ours against each classical codec: negative =
ours needs fewer bits at equal quality. When the two curves share no quality
interval (or a curve has fewer than two points) no BD-rate is computed and the
reason is printed instead; the overlap actually integrated is reported with
every value (a BD-rate over a narrow overlap says little about the rest of the
curves). Timing: median over repeats on a 512x512 image on this (shared) CPU,
with ``--threads`` (default 1) threads everywhere: ONNX Runtime's intra-op
pool for ours, ``numthreads`` for the classical codecs that have one, OpenCV;
ours counts the whole device path (encoder graph, quantization, entropy
coding, the ``.ert`` bytes).

Writes benchmarks/codec.json, benchmarks/codec.md and benchmarks/codec_rd_<set>.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codec_report import TARGETS, describe_cr, report, targets  # noqa: E402  (tools/ is on sys.path)
from rd_plot import plot  # noqa: E402  (tools/ is on sys.path when run as a script)

from edgeret.build.rd_metrics import bd_rate, cr_at_quality, msssim_db  # noqa: E402
from edgeret.codec.ert.container import encode_stream  # noqa: E402
from edgeret.codec.scale import resample_psnr  # noqa: E402
from edgeret.codec.session import CodecCatalog, CodecSession  # noqa: E402
from edgeret.metrics import psnr  # noqa: E402
from edgeret_plugins.tasks.codec import WEIGHTS_DIR  # noqa: E402
from edgeret_plugins.tasks.codec.processing import ms_ssim  # noqa: E402
from edgeret_plugins.tasks.codec.specs import BENCH_SEED, phantom  # noqa: E402

CLASSICAL = {
    # name: (settings swept, encode(image, setting) -> bytes, decode(bytes) -> array)
    "JPEG": ([5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95], "jpeg"),
    "JPEG 2000": ([22, 25, 28, 31, 34, 37, 40, 43, 46, 50], "j2k"),
    "WebP": ([1, 5, 10, 20, 35, 50, 65, 80, 90, 97], "webp"),
    "AVIF": ([2, 10, 20, 30, 40, 50, 60, 70, 80, 90], "avif"),
    "JPEG XL": ([15.0, 10.0, 7.0, 5.0, 3.5, 2.5, 1.8, 1.2, 0.8, 0.5], "jxl"),
}
SETTING_NOTE = {"JPEG": "libjpeg quality", "JPEG 2000": "OpenJPEG PSNR target (dB), single layer",
                "WebP": "libwebp quality, lossy (grey sent as R=G=B)",
                "AVIF": "quality, speed 6 (grey sent as R=G=B)",
                "JPEG XL": "butteraugli distance, effort 7"}
THREADS = {"n": 1}  # set by --threads


def classical_codec(kind: str):
    import imagecodecs as ic

    nt = THREADS["n"]

    def gray_as_rgb(x):
        return np.repeat(x[:, :, None], 3, axis=2) if x.ndim == 2 else x

    if kind == "jpeg":
        return lambda x, s: ic.jpeg8_encode(x, level=int(s)), ic.jpeg8_decode
    if kind == "j2k":
        return (lambda x, s: ic.jpeg2k_encode(x, level=float(s), codecformat="j2k", numthreads=nt),
                lambda b: ic.jpeg2k_decode(b, numthreads=nt))
    if kind == "webp":  # libwebp codes RGB only: grey is sent as R = G = B (flat chroma is nearly free)
        def enc(x, s):
            return ic.webp_encode(np.ascontiguousarray(gray_as_rgb(x)), level=int(s), lossless=False,
                                  numthreads=nt)
        return enc, ic.webp_decode
    if kind == "avif":  # imagecodecs codes a monochrome AVIF losslessly whatever the level: grey as RGB
        return (lambda x, s: ic.avif_encode(np.ascontiguousarray(gray_as_rgb(x)), level=int(s), speed=6,
                                            numthreads=nt),
                lambda b: ic.avif_decode(b, numthreads=nt))
    if kind == "jxl":
        return (lambda x, s: ic.jpegxl_encode(x, distance=float(s), effort=7, numthreads=nt),
                lambda b: ic.jpegxl_decode(b, numthreads=nt))
    raise ValueError(kind)


def measure(image: np.ndarray, decoded: np.ndarray, nbytes: int) -> dict:
    decoded = decoded[:, :, 0] if image.ndim == 2 and decoded.ndim == 3 else decoded
    h, w = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    return {"bpp": nbytes * 8 / (h * w), "cr": h * w * channels * 8 / (nbytes * 8),
            "psnr": psnr(image, decoded, 255.0), "ms_ssim": ms_ssim(image, decoded, 255.0)}


def average(rows: list[dict]) -> dict:
    out = {k: float(np.mean([r[k] for r in rows])) for k in ("bpp", "psnr", "ms_ssim")}
    out["cr"] = float(np.mean([r["cr"] for r in rows]))
    out["ms_ssim_min"] = float(np.min([r["ms_ssim"] for r in rows]))
    return out


# --- running the codecs -------------------------------------------------------------------


def ours_points(session: CodecSession, catalog: CodecCatalog, images, modality: str, progress) -> dict:
    """Our curves as the device codes (scale "auto"); a model that may halve oversampled images at its
    low rate points also gets its full-scale-only curve, so the effect is seen side by side."""
    curves = {}
    for model in catalog.models.values():
        if model.modality != modality:
            continue
        label = f"ours {model.variant}"
        runs = [(label, "auto")]
        if model.half_scale_through:
            runs.append((f"{label} (full scale only)", 1))
        for name, scale in runs:
            points = []
            for rate in sorted(model.rates, key=lambda r: r.nominal_bpp):
                rows, halved = [], 0
                for image in images:
                    enc = session.encode(image, model, rate, scale=scale)
                    halved += enc.header.scale == 2
                    data = encode_stream(enc.header, enc.payloads)
                    dec = session.decode_bytes(data)
                    rows.append(measure(image, dec.image, len(data)))
                points.append({"setting": rate.id, **average(rows), "coded_at_half_scale": halved})
                progress(f"  {name} {rate.id}: {points[-1]['bpp']:.4f} bpp, MS-SSIM "
                         f"{points[-1]['ms_ssim']:.4f}, PSNR {points[-1]['psnr']:.2f}, "
                         f"{halved}/{len(images)} at half scale")
            curves[name] = {"model": model.name, "points": points}
    return curves


def classical_points(images, progress, quick: bool) -> dict:
    curves = {}
    for name, (settings, kind) in CLASSICAL.items():
        enc, dec = classical_codec(kind)
        points = []
        for s in (settings[::2] if quick else settings):
            rows = []
            for image in images:
                data = enc(image, s)
                rows.append(measure(image, dec(data), len(data)))
            points.append({"setting": s, **average(rows)})
        progress(f"  {name}: {len(points)} settings, {points[0]['bpp']:.3f}..{points[-1]['bpp']:.3f} bpp")
        curves[name] = {"setting": SETTING_NOTE[name], "points": points}
    return curves


def _worst_case_encode(codec: CodecSession, image, model, rate):
    """What scale "auto" costs for an image that is not oversampled: the test, then the full-size graph."""
    if model.allows_half_scale(rate):
        resample_psnr(image)
    return codec.encode(image, model, rate, scale=1)


def timing(session: CodecSession, catalog: CodecCatalog, repeats: int) -> dict:
    """ms per 512x512 image: ours (per model, middle rate) and each classical codec (middle setting).

    Ours: ``encode_ms`` is the wall time of the device path (encoder graph on the
    session's threads, quantization, entropy coding and the ``.ert`` bytes);
    ``encode_cpu_ms_1thread`` the process CPU time of one encode on one ORT thread. Where the rate
    point may halve an oversampled image, the timed encode is the worst case: the oversampling test
    (:func:`edgeret.codec.scale.resample_psnr`) and then the full-size graph.
    """
    oct_img = phantom("oct", BENCH_SEED + 999)[0][64:576, 256:768]
    fundus_img = phantom("fundus", BENCH_SEED + 999, size=512)[0]
    out = {}
    single = CodecSession(catalog, session.backend, threads=1)
    for model in catalog.models.values():
        img = oct_img if model.modality == "oct" else fundus_img
        rate = sorted(model.rates, key=lambda r: r.nominal_bpp)[len(model.rates) // 2]
        enc_t, dec_t, cpu_t = [], [], []
        tested = model.allows_half_scale(rate)
        session.encode(img, model, rate)  # load the graph outside the timing
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            enc = _worst_case_encode(session, img, model, rate)
            data = encode_stream(enc.header, enc.payloads)
            enc_t.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            dec = session.decode_bytes(data)
            dec_t.append((time.perf_counter() - t0) * 1000)
            assert dec.image.shape == img.shape
            single.encode(img, model, rate)  # loads the graph once, then warm
            c0 = time.process_time()
            _worst_case_encode(single, img, model, rate)
            cpu_t.append((time.process_time() - c0) * 1000)
        out[f"ours {model.name}"] = {
            "encode_ms": statistics.median(enc_t[1:]), "encode_ms_min": min(enc_t[1:]),
            "decode_ms": statistics.median(dec_t[1:]), "decode_ms_min": min(dec_t[1:]),
            "encode_cpu_ms_1thread": statistics.median(cpu_t[1:]),
            "rate": rate.id + (" (oversampling test + full size)" if tested else ""),
            "image": "oct" if model.modality == "oct" else "fundus",
            "threads": session.threads}
    for name, (settings, kind) in CLASSICAL.items():
        enc, dec = classical_codec(kind)
        s = settings[len(settings) // 2]
        for label, img in (("oct", oct_img), ("fundus", fundus_img)):
            enc_t, dec_t = [], []
            for _ in range(repeats + 1):
                t0 = time.perf_counter()
                data = enc(img, s)
                t1 = time.perf_counter()
                dec(data)
                t2 = time.perf_counter()
                enc_t.append((t1 - t0) * 1000)
                dec_t.append((t2 - t1) * 1000)
            out[f"{name} ({label})"] = {"encode_ms": statistics.median(enc_t[1:]),
                                        "encode_ms_min": min(enc_t[1:]),
                                        "decode_ms": statistics.median(dec_t[1:]),
                                        "decode_ms_min": min(dec_t[1:]), "setting": s, "image": label,
                                        "threads": THREADS["n"]}
    return out


# --- main ---------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    parser.add_argument("--n", type=int, default=6, help="images per synthetic set")
    parser.add_argument("--repeats", type=int, default=10, help="timing repeats")
    parser.add_argument("--quick", action="store_true", help="fewer images and settings (a smoke run)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for ONNX Runtime (ours), the classical codecs and OpenCV (default 1)")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR,
                        help="codec weights folder to measure (default: the shipped one)")
    parser.add_argument("--timing-only", action="store_true",
                        help="only the 512x512 encode/decode timing; writes codec-timing.{json,md}")
    args = parser.parse_args(argv)
    THREADS["n"] = args.threads
    cv2.setNumThreads(args.threads)
    from skimage import data as skdata

    from edgeret.plugin.host import Host

    def progress(msg: str) -> None:
        print(msg, flush=True)

    n = 2 if args.quick else args.n
    host = Host()
    backend = host.backend("onnxruntime")
    catalog = CodecCatalog(args.weights)
    session = CodecSession(catalog, backend, threads=args.threads)
    progress(f"threads: {args.threads} (ONNX Runtime intra-op, classical codecs, OpenCV)")
    if args.timing_only:
        return timing_only(session, catalog, args, progress, argv)
    sets = {
        "oct": ("oct", [phantom("oct", BENCH_SEED + i)[0] for i in range(n)],
                f"{n} held-out synthetic OCT B-scans (640x1024, 8-bit, seeds {BENCH_SEED}..)"),
        "fundus": ("fundus", [phantom("fundus", BENCH_SEED + i, size=512)[0] for i in range(n)],
                   f"{n} held-out synthetic fundus photographs (512x512 RGB, seeds {BENCH_SEED}..)"),
        "retina": ("fundus", [skdata.retina()], "skimage.data.retina() (real, 1411x1411 RGB)"),
    }
    load0 = os.getloadavg()
    results = {"sets": {}, "load_average_start": load0, "machine": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "threads": args.threads, "quick": args.quick,
               "command": "python tools/bench_codec.py "
                          + " ".join(argv if argv is not None else sys.argv[1:])}
    for key, (modality, images, what) in sets.items():
        progress(f"{key}: {what}")
        curves = ours_points(session, catalog, images, modality, progress)
        curves.update(classical_points(images, progress, args.quick))
        bd = {}
        for ours in [k for k in curves if k.startswith("ours")]:
            for name in CLASSICAL:
                o, c = curves[ours]["points"], curves[name]["points"]
                bd[f"{ours} vs {name}"] = {
                    "ms_ssim_db": bd_rate([p["bpp"] for p in c], [msssim_db(p["ms_ssim"]) for p in c],
                                          [p["bpp"] for p in o], [msssim_db(p["ms_ssim"]) for p in o]),
                    "psnr": bd_rate([p["bpp"] for p in c], [p["psnr"] for p in c],
                                    [p["bpp"] for p in o], [p["psnr"] for p in o]),
                }
        cr99 = {name: cr_at_quality(c["points"]) for name, c in curves.items()}
        progress(f"  CR at MS-SSIM >= 0.99 ({key}): "
                 + "; ".join(f"{name} {describe_cr(c)}" for name, c in cr99.items()))
        results["sets"][key] = {"description": what, "curves": curves, "bd_rate": bd,
                                "cr_at_ms_ssim_0.99": cr99}
        args.out.mkdir(parents=True, exist_ok=True)
        plot(curves, key, args.out / f"codec_rd_{key}.png")
    progress("timing (512x512)")
    results["timing_512"] = timing(session, catalog, 3 if args.quick else args.repeats)
    results["load_average_end"] = os.getloadavg()
    results["targets"] = targets(results)
    (args.out / "codec.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "codec.md").write_text(report(results))
    for t in results["targets"]:
        progress(f"target {t['target']}: {t['status']} ({t['detail']})")
    progress(f"wrote {args.out / 'codec.json'}, {args.out / 'codec.md'}, "
             + ", ".join(str(args.out / f'codec_rd_{k}.png') for k in sets))
    return 0


def timing_only(session: CodecSession, catalog: CodecCatalog, args, progress, argv) -> int:
    """The encoder-time target alone (quick to repeat on an idle machine)."""
    load0 = os.getloadavg()
    command = "python tools/bench_codec.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {"timing_512": timing(session, catalog, args.repeats), "threads": args.threads,
               "load_average_start": load0, "load_average_end": os.getloadavg(),
               "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
               "command": command}
    goal = TARGETS["encoder_ms"]
    results["targets"] = [
        {"target": f"encoder {k.removeprefix('ours ')} 512x512, {args.threads} thread(s), entropy coding "
                   f"included <= {goal:g} ms (median)",
         "status": "met" if t["encode_ms"] <= goal else "MISSED",
         "detail": f"{t['encode_ms']:.1f} ms; fastest {t['encode_ms_min']:.1f} ms"}
        for k, t in results["timing_512"].items() if k.startswith("ours")]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "codec-timing.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [f"# Codec timing, 512x512 (`{command}`)", "",
             f"{results['cpus']} CPUs, {args.threads} thread(s); load average {load0[0]:.2f} at the start.",
             "", "| codec | image | encode ms (median) | encode ms (min) | decode ms (median) |",
             "|---|---|---|---|---|"]
    lines += [f"| {k} | {t['image']} | {t['encode_ms']:.1f} | {t['encode_ms_min']:.1f} | "
              f"{t['decode_ms']:.1f} |" for k, t in results["timing_512"].items()]
    lines += ["", *[f"- {t['target']}: {t['status']} ({t['detail']})" for t in results["targets"]]]
    (args.out / "codec-timing.md").write_text("\n".join(lines) + "\n")
    for t in results["targets"]:
        progress(f"target {t['target']}: {t['status']} ({t['detail']})")
    progress(f"wrote {args.out / 'codec-timing.json'}, {args.out / 'codec-timing.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
