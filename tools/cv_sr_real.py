"""sr ×2 on real photographs: patient-level cross-validation of the realistic-degradation recipe.

    python tools/cv_sr_real.py [--real ../shared/data/real] [--folds 3] [--epochs 6]
        [--check 2,4,6] [--threads 1] [--out benchmarks] [--ship plugins/tasks/sr/weights]

Data: `fundus-dr/` (native 1000×1000 photographs, at most two per patient) and
`fundus-photos/` (CHASE_DB1, subject = the number in the file name), split
into folds by patient / subject, never by file; plus 24 good-quality fundus
phantoms and scikit-image's natural photographs in every training set. Each
fold trains LapSRN-edge ×2 (the shipped architecture, unchanged) on the other
folds with `recipe.realistic_pairs` and scores the held-out patients'
photographs (a 512×512 centre crop of each: retina, disc and vessels, and
fast enough for SSIM) after each epoch in `--check`, side by side with
bicubic and the shipped model, under the two evaluation kernels of
`degradations.EVAL_DEGRADATIONS`. The epoch count is the one with the best
mean held-out PSNR over both kernels and all folds. `--ship`: train on every
photograph with that count and write lapsrn-x2.pt/.json and sr_x2.onnx there,
only if the cross-validated figures beat the shipped model on both kernels.

Writes OUT/sr-real-cv.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from edgeret.metrics import psnr
from edgeret.reports import markdown_table, write_report

SCALE = 2
CROP = 512
PATCHES = 8192
BATCH = 32
MAX_PER_PATIENT = 2
EVAL_PER_FOLD = 30  # fundus-dr patients scored per fold (every CHASE subject of the fold too)
PHANTOM_SEEDS = range(3_000_000, 3_000_024)  # the seeds the phantom-trained sr model used


def real_photos(root: Path) -> list[tuple[str, Path]]:
    """(patient, path) for the development photographs."""
    rows: list[tuple[str, Path]] = []
    per: dict[str, int] = {}
    with open(root / "fundus-dr" / "labels.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["native"] != "yes" or per.get(r["patient"], 0) >= MAX_PER_PATIENT:
                continue
            per[r["patient"]] = per.get(r["patient"], 0) + 1
            rows.append((f"dr-{r['patient']}", root / "fundus-dr" / r["file"]))
    with open(root / "fundus-photos" / "labels.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            subject = re.search(r"Image_(\d+)", r["file"]).group(1)
            rows.append((f"chase-{subject}", root / "fundus-photos" / r["file"]))
    return rows


def folds_of(patients: list[str], k: int, seed: int = 0) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    order = sorted(set(patients))
    rng.shuffle(order)
    return {p: i % k for i, p in enumerate(order)}


def read_rgb(path: Path) -> np.ndarray:
    from edgeret.images.read_write import read_image

    img = read_image(path)
    return img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)


def centre_crop(img: np.ndarray, size: int = CROP) -> np.ndarray:
    y, x = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return img[y:y + size, x:x + size]


def training_images(paths: list[Path]) -> tuple[list[np.ndarray], list[float]]:
    from edgeret.build.data.fundus import generate_fundus
    from edgeret_plugins.tasks.denoise.recipe import natural_images

    real = [read_rgb(p) for p in paths]
    phantoms = [generate_fundus(s, size=512, quality="good").image for s in PHANTOM_SEEDS]
    natural = natural_images(gray=False)
    weights = ([0.6 / len(real)] * len(real) + [0.25 / len(phantoms)] * len(phantoms)
               + [0.15 / len(natural)] * len(natural))
    return real + phantoms + natural, weights


def upscaler(net):
    import torch

    from edgeret_plugins.tasks.sr.processing import planes_to_image

    def run(lr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(lr, 2, 0), dtype=np.float32) / 255.0)
        with torch.no_grad():
            return planes_to_image(net(x[None]).numpy())

    return run


def score(hr: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    from edgeret_plugins.tasks.sr.evaluation import ssim

    t = hr[SCALE:-SCALE, SCALE:-SCALE].astype(np.float32) / 255.0
    e = out[SCALE:-SCALE, SCALE:-SCALE].astype(np.float32) / 255.0
    return psnr(t, e), ssim(t, e)


def evaluate(images: list[tuple[str, np.ndarray]], methods: dict) -> list[dict]:
    from edgeret_plugins.tasks.sr.degradations import EVAL_DEGRADATIONS

    rows = []
    for name, hr in images:
        for kernel, degrade in EVAL_DEGRADATIONS.items():
            lr = degrade(hr, SCALE)
            for label, method in methods.items():
                p, s = score(hr, method(lr))
                rows.append({"image": name, "kernel": kernel, "method": label, "psnr": p, "ssim": s})
    return rows


def train(images, weights, epochs: int, check: list[int], seed: int, on_epoch, patches: int = PATCHES,
          ranges: str = "mild"):
    """LapSRN-edge ×2, AdamW 1e-3 with a cosine schedule over `epochs`; on_epoch(epoch, runtime net)
    after each epoch in `check`."""
    import torch

    from edgeret_plugins.tasks.sr.degradations import RANGES
    from edgeret_plugins.tasks.sr.model import LapSRN, build, runtime, to_image
    from edgeret_plugins.tasks.sr.recipe import _augment, charbonnier, realistic_pairs

    made = realistic_pairs(images, SCALE, patches, seed, weights, RANGES[ranges])
    lr_t, hr_t = (torch.from_numpy(a) for a in made)
    torch.manual_seed(seed)
    net = build("lapsrn-x2")
    assert isinstance(net, LapSRN)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        net.train()
        order = torch.randperm(len(lr_t), generator=gen)
        for start in range(0, len(order) - BATCH + 1, BATCH):
            idx = order[start:start + BATCH]
            lr, hr = _augment([lr_t[idx], hr_t[idx]], gen)
            loss = charbonnier(to_image(net(lr)[-1]), hr)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if epoch in check:
            net.eval()
            on_epoch(epoch, runtime(net).eval())
    return net


def shipped_method():
    from edgeret_plugins.tasks.sr import WEIGHTS_DIR
    from edgeret_plugins.tasks.sr.model import runtime
    from edgeret_plugins.tasks.sr.recipe import load_variant

    return upscaler(runtime(load_variant("lapsrn-x2", WEIGHTS_DIR)).eval())


def summarize(rows: list[dict]) -> list[dict]:
    keys = sorted({(r["kernel"], r["method"]) for r in rows})
    out = []
    for kernel, method in keys:
        sel = [r for r in rows if r["kernel"] == kernel and r["method"] == method]
        out.append({"kernel": kernel, "method": method, "n": len(sel),
                    "psnr": float(np.mean([r["psnr"] for r in sel])),
                    "ssim": float(np.mean([r["ssim"] for r in sel]))})
    return out


def main() -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=Path("../shared/data/real"))
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--check", default="2,4,6")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ranges", choices=["standard", "mild"], default="mild",
                    help="degradation ranges (degradations.RANGES)")
    ap.add_argument("--patches", type=int, default=PATCHES, help="patch pairs per fold (each epoch sees all)")
    ap.add_argument("--eval-per-fold", type=int, default=EVAL_PER_FOLD,
                    help="fundus-dr patients scored per fold")
    ap.add_argument("--out", type=Path, default=Path("benchmarks"))
    ap.add_argument("--ship", type=Path, help="write the all-data model here if it beats the shipped one")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    check = sorted(int(c) for c in args.check.split(","))
    photos = real_photos(args.real)
    fold = folds_of([p for p, _ in photos], args.folds, args.seed)
    shipped = shipped_method()
    bicubic = __import__("edgeret_plugins.tasks.sr.processing", fromlist=["bicubic"]).bicubic
    rows: list[dict] = []
    started = time.time()
    for k in range(args.folds):
        train_paths = [p for pat, p in photos if fold[pat] != k]
        held, seen = [], set()
        for pat, p in photos:  # one photograph per held-out patient
            if fold[pat] == k and pat not in seen:
                seen.add(pat)
                held.append((pat, p))
        held = [h for h in held if h[0].startswith("chase")] + \
            [h for h in held if h[0].startswith("dr")][:args.eval_per_fold]
        test = [(f"{pat}:{p.name}", centre_crop(read_rgb(p))) for pat, p in held]
        base = evaluate(test, {"bicubic": lambda lr: bicubic(lr, SCALE), "shipped (phantoms)": shipped})
        rows += [{**r, "fold": k} for r in base]
        images, weights = training_images(train_paths)

        def on_epoch(epoch, net, k=k, test=test, rows=rows):
            got = evaluate(test, {f"realistic e{epoch}": upscaler(net)})
            rows.extend({**r, "fold": k} for r in got)
            mean = np.mean([r["psnr"] for r in got])
            print(f"fold {k} epoch {epoch}: held-out PSNR {mean:.3f} ({time.time() - started:.0f} s)",
                  flush=True)

        train(images, weights, args.epochs, check, args.seed + k, on_epoch, args.patches, args.ranges)
        del images
    summary = summarize(rows)
    means = {e: np.mean([s["psnr"] for s in summary if s["method"] == f"realistic e{e}"]) for e in check}
    best = max(means, key=means.get)
    by = {(s["kernel"], s["method"]): s for s in summary}
    beats = all(by[(kn, f"realistic e{best}")]["psnr"] > by[(kn, "shipped (phantoms)")]["psnr"]
                for kn in {s["kernel"] for s in summary})
    result = {"folds": args.folds, "patients": len(fold), "photographs": len(photos),
              "scored": sorted({r["image"] for r in rows}), "chosen_epochs": best,
              "cv_mean_psnr_by_epochs": {str(e): float(v) for e, v in means.items()},
              "beats_shipped_on_both_kernels": beats, "summary": summary, "rows": rows,
              "seconds": round(time.time() - started, 1)}
    table = markdown_table(["kernel", "method", "n", "PSNR dB", "SSIM"],
                           [[s["kernel"], s["method"], s["n"], f"{s['psnr']:.3f}", f"{s['ssim']:.4f}"]
                            for s in summary])
    text = (f"# sr ×2 on real photographs: {args.folds}-fold patient-level CV, {args.ranges} "
            "degradations\n\n"
            f"{len(photos)} photographs of {len(fold)} patients/subjects (fundus-dr native, ≤2 per patient; "
            f"CHASE_DB1); scored: one {CROP}×{CROP} centre crop per held-out patient "
            f"({len(result['scored'])} photographs). Chosen epochs: {best} "
            f"(mean CV PSNR by epochs: {', '.join(f'{e}: {v:.3f}' for e, v in means.items())}).\n\n"
            f"{table}\n")
    result["ranges"] = args.ranges
    result["command"] = "python tools/cv_sr_real.py " + " ".join(sys.argv[1:])
    text += f"\nCommand: `{result['command']}`\n"
    write_report(args.out, f"sr-real-cv-{args.ranges}", result, text)
    print(text)
    if args.ship:
        if not beats:
            print("not shipping: the realistic model does not beat the shipped one on both kernels")
            return 0
        ship_final(photos, best, args, means)
    return 0


def ship_final(photos, epochs: int, args, means) -> None:
    from edgeret.build.training.shipping import ship
    from edgeret.plugin.host import Host
    from edgeret_plugins.tasks.denoise.recipe import export_image_model
    from edgeret_plugins.tasks.sr.model import runtime
    from edgeret_plugins.tasks.sr.recipe import REALISTIC

    images, weights = training_images([p for _, p in photos])
    start = time.perf_counter()
    net = train(images, weights, epochs, [], args.seed, lambda *_: None, args.patches, args.ranges)
    task = Host().task("sr")
    meta = {"variant": "lapsrn-x2", "model": "LapSRN-edge x2 (1 level, 16 features, 1 conv)", "scale": 2,
            "epochs": epochs, "epochs_chosen_by": f"{args.folds}-fold patient-level CV (tools/cv_sr_real.py)",
            "batch_size": BATCH, "patches": args.patches, "lr_patch": 48, "seed": args.seed,
            "threads": args.threads,
            "data": ("fundus-dr (native, <=2 per patient), fundus-photos (CHASE_DB1) from "
                     f"../shared/data/real; {len(PHANTOM_SEEDS)} fundus phantoms (seeds "
                     f"{PHANTOM_SEEDS.start}+); scikit-image photos"),
            "real_photographs": len(photos), "degradation": f"{REALISTIC} ({args.ranges} ranges)",
            "loss": "Charbonnier (eps 1e-3)", "params": sum(p.numel() for p in net.parameters()),
            "command": "python tools/cv_sr_real.py " + " ".join(sys.argv[1:]),
            "train_seconds_this_run": round(time.perf_counter() - start, 1)}
    ship(net, net, task, args.ship / "lapsrn-x2.pt", None, meta)
    export_image_model(runtime(net), task, args.ship / "sr_x2.onnx", {**meta, "weights": "lapsrn-x2.pt"},
                       channels=3)
    (args.ship / "lapsrn-x2.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"shipped lapsrn-x2 ({epochs} epochs) to {args.ship}")


if __name__ == "__main__":
    raise SystemExit(main())
