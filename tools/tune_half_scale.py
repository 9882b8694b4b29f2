"""Up to which rate point does half-resolution coding pay on oversampled images? (sets half_scale_through)

    python tools/tune_half_scale.py [--weights DIR] [--modality fundus] [--n 3]

The tuning images are made oversampled on purpose and are never the benchmark's
real photograph (``skimage.data.retina()``): held-out fundus phantoms (seeds
70 000..) and scikit-image's colour photographs (no retina), each doubled in
size with OpenCV's bicubic (a different interpolator from the codec's own
:func:`edgeret.codec.scale.upscale2`). For OCT, phantoms only. Every rate point
codes every image at full scale and at half scale (``--scale 1`` / ``2``); a
half-scale point *pays* when its mean MS-SSIM beats the full-scale curve's at the
same mean bits (log-rate interpolation), or when it sits below the full-scale
curve's lowest rate at all (a lower rate than full scale can reach). Only tuning
images that ``--scale auto`` would halve count (halving and doubling costs less
than ``OVERSAMPLED_DB``); the others are listed and dropped. The pick is the
highest rate point up to which every point pays, but never the model's top or
default rate point: the best quality the codec has, and the one the hub's
grading was validated at, stay at full resolution. It is the model's
``half_scale_through`` (``plugins/tasks/codec/specs.py``). Writes
benchmarks/half-scale-<modality>.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeret.codec.ert.container import encode_stream  # noqa: E402
from edgeret.codec.scale import OVERSAMPLED_DB, resample_psnr  # noqa: E402
from edgeret.codec.session import CodecCatalog, CodecSession  # noqa: E402
from edgeret.plugin.host import Host  # noqa: E402
from edgeret.reports import markdown_table, write_report  # noqa: E402
from edgeret_plugins.tasks.codec import WEIGHTS_DIR  # noqa: E402
from edgeret_plugins.tasks.codec.processing import ms_ssim  # noqa: E402
from edgeret_plugins.tasks.codec.specs import natural_photos, phantom  # noqa: E402

TUNE_SEED = 70_000


def doubled(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (2 * w, 2 * h), interpolation=cv2.INTER_CUBIC)


def tuning_images(modality: str, n: int) -> list[np.ndarray]:
    images = [doubled(phantom(modality, TUNE_SEED + i, size=512)[0]) for i in range(n)]
    if modality == "fundus":
        images += [doubled(p) for p in natural_photos(3)[:n]]
    return images


def curve(session: CodecSession, model, images, scale: int) -> list[dict]:
    points = []
    for rate in sorted(model.rates, key=lambda r: r.nominal_bpp):
        bpp = quality = 0.0
        for image in images:
            enc = session.encode(image, model, rate, scale=scale)
            data = encode_stream(enc.header, enc.payloads)
            decoded = session.decode_bytes(data).image
            bpp += len(data) * 8 / (image.shape[0] * image.shape[1]) / len(images)
            quality += ms_ssim(image, decoded, 255.0) / len(images)
        points.append({"rate": rate.id, "bpp": bpp, "ms_ssim": quality})
        print(f"  scale {scale} {rate.id}: {bpp:.4f} bpp, MS-SSIM {quality:.4f}", flush=True)
    return points


def pick(full: list[dict], half: list[dict], keep_full: set[str]) -> tuple[str | None, list[dict]]:
    log_bpp = np.log([p["bpp"] for p in full])
    rows = []
    for p in half:
        if np.log(p["bpp"]) < log_bpp[0]:
            full_q, pays = None, True
        else:
            full_q = float(np.interp(np.log(p["bpp"]), log_bpp, [q["ms_ssim"] for q in full]))
            pays = p["ms_ssim"] > full_q
        rows.append({**p, "full_scale_ms_ssim_at_same_bpp": full_q, "pays": pays})
    through = None
    for row in rows:  # lowest rate first: stop at the first point that does not pay or stays full
        if not row["pays"] or row["rate"] in keep_full:
            break
        through = row["rate"]
    return through, rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--modality", choices=["fundus", "oct"], default="fundus")
    parser.add_argument("--n", type=int, default=3, help="phantoms (and, for fundus, photographs)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    args = parser.parse_args(argv)
    session = CodecSession(CodecCatalog(args.weights), Host().backend("onnxruntime"), threads=1)
    model = next(m for m in session.catalog.models.values()
                 if m.modality == args.modality and m.variant == "factorized")
    candidates = tuning_images(args.modality, args.n)
    measured = [round(resample_psnr(im), 1) for im in candidates]
    images = [im for im, db in zip(candidates, measured, strict=True) if db >= OVERSAMPLED_DB]
    oversampling = [db for db in measured if db >= OVERSAMPLED_DB]
    dropped = [db for db in measured if db < OVERSAMPLED_DB]
    print(f"{len(images)} tuning images, halve-and-double PSNR {oversampling} dB; dropped (not "
          f"oversampled): {dropped}", flush=True)
    full, half = curve(session, model, images, 1), curve(session, model, images, 2)
    points = sorted(model.rates, key=lambda r: r.nominal_bpp)
    keep_full = {points[-1].id, model.default_point().id}
    through, rows = pick(full, half, keep_full)
    md = ["# Half-resolution coding: where it pays (sets `half_scale_through`)", "",
          f"`python tools/tune_half_scale.py --modality {args.modality} --n {args.n}`: {len(images)} "
          f"oversampled tuning images (held-out phantoms from seed {TUNE_SEED}"
          + (" and scikit-image photographs, no retina" if args.modality == "fundus" else "")
          + f", each doubled with bicubic; halve-and-double PSNR {oversampling} dB; not oversampled "
          f"by the {OVERSAMPLED_DB:g} dB test and dropped: {dropped} dB), model {model.name}. The top and "
          f"default rate points ({', '.join(sorted(keep_full))}) stay at full resolution.",
          "", markdown_table(
              ["rate point", "full bpp", "full MS-SSIM", "half bpp", "half MS-SSIM",
               "full-scale curve at the half's bpp", "half pays"],
              [[f["rate"], f"{f['bpp']:.4f}", f"{f['ms_ssim']:.4f}", f"{h['bpp']:.4f}", f"{h['ms_ssim']:.4f}",
                "below its lowest rate" if h["full_scale_ms_ssim_at_same_bpp"] is None
                else f"{h['full_scale_ms_ssim_at_same_bpp']:.4f}", "yes" if h["pays"] else "no"]
               for f, h in zip(full, rows, strict=True)]),
          "", f"Pick: half scale pays through **{through}**.", ""]
    write_report(args.out, f"half-scale-{args.modality}", {"model": model.name, "images": len(images),
                                          "halve_and_double_psnr_db": oversampling, "dropped_db": dropped,
                                          "full": full,
                                          "half": rows, "half_scale_through": through}, "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
