"""Continue training a shipped codec (build host only; imports torch).

The first weights were trained for a few thousand steps only (the CPU budget);
every further step lowers the rate at equal quality (TRAINING.md). This module
takes a shipped model, optionally switches its decoder to mirrored edges,
drops the rate points that were extrapolated at export (they are re-derived
from the retrained gains when the model is exported again), and trains on
fresh phantoms with the recipe's own loss::

    python -m edgeret_plugins.tasks.codec.finetune fundus-factorized --out runs/codec-ft \\
        --epochs 8 --lr 3e-4 --threads 1 --weights plugins/tasks/codec/weights
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from edgeret.build.training.loop import FitConfig, fit, seed_everything

from . import WEIGHTS_DIR
from .model import Codec
from .recipe import augmentation, loss_fn_for
from .shipping import export_codec, extend_low, load_codec
from .specs import SPECS, natural_photos, patches_from, phantom
from .widen import widened


def reconfigured(model: Codec, **changes) -> Codec:
    """The same weights under a changed config (e.g. ``decoder_edge="mirror"``)."""
    new = Codec(dataclasses.replace(model.cfg, **changes))
    new.load_state_dict(model.state_dict())
    return new


def without_extrapolated(model: Codec) -> Codec:
    """Only the trained rate points: per-rate tensors lose their first ``extrapolated`` slots."""
    cfg = model.cfg
    k = cfg.extrapolated
    if not k:
        return model
    new = Codec(dataclasses.replace(cfg, lambdas=cfg.lambdas[k:], extrapolated=0))
    state = new.state_dict()
    for key, value in model.state_dict().items():
        state[key] = value[k:].clone() if state[key].shape != value.shape else value.clone()
    new.load_state_dict(state)
    return new


def with_trained_lowest(model: Codec, lam: float) -> Codec:
    """One more *trained* rate point below the lowest, at rate-distortion weight ``lam``.

    Its gains start where the export's extrapolation would put them (one step of
    log-gain below the lowest point), so training starts from the shipped curve.
    The export then extrapolates only the points the spec still misses.
    """
    trained = without_extrapolated(model)
    if not 0 < lam < trained.cfg.lambdas[0]:
        raise ValueError(f"the new lowest lambda {lam} must be below {trained.cfg.lambdas[0]} and above 0")
    extended = extend_low(trained, 1.0)
    return reconfigured(extended, lambdas=(lam, *extended.cfg.lambdas[1:]), extrapolated=0)


def finetune(name: str, out_dir: Path, *, epochs: int, lr: float, first_seed: int, n_images: int,
             mirror: bool = True, threads: int = 1, progress: bool = True,
             weights_dir: Path = WEIGHTS_DIR, train_lowest: float | None = None,
             widen_encoder: tuple[int, int] | None = None, widen_decoder: tuple[int, int] | None = None,
             natural_per_photo: int = 0, jitter: float = 0.0, blur: float = 0.0,
             lowpass: float = 0.0) -> tuple[Codec, dict]:
    spec = SPECS[name]
    torch.set_num_threads(threads)
    model = load_codec(name, weights_dir)
    previous = model.cfg.to_dict()
    if mirror:
        model = reconfigured(model, decoder_edge="mirror")
    model = without_extrapolated(model)
    if train_lowest is not None:
        model = with_trained_lowest(model, train_lowest)
    if widen_encoder or widen_decoder:
        model = widened(model, widen_encoder, widen_decoder, seed=spec.seed)
    model = model.train()
    if epochs == 0:  # only the edge switch: no steps, the export re-solves the output layer
        return model, {"stage": "re-export of the shipped model", "from_config": previous,
                       "steps": 0, "decoder_edge": model.cfg.decoder_edge}
    cpu0 = time.process_time()
    seeds = range(first_seed, first_seed + n_images)
    patches = patches_from((phantom(spec.modality, s) for s in seeds), spec.patches_per_image,
                           spec.seed + 1)
    if natural_per_photo:
        photos = natural_photos(model.cfg.in_channels)
        extra = patches_from(((p, None) for p in photos), natural_per_photo, spec.seed + 2)
        patches = np.concatenate([patches, extra])
    data_cpu = time.process_time() - cpu0
    seed_everything(spec.seed)
    config = FitConfig(epochs=epochs, batch_size=spec.batch, lr=lr, weight_decay=0.0, seed=spec.seed,
                       threads=threads, progress=progress)
    cpu0, wall0 = time.process_time(), time.time()
    fit(model, [torch.from_numpy(patches)], loss_fn_for(model.cfg, lowpass), config,
        out_dir / "checkpoints" / f"{name}.finetune.ckpt", label=f"{name} fine-tune",
        augment=augmentation(jitter, blur))
    steps = epochs * math.ceil(len(patches) / spec.batch)
    return model, {
        "stage": "fine-tune of the shipped model", "from_config": previous,
        "train_images": f"{spec.modality} phantoms, seeds {first_seed}..{first_seed + n_images - 1} "
                        "(quality good, every 4th usable)",
        "patches": int(len(patches)), "epochs": epochs, "steps": steps, "lr": lr,
        "batch": spec.batch, "seed": spec.seed, "crop_seed": spec.seed + 1, "threads": threads,
        "decoder_edge": model.cfg.decoder_edge, "lambdas": list(model.cfg.lambdas),
        "added_trained_lowest": train_lowest,
        "widths": list(model.cfg.widths), "dec_widths": list(model.cfg.dec_widths),
        "widened_from": [list(previous["widths"]), list(previous["dec_widths"] or previous["widths"])]
        if (widen_encoder or widen_decoder) else None,
        "natural_photos": f"{natural_per_photo} crops from each of {len(photos)} scikit-image colour "
                          "photographs (no retina)" if natural_per_photo else None,
        "colour_jitter": jitter or None, "blur_sigma_max": blur or None,
        "lowpass_l1_weight": lowpass or None,
        "data_cpu_seconds": round(data_cpu, 1),
        "cpu_seconds_this_run": round(time.process_time() - cpu0, 1),
        "wall_seconds_this_run": round(time.time() - wall0, 1)}


def _pair(text: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two channel counts like 32,32, got {text!r}") from None
    return a, b


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(SPECS))
    parser.add_argument("--out", type=Path, default=Path("runs/codec-ft"), help="checkpoints")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR, help="read and rewritten")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=480)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-mirror", action="store_true", help="keep the zero-padded decoder edges")
    parser.add_argument("--train-lowest", type=float, metavar="LAMBDA",
                        help="add a trained rate point below the lowest, at this lambda (it replaces "
                             "the lowest extrapolated one)")
    parser.add_argument("--widen-encoder", type=_pair, metavar="W0,W1",
                        help="widen encoder layers 1-2 to these channels first (function-preserving)")
    parser.add_argument("--widen-decoder", type=_pair, metavar="W0,W1",
                        help="widen the decoder's full- and half-resolution layers to these channels")
    parser.add_argument("--natural", type=int, default=0, metavar="N",
                        help="add N crops from each of scikit-image's real colour photographs (no retina)")
    parser.add_argument("--colour-jitter", type=float, default=0.0, metavar="S",
                        help="scale each training patch's channels by exp(U(-S, S)) (colour balance)")
    parser.add_argument("--blur", type=float, default=0.0, metavar="SIGMA",
                        help="blur half the training batches with a Gaussian of sigma up to SIGMA px")
    parser.add_argument("--lowpass", type=float, default=0.0, metavar="W",
                        help="add W x the L1 error of 8x8 means to the distortion (slow colour drifts)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    previous = next(m["training"] for m in json.loads((args.weights / "codec_models.json").read_text())
                    ["models"] if m["name"] == args.name)
    model, meta = finetune(args.name, args.out, epochs=args.epochs, lr=args.lr,
                           first_seed=args.first_seed, n_images=args.images,
                           mirror=not args.no_mirror, threads=args.threads,
                           progress=not args.quiet, weights_dir=args.weights,
                           train_lowest=args.train_lowest, widen_encoder=args.widen_encoder,
                           widen_decoder=args.widen_decoder, natural_per_photo=args.natural,
                           jitter=args.colour_jitter, blur=args.blur, lowpass=args.lowpass)
    stages = previous.get("stages", [previous])
    entry = export_codec(model, args.name, {"stages": [*stages, meta]}, args.weights)
    for rate in entry["rates"]:
        print(rate["id"], rate["validation"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
