"""denoise-oct: does test-time flip averaging help on real speckle? Subject-level CV, side by side.

    python tools/bench_denoise_oct_tta.py [--cv out/oct-real-cv] [--folds 4] [--out benchmarks]

Needs the fold models of `python tools/bench_denoise_oct_real.py cv` (each never saw the subjects
it scores). For every subject's noisy scan, in one run: BM3D with sigma estimated from the scan
(the classical baseline of `benchmarks/denoise-oct-real.md`, same code and cache), the fold model
as shipped (one pass), and the fold model averaged over flips: left-right (2 passes) and
left-right x up-down (4 passes). PSNR / SSIM against the registered average. Writes
OUT/denoise-oct-tta.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_denoise_oct_real as real  # noqa: E402

FLIPS = {"one pass": [(False, False)], "flip LR (2 passes)": [(False, False), (False, True)],
         "flip LR x UD (4 passes)": [(False, False), (False, True), (True, False), (True, True)]}


def flip_average(fn, noisy01: np.ndarray, flips: list[tuple[bool, bool]]) -> np.ndarray:
    """Mean of fn over flipped copies of the scan, each flipped back."""
    out = np.zeros_like(noisy01, dtype=np.float64)
    for ud, lr in flips:
        x = noisy01[::-1] if ud else noisy01
        x = x[:, ::-1] if lr else x
        y = fn(np.ascontiguousarray(x))
        y = y[:, ::-1] if lr else y
        out += y[::-1] if ud else y
    return np.clip(out / len(flips), 0, 1)  # as bench_denoise_oct_real scores "ours"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=real.DATA)
    ap.add_argument("--cv", type=Path, default=real.REPO / "out/oct-real-cv")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--out", type=Path, default=real.REPO / "benchmarks")
    args = ap.parse_args()
    from edgeret.reports import markdown_table, write_report
    from edgeret_plugins.tasks.denoise.real_pairs import read_real_pairs
    from edgeret_plugins.tasks.denoise.recipe import REAL_OCT

    tag = f"{REAL_OCT['arch']}-{args.folds}f"
    subjects = read_real_pairs(args.data)
    # the folds of `bench_denoise_oct_real.py cv` (fold i holds out names[i::k]); a fold whose model
    # is not there yet (an interrupted run) is left out, and the table says how many were scored
    folds = real.folds_of([s.name for s in subjects], args.folds)
    fold_of = {n: i for i, held in enumerate(folds) for n in held}
    models = {}
    rows = []
    started = time.time()
    for s in subjects:
        k = fold_of[s.name]
        path = args.cv / tag / f"fold{k}" / "denoise_oct.onnx"
        if not path.is_file():
            print(f"subject {s.name}: no fold {k} model at {path}; skipped", flush=True)
            continue
        if k not in models:
            models[k] = real.onnx_fn(path)
        clean = s.clean.astype(np.float32) / 255.0
        noisy = s.primary.astype(np.float32) / 255.0
        sigma = real.estimate_sigma01(noisy)
        out = {"BM3D (sigma estimated)": real.bm3d01(noisy, sigma, args.cv / "bm3d-cache")}
        for label, flips in FLIPS.items():
            out[label] = flip_average(models[k], noisy, flips)
        row = {"subject": s.name, "fold": k}
        for m, y in out.items():
            row[m] = {"psnr": real.psnr(clean, y), "ssim": real.ssim(clean, y)}
        rows.append(row)
        print(s.name, {m: round(row[m]["psnr"], 2) for m in out}, flush=True)
    methods = ["BM3D (sigma estimated)", *FLIPS]
    mean = {m: {q: float(np.mean([r[m][q] for r in rows])) for q in ("psnr", "ssim")} for m in methods}
    bm = mean["BM3D (sigma estimated)"]["psnr"]
    table = markdown_table(["subject", *methods],
                           [[r["subject"], *(f"{r[m]['psnr']:.2f} / {r[m]['ssim']:.3f}" for m in methods)]
                            for r in rows]
                           + [["**mean**", *(f"**{mean[m]['psnr']:.2f} / {mean[m]['ssim']:.3f}**"
                                             for m in methods)]]
                           + [["vs BM3D, dB", "", *(f"{mean[m]['psnr'] - bm:+.2f}" for m in FLIPS)]])
    text = ("# denoise-oct: test-time flip averaging, subject-level CV on real B-scans\n\n"
            f"Fold models of `out/oct-real-cv/{tag}` ({args.folds} folds; each subject scored by the model "
            f"that never saw it; {len(rows)} of {len(subjects)} subjects scored: folds "
            f"{sorted(models)} were trained), one noisy scan per subject against its registered "
            "average, PSNR dB / SSIM "
            "(outputs as `bench_denoise_oct_real.py bench` scores them). Command: "
            f"`python tools/bench_denoise_oct_tta.py {' '.join(sys.argv[1:])}`\n\n{table}\n")
    write_report(args.out, "denoise-oct-tta", {"rows": rows, "mean": mean, "cv": tag,
                                               "folds_scored": sorted(models),
                                               "seconds": round(time.time() - started, 1)}, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
