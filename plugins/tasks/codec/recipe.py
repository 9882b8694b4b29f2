"""Learned-codec training and export (build host only; imports torch).

Reproduce the shipped weights (see ``TRAINING.md``)::

    python -m edgeret_plugins.tasks.codec.recipe train oct-paper --out runs/codec
    python -m edgeret_plugins.tasks.codec.recipe export oct-paper --out runs/codec

``train`` generates the phantom training set (seeds in :data:`SPECS`), trains
with 1 torch thread and resumable checkpoints (``edgeret.build.training.loop.fit``);
``export`` rounds the weights to fp16 precision, writes the torch weights,
the encoder and decoder ONNX graphs, the gains and integer entropy tables
(``<name>.npz``) and the model's entry in ``weights/codec_models.json``.

Seeds: training phantoms use seeds ``0 .. n-1``, the rate points' nominal bpp
is measured on validation seeds from 50_000, and ``tools/bench_codec.py`` uses
held-out seeds from 100_000, so training never sees a benchmark image.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgeret.build.training.loop import FitConfig, fit, seed_everything

from . import WEIGHTS_DIR
from .losses import distortion, lowpass_l1
from .model import Codec, CodecConfig
from .shipping import export_codec, load_codec
from .specs import PATCH, SPECS, patches_from, training_patches

__all__ = ["export_codec", "load_codec", "loss_fn_for", "train", "train_codec"]

# --- training -----------------------------------------------------------------------------


def _augment(batch, generator: torch.Generator):
    (x,) = batch
    if torch.rand((), generator=generator) < 0.5:
        x = x.flip(-1)
    return [x]


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) float, reflected edges."""
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / sigma) ** 2)
    k = (k / k.sum()).repeat(x.shape[1], 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k[:, None, None, :], groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k[:, None, :, None], groups=x.shape[1])


def augmentation(jitter: float = 0.0, blur: float = 0.0):
    """Flip as :func:`_augment`; then, when asked, colour jitter and softening.

    ``jitter``: each patch's channels scaled by exp(U(-s, s)) — cameras differ in
    colour balance and the phantoms have one. ``blur``: half the batches blurred
    with a Gaussian of sigma U(0.3, blur) — real photographs are softer than the
    phantoms (optics, the camera's own JPEG: high-pass energy about a third of
    the phantoms'), and a codec that only saw sharp noisy patches spends its bits
    on noise it expects.
    """
    if not jitter and not blur:
        return _augment

    def augment(batch, generator: torch.Generator):
        (x,) = _augment(batch, generator)
        x = x.float()
        if jitter:
            u = torch.rand(x.shape[0], x.shape[1], 1, 1, generator=generator)
            x = x * ((u * 2 - 1) * jitter).exp()
        if blur and torch.rand((), generator=generator) < 0.5:
            x = _gaussian_blur(x, 0.3 + float(torch.rand((), generator=generator)) * (blur - 0.3))
        return [x.round().clamp(0, 255).to(torch.uint8)]

    return augment


def loss_fn_for(cfg: CodecConfig, lowpass: float = 0.0):
    """(R + lambda D) / lambda at a random trained rate point; ``lowpass`` > 0 adds that weight of
    :func:`lowpass_l1` to D."""
    lambdas = torch.tensor(cfg.lambdas or (1.0,))

    def loss_fn(model: Codec, batch) -> torch.Tensor:
        x = batch[0].float() / 255.0
        # global torch RNG: seeded and checkpointed by fit; extrapolated points are not trained
        r = int(torch.randint(cfg.extrapolated, cfg.n_rates, ()))
        x_hat, bits = model(x, r)
        d = distortion(x, x_hat)
        if lowpass:
            d = d + lowpass * lowpass_l1(x, x_hat)
        if bits is None:
            return d
        bpp = bits / (x.shape[0] * x.shape[2] * x.shape[3])
        return d + bpp / lambdas[r]  # = (R + lambda D) / lambda: same optimum, steady gradient scale

    return loss_fn


def train_codec(name: str, patches: np.ndarray, out_dir: Path, *, threads: int = 1,
                progress: bool = True, epochs: int | None = None) -> tuple[Codec, dict]:
    """Train one model from SPECS on uint8 patches; returns it and how it was made."""
    spec = SPECS[name]
    torch.set_num_threads(threads)
    seed_everything(spec.seed)
    model = Codec(spec.config)
    config = FitConfig(epochs=epochs or spec.epochs, batch_size=spec.batch, lr=spec.lr,
                       weight_decay=0.0, seed=spec.seed, threads=threads, progress=progress)
    cpu0, wall0 = time.process_time(), time.time()
    fit(model, [torch.from_numpy(patches)], loss_fn_for(spec.config), config,
        out_dir / "checkpoints" / f"{name}.ckpt", label=name, augment=_augment)
    meta = {"model": name, "cpu_seconds_this_run": round(time.process_time() - cpu0, 1),
            "wall_seconds_this_run": round(time.time() - wall0, 1), "threads": threads,
            "patches": int(len(patches)), "patch": PATCH, "epochs": config.epochs,
            "batch": config.batch_size, "lr": config.lr, "seed": spec.seed,
            "steps": config.epochs * math.ceil(len(patches) / config.batch_size),
            "train_images": f"{spec.modality} phantoms, seeds 0..{spec.n_images - 1} "
                            "(quality good, every 4th usable)"}
    return model, meta



# --- `edgeret train codec-encoder` ------------------------------------------------------


def train(request) -> Path:
    """`edgeret train codec-encoder --data DIR --variant NAME`: train on a folder of images.

    Every PNG/JPEG/TIFF under DIR (of the variant's modality: grayscale for OCT,
    colour for fundus) is cut into patches; weights go to ``--out``.
    """
    from edgeret.errors import EdgeretError
    from edgeret.images.read_write import read_image

    name = request.variant or "oct-factorized"
    if name not in SPECS:
        raise EdgeretError(f"unknown codec variant '{name}' (known: {', '.join(SPECS)})")
    spec = SPECS[name]
    files = sorted(p for p in Path(request.data_dir).rglob("*")
                   if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff"))
    kind = "gray" if spec.modality == "oct" else "color"
    images = []
    for f in files:
        img = read_image(f, expect=kind)
        if img.dtype != np.uint8:
            img = (img >> 8).astype(np.uint8)
        if min(img.shape[:2]) >= PATCH:
            images.append((img, None))
    if not images:
        raise EdgeretError(f"{request.data_dir}: no {kind} images of at least {PATCH}x{PATCH}")
    patches = patches_from(images, spec.patches_per_image, request.seed)
    model, meta = train_codec(name, patches, Path(request.out_dir), threads=request.threads or 1,
                              progress=request.progress, epochs=request.epochs)
    meta["train_images"] = f"{len(images)} images from {request.data_dir}"
    export_codec(model, name, meta, Path(request.out_dir))
    return Path(request.out_dir)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["train", "export", "all"])
    parser.add_argument("name", choices=sorted(SPECS))
    parser.add_argument("--out", type=Path, default=Path("runs/codec"), help="checkpoints")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = SPECS[args.name]
    cpu0 = time.process_time()
    patches = training_patches(spec)
    data_cpu = time.process_time() - cpu0
    model, meta = train_codec(args.name, patches, args.out, threads=args.threads,
                              progress=not args.quiet, epochs=args.epochs)
    meta["data_cpu_seconds"] = round(data_cpu, 1)
    meta_path = args.out / f"{args.name}.train.json"
    if args.action == "train" or args.action == "all":
        prev = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        meta["cpu_seconds_total"] = round(prev.get("cpu_seconds_total", 0) + meta["cpu_seconds_this_run"], 1)
        meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    if args.action in ("export", "all"):
        if meta_path.exists():
            meta = {**json.loads(meta_path.read_text()), **{"data_cpu_seconds": meta["data_cpu_seconds"]}}
        entry = export_codec(model, args.name, meta, args.weights)
        for rate in entry["rates"]:
            print(rate["id"], rate["validation"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
