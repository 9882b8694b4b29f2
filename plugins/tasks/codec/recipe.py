"""Learned-codec training and export (build host only; imports torch).

Reproduce the shipped weights (see ``TRAINING.md``)::

    python -m edgeret_plugins.tasks.codec.recipe train oct-paper --out runs/codec
    python -m edgeret_plugins.tasks.codec.recipe export oct-paper --out runs/codec

``train`` generates the phantom training set (seeds in :data:`SPECS`), trains
with 1 torch thread and resumable checkpoints (``edgeret.training.loop.fit``);
``export`` rounds the weights to fp16 precision, writes the torch weights,
the encoder and decoder ONNX graphs, the gains and integer entropy tables
(``<name>.npz``) and the model's entry in ``weights/codec_models.json``.

Seeds: training phantoms use seeds ``0 .. n-1``, the rate points' nominal bpp
is measured on validation seeds from 50_000, and ``tools/bench_codec.py`` uses
held-out seeds from 100_000, so training never sees a benchmark image.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgeret.entropy import IntegerTable
from edgeret.training.loop import FitConfig, fit, seed_everything

from . import WEIGHTS_DIR
from .losses import distortion
from .model import (
    STRIDES,
    Codec,
    CodecConfig,
    DecoderGraph,
    EncoderGraph,
    count_params,
    load_shipped,
    mirror_edges,
)
from .processing import MULTIPLE, dequantize, ms_ssim, psnr, quantize, to_model_input

MANIFEST = "codec_models.json"
PATCH = 192  # >= 176, so the five-scale MS-SSIM is defined on a training patch
VALIDATION_SEED = 50_000
BENCH_SEED = 100_000
MAX_RANGE = 255  # factorized tables cover at most -255..255


@dataclass(frozen=True)
class Spec:
    """One shipped model: what it is, what it trains on and for how long."""

    modality: str  # "oct" or "fundus"
    config: CodecConfig
    n_images: int
    patches_per_image: int
    epochs: int
    batch: int = 4
    lr: float = 1e-3
    seed: int = 0
    description: str = ""
    # factorized: rate points added below the lowest trained one at export, each with log-gains
    # extrapolated by this many steps of the two lowest points (Cui et al. 2021's continuous
    # rate adaptation), applied in order
    extrapolate_low: tuple[float, ...] = ()


SPECS: dict[str, Spec] = {
    "oct-paper": Spec(
        "oct", CodecConfig(1, "paper", latents=(8, 2, 1, 1)), n_images=200, patches_per_image=6,
        epochs=3, description="seed paper's architecture, L = 7, OCT, channels (8, 2, 1, 1)"),
    "oct-factorized": Spec(
        "oct", CodecConfig(1, "factorized", latents=(32, 16, 8, 4), lambdas=(1.0, 4.0, 16.0, 64.0, 256.0)),
        n_images=240, patches_per_image=8, epochs=5, extrapolate_low=(1.0,),
        description="same skeleton, learned factorized prior, 5 trained rate points + 1 extrapolated, OCT"),
    "fundus-paper": Spec(
        "fundus", CodecConfig(3, "paper", latents=(16, 4, 2, 1)), n_images=200, patches_per_image=6,
        epochs=2, description="seed paper's architecture, L = 7, fundus, channels (16, 4, 2, 1)"),
    "fundus-factorized": Spec(
        "fundus", CodecConfig(3, "factorized", latents=(32, 16, 8, 4),
                              lambdas=(2.0, 8.0, 32.0, 128.0, 512.0)),
        n_images=240, patches_per_image=8, epochs=5, extrapolate_low=(1.0, 1.0),
        description="same skeleton, learned factorized prior, 5 trained rate points + 2 extrapolated, "
                    "fundus"),
}


# --- data ---------------------------------------------------------------------------------


def phantom(modality: str, seed: int, *, size: int | None = None, bit_depth: int = 8):
    """(image, mask of the interesting region) for one phantom; training takes good + usable."""
    quality = "usable" if seed % 4 == 3 else "good"
    if modality == "oct":
        from edgeret.data.oct import generate_oct

        s = generate_oct(seed, quality=quality, bit_depth=bit_depth)
        return s.image, s.retina_mask
    from edgeret.data.fundus import generate_fundus

    s = generate_fundus(seed, size=size or (1024 if seed % 3 == 2 else 512), quality=quality)
    return s.image, s.image.max(axis=2) > 10


def patches_from(images_and_masks, per_image: int, seed: int) -> np.ndarray:
    """uint8 (N, C, PATCH, PATCH): 3/4 of the crops centred on the mask, the rest anywhere."""
    rng = np.random.default_rng(seed)
    out = []
    for image, mask in images_and_masks:
        img = image if image.ndim == 3 else image[:, :, None]
        h, w = img.shape[:2]
        ys, xs = np.nonzero(mask) if mask is not None else (np.array([]), np.array([]))
        for _ in range(per_image):
            if len(ys) and rng.random() < 0.75:
                k = rng.integers(len(ys))
                top = int(np.clip(ys[k] - PATCH // 2, 0, h - PATCH))
                left = int(np.clip(xs[k] - PATCH // 2, 0, w - PATCH))
            else:
                top, left = int(rng.integers(0, h - PATCH + 1)), int(rng.integers(0, w - PATCH + 1))
            out.append(img[top:top + PATCH, left:left + PATCH].transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out))


def training_patches(spec: Spec) -> np.ndarray:
    pairs = (phantom(spec.modality, s) for s in range(spec.n_images))
    return patches_from(pairs, spec.patches_per_image, spec.seed)


# --- training -----------------------------------------------------------------------------


def _augment(batch, generator: torch.Generator):
    (x,) = batch
    if torch.rand((), generator=generator) < 0.5:
        x = x.flip(-1)
    return [x]


def loss_fn_for(cfg: CodecConfig):
    lambdas = torch.tensor(cfg.lambdas or (1.0,))

    def loss_fn(model: Codec, batch) -> torch.Tensor:
        x = batch[0].float() / 255.0
        # global torch RNG: seeded and checkpointed by fit; extrapolated points are not trained
        r = int(torch.randint(cfg.extrapolated, cfg.n_rates, ()))
        x_hat, bits = model(x, r)
        d = distortion(x, x_hat)
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


# --- export -------------------------------------------------------------------------------


def round_to_fp16(model: torch.nn.Module) -> None:
    """Round every parameter to fp16 precision (kept as fp32): the shipped .pt is fp16."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())


def _export_graph(module, example: tuple, path: Path, inputs: list[str], outputs: list[str],
                  metadata: dict) -> bytes:
    import onnx

    axes = {n: {0: "batch", 2: f"{n}_height", 3: f"{n}_width"} for n in inputs + outputs}
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module.eval(), example, buf, input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=17, do_constant_folding=True, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    for k, v in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, str(v)
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return data


@torch.no_grad()
def encoder_latents(model: Codec, image: np.ndarray, bit_depth: int = 8) -> list[np.ndarray]:
    """Torch encoder on one image: the four continuous latents (1, C, h, w) as numpy."""
    x = torch.from_numpy(to_model_input(image, bit_depth))
    return [y.numpy() for y in model.encoder(x)]


def _probs(mu, log_s, logits, k: torch.Tensor) -> torch.Tensor:
    """Per-channel probabilities (C, K) of the integer bins k under a logistic mixture.

    The end bins take the tails (what the tables code); mu/log_s/logits are (C, M).
    """
    s, w = log_s.clamp(-4.0, 6.0).exp(), logits.softmax(-1)

    def cdf(v):
        return (torch.sigmoid((v[None, :, None] - mu[:, None, :]) / s[:, None, :]) * w[:, None, :]).sum(-1)

    upper, lower = cdf(k + 0.5), cdf(k - 0.5)
    upper = torch.cat([upper[:, :-1], torch.ones_like(upper[:, -1:])], 1)
    lower = torch.cat([torch.zeros_like(lower[:, :1]), lower[:, 1:]], 1)
    return (upper - lower).clamp_min(0)


@torch.no_grad()
def _tables(model: Codec, r: int, ranges: list[int]) -> list[IntegerTable]:
    """Tabulate the learned densities of rate point r (float64, then 16-bit integers)."""
    tables = []
    for i, big in enumerate(ranges):
        prior = model.priors[i]
        k = torch.arange(-big, big + 1, dtype=torch.float64)
        probs = _probs(prior.means[r].double(), prior.log_scales[r].double(), prior.logits[r].double(), k)
        tables.append(IntegerTable.from_probabilities(probs.numpy(), min_symbol=-big))
    return tables


@torch.no_grad()
def training_latents(model: Codec, images: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Continuous latents (C, h, w) of each training image (torch encoder)."""
    return [[y[0] for y in encoder_latents(model, image)] for image in images]


def _symbol_ranges(model: Codec, latents, r: int) -> list[int]:
    peak = [1] * 4
    for ys in latents:
        for i, y in enumerate(ys):
            g = model.gain(i, r).detach().numpy()
            peak[i] = max(peak[i], int(np.abs(np.rint(y * g[:, None, None])).max()))
    return [min(MAX_RANGE, p + 2) for p in peak]


def refit_priors(model: Codec, latents, r: int, ranges: list[int], steps: int = 400) -> list[dict]:
    """Fit rate point r's densities to the training symbols (maximum likelihood); returns bits/symbol.

    In training each density is learned jointly with the transforms, but at the
    learning rate of the transforms and with 1/n_rates of the steps, so after a
    short CPU run the densities are still far wider than the symbols they code
    (they cost up to 3x the symbols' empirical entropy). Here, with the
    transforms frozen, the same logistic mixtures are fitted to the per-channel
    histograms of the training images' quantized latents (Adam, lr 0.05,
    ``steps`` full-batch steps; deterministic). The coded rate then comes close
    to the entropy of the symbols.
    """
    report = []
    for i, big in enumerate(ranges):
        g = model.gain(i, r).detach().numpy()
        c = model.cfg.latents[i]
        counts = np.zeros((c, 2 * big + 1), np.float64)
        for ys in latents:
            q = np.clip(np.rint(ys[i] * g[:, None, None]), -big, big).astype(np.int64).reshape(c, -1) + big
            for ch in range(c):
                counts[ch] += np.bincount(q[ch], minlength=2 * big + 1)
        n = torch.from_numpy(counts)
        total = float(n.sum())
        prior = model.priors[i]
        params = [prior.means[r].detach().double().clone().requires_grad_(True),
                  prior.log_scales[r].detach().double().clone().requires_grad_(True),
                  prior.logits[r].detach().double().clone().requires_grad_(True)]
        k = torch.arange(-big, big + 1, dtype=torch.float64)

        def nll(ps, n=n, k=k, total=total):
            return -(n * torch.log2(_probs(*ps, k).clamp_min(2.0**-16))).sum() / total

        before = float(nll(params).detach())
        opt = torch.optim.Adam(params, lr=0.05)
        for _ in range(steps):
            opt.zero_grad()
            loss = nll(params)
            loss.backward()
            opt.step()
        with torch.no_grad():
            for dst, src in zip((prior.means, prior.log_scales, prior.logits), params, strict=True):
                dst[r] = src.float().half().float()  # the shipped .pt is fp16
        p = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        entropy = float(-(counts * np.log2(np.where(p > 0, p, 1))).sum() / total)
        report.append({"latent": i, "bits_per_symbol_before": round(before, 4),
                       "bits_per_symbol_after": round(float(nll(params).detach()), 4),
                       "empirical_entropy": round(entropy, 4)})
    return report


@torch.no_grad()
def rate_points(model: Codec, name: str, train_images: list[np.ndarray], refit: bool = True):
    """(gains, inv_gains, tables) for each rate point: numpy float32 per latent, IntegerTables."""
    cfg = model.cfg
    points = []
    latents = training_latents(model, train_images) if cfg.variant == "factorized" else None
    for r in range(cfg.n_rates):
        if cfg.variant == "paper":
            half = cfg.levels // 2
            table = IntegerTable.uniform(cfg.levels)
            points.append(dict(gains=None, inv_gains=None, tables=[table] * 4, lo=[-half] * 4,
                               hi=[half] * 4, refit=None))
            continue
        ranges = _symbol_ranges(model, latents, r)
        report = None
        if refit:
            with torch.enable_grad():
                report = refit_priors(model, latents, r, ranges)
        gains = [model.gain(i, r).detach().numpy().astype(np.float32) for i in range(4)]
        inv = [model.inv_gain(i, r).detach().numpy().astype(np.float32) for i in range(4)]
        points.append(dict(gains=gains, inv_gains=inv, tables=_tables(model, r, ranges),
                           lo=[-b for b in ranges], hi=ranges, refit=report))
    return points


@torch.no_grad()
def _dequantized(model: Codec, point: dict, ys: list[np.ndarray]) -> list[torch.Tensor]:
    out = []
    for i, y in enumerate(ys):
        g = None if point["gains"] is None else point["gains"][i]
        ig = None if point["inv_gains"] is None else point["inv_gains"][i]
        out.append(torch.from_numpy(dequantize(quantize(y, g, point["lo"][i], point["hi"][i]), ig)))
    return out


@torch.no_grad()
def refit_output_layer(model: Codec, points: list[dict], images: list[np.ndarray], *,
                       pixels_per_image: int = 20_000, ridge: float = 1e-3, seed: int = 0) -> dict:
    """Re-solve the decoder's last 7x7 conv by least squares; keep it if the distortion drops.

    The last layer is linear in its weights given the features of layers 1-5,
    so its L2-optimal weights and bias have a closed form. Features are taken
    from the *quantized* latents of every rate point on training images (random
    pixels), which also corrects what straight-through training leaves behind
    (e.g. a brightness offset in the OCT paper model's black vitreous). The new
    layer is kept only if the training loss's distortion D (0.84 (1 - MS-SSIM)
    + 0.16 L1) on those images goes down.
    """
    rng = np.random.default_rng(seed)
    d6 = model.decoder.d6
    k, pad = d6.kernel_size[0], d6.padding[0]
    cin, cout = d6.in_channels, d6.out_channels
    xtx = torch.zeros(cin * k * k + 1, cin * k * k + 1, dtype=torch.float64)
    xty = torch.zeros(cin * k * k + 1, cout, dtype=torch.float64)
    cases = []
    for image in images:
        x = torch.from_numpy(to_model_input(image, 8))
        ys = [y.numpy() for y in model.encoder(x)]
        for point in points:
            h = model.decoder.features(*_dequantized(model, point, ys))
            cases.append((x, h))
            hh, ww = h.shape[2:]
            idx = torch.from_numpy(rng.choice(hh * ww, min(pixels_per_image, hh * ww), replace=False))
            yy, xx = idx // ww, idx % ww
            hp = (mirror_edges(h, pad) if model.decoder.mirror  # the layer's own edge handling
                  else F.pad(h, (pad, pad, pad, pad)))[0]
            off = torch.arange(k)
            patches = hp[:, yy[:, None, None] + off[None, :, None], xx[:, None, None] + off[None, None, :]]
            a = patches.permute(1, 0, 2, 3).reshape(len(idx), cin * k * k)  # weight layout (cin, ky, kx)
            a = torch.cat([a, torch.ones(len(idx), 1)], 1).double()  # (n, features + 1)
            target = (x[0][:, yy, xx] - 0.5).double().T  # (n, cout)
            xtx += a.T @ a
            xty += a.T @ target
    n = xtx[-1, -1]
    sol = torch.linalg.solve(xtx + ridge * n * torch.eye(len(xtx), dtype=torch.float64), xty)
    new_w = sol[:-1].T.reshape(cout, cin, k, k).float()
    new_b = sol[-1].float()

    def mean_d() -> float:
        return float(np.mean([float(distortion(x, model.decoder.output_layer(h).clamp(0, 1)))
                              for x, h in cases]))

    before = mean_d()
    old_w, old_b = d6.weight.clone(), d6.bias.clone()
    d6.weight.copy_(new_w.half().float())
    d6.bias.copy_(new_b.half().float())
    after = mean_d()
    if after >= before:
        d6.weight.copy_(old_w)
        d6.bias.copy_(old_b)
    return {"distortion_before": round(before, 5), "distortion_after": round(after, 5),
            "kept": after < before, "images": len(images), "pixels_per_image_and_rate": pixels_per_image}


def rate_digest(enc_sha: bytes, dec_sha: bytes, point: dict) -> bytes:
    """The model hash written in every header (see ``edgeret.codec_io.rate_digest``)."""
    from edgeret.codec_io import rate_digest as digest

    return digest(enc_sha, dec_sha, point["gains"], point["inv_gains"], point["tables"])


@torch.no_grad()
def measure(model: Codec, point: dict, r: int, images: list[np.ndarray], bit_depth: int = 8) -> dict:
    """Real bytes (entropy-coded with the tables) and quality on a few images, torch transform."""
    from edgeret.entropy import encode_symbols

    maxval = (1 << bit_depth) - 1
    bpps, ms, ps = [], [], []
    for image in images:
        ys = encoder_latents(model, image, bit_depth)
        nbytes, deq = 0, []
        for i, y in enumerate(ys):
            g = None if point["gains"] is None else point["gains"][i]
            ig = None if point["inv_gains"] is None else point["inv_gains"][i]
            q = quantize(y, g, point["lo"][i], point["hi"][i])
            nbytes += len(encode_symbols(q, point["tables"][i]))
            deq.append(torch.from_numpy(dequantize(q, ig)))
        out = DecoderGraph(model)(*deq).numpy()
        h, w = image.shape[:2]
        rec = np.rint(out[0, :, :h, :w] * maxval)
        rec = rec[0] if rec.shape[0] == 1 else rec.transpose(1, 2, 0)
        bpps.append(nbytes * 8 / (h * w))
        ms.append(ms_ssim(image, rec, maxval))
        ps.append(psnr(image, rec, maxval))
    return {"bpp": float(np.mean(bpps)), "ms_ssim": float(np.mean(ms)), "psnr": float(np.mean(ps))}


def extend_low(model: Codec, steps: float) -> Codec:
    """A copy of ``model`` with one more rate point below its lowest: extrapolated gains.

    log-gain_new = log-gain_0 - steps * (log-gain_1 - log-gain_0), for the encoder's
    gains and the decoder's inverse gains alike; its density is fitted at export
    like the others (:func:`refit_priors`). The new point becomes index 0.
    """
    import dataclasses

    cfg = model.cfg
    new_cfg = dataclasses.replace(cfg, lambdas=(0.0, *cfg.lambdas), extrapolated=cfg.extrapolated + 1)
    new = Codec(new_cfg)
    state = new.state_dict()
    for key, value in model.state_dict().items():
        if state[key].shape == value.shape:
            state[key] = value.clone()
        else:  # per-rate tensors: slot 0 is new
            state[key][1:] = value
            state[key][0] = value[0]
    new.load_state_dict(state)
    with torch.no_grad():
        for params in (new.gains, new.inv_gains):
            for p in params:
                p[0] = p[1] - steps * (p[2] - p[1])
    return new.eval()


def export_codec(model: Codec, name: str, meta: dict, weights_dir: Path = WEIGHTS_DIR) -> dict:
    """Write weights, ONNX graphs, tables and the manifest entry for one trained model."""
    spec = SPECS[name]
    if not model.cfg.extrapolated:
        for steps in spec.extrapolate_low:
            model = extend_low(model, steps)
    cfg = model.cfg
    model.eval()
    round_to_fp16(model)
    weights_dir.mkdir(parents=True, exist_ok=True)
    pt = weights_dir / f"{name}.pt"
    example = torch.rand(1, cfg.in_channels, 64, 64)
    info = {"edgeret.codec": name, "edgeret.modality": spec.modality, "edgeret.variant": cfg.variant}
    enc = _export_graph(EncoderGraph(model), (example,), weights_dir / f"{name}.encoder.onnx",
                        ["image"], ["y0", "y1", "y2", "y3"], {**info, "edgeret.task": "codec-encoder"})

    train_imgs = [phantom(spec.modality, s)[0] for s in range(0, spec.n_images, max(1, spec.n_images // 24))]
    val_imgs = [phantom(spec.modality, VALIDATION_SEED + s, size=512)[0] for s in range(4)]
    points = rate_points(model, name, train_imgs)  # refits the factorized densities
    out_refit = refit_output_layer(model, points, train_imgs[::3])
    lat = tuple(torch.zeros(1, c, 64 // s, 64 // s) for c, s in zip(cfg.latents, (32, 16, 8, 4), strict=True))
    dec = _export_graph(DecoderGraph(model), lat, weights_dir / f"{name}.decoder.onnx",
                        ["y0", "y1", "y2", "y3"], ["image"], {**info, "edgeret.task": "codec-decoder"})
    enc_sha, dec_sha = hashlib.sha256(enc).digest(), hashlib.sha256(dec).digest()
    tmp = pt.with_suffix(".pt.tmp")
    torch.save({"config": cfg.to_dict(), "state_dict": {k: v.half() for k, v in model.state_dict().items()}},
               tmp)
    tmp.replace(pt)
    arrays, rates = {}, []
    for r, point in enumerate(points):
        for i in range(4):
            arrays[f"table_{r}_{i}"] = np.frombuffer(point["tables"][i].to_bytes(), np.uint8)
            if point["gains"] is not None:
                arrays[f"gain_{r}_{i}"] = point["gains"][i]
                arrays[f"inv_gain_{r}_{i}"] = point["inv_gains"][i]
        quality = measure(model, point, r, val_imgs)
        rid = f"{name}-l{cfg.levels}" if cfg.variant == "paper" else f"{name}-q{r}"
        rates.append({
            "id": rid, "index": r,
            "lambda": cfg.lambdas[r] if cfg.lambdas and r >= cfg.extrapolated else None,
            "extrapolated": r < cfg.extrapolated,
            "model_hash": rate_digest(enc_sha, dec_sha, point).hex(),
            "symbol_range": [[lo, hi] for lo, hi in zip(point["lo"], point["hi"], strict=True)],
            "table_ids": [t.table_id for t in point["tables"]],
            "validation": quality, "prior_refit": point["refit"],
        })
    npz = weights_dir / f"{name}.npz"
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    npz.write_bytes(buf.getvalue())
    from .model import eq1_compression_ratio

    entry = {
        "name": name, "modality": spec.modality, "variant": cfg.variant, "description": spec.description,
        "channels": cfg.in_channels, "multiple": MULTIPLE, "latent_channels": list(cfg.latents),
        "latent_strides": list(STRIDES), "levels": cfg.levels if cfg.variant == "paper" else None,
        "eq1_compression_ratio_8bit": (round(eq1_compression_ratio(cfg, 8), 2)
                                       if cfg.variant == "paper" else None),
        "encoder": {"file": f"{name}.encoder.onnx", "sha256": enc_sha.hex()},
        "decoder": {"file": f"{name}.decoder.onnx", "sha256": dec_sha.hex()},
        "params": {"file": npz.name, "sha256": hashlib.sha256(npz.read_bytes()).hexdigest()},
        "torch_weights": pt.name, "config": cfg.to_dict(),
        "parameters": {"encoder": count_params(model.encoder), "decoder": count_params(model.decoder)},
        "rates": rates, "training": meta, "output_layer_refit": out_refit,
    }
    manifest_path = weights_dir / MANIFEST
    manifest = {"format": 1, "models": []}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
    manifest["models"] = [m for m in manifest["models"] if m["name"] != name] + [entry]
    manifest["models"].sort(key=lambda m: m["name"])
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(manifest_path)
    return entry


def load_codec(name: str, weights_dir: Path = WEIGHTS_DIR) -> Codec:
    """The shipped torch model (fp16 weights, computed in fp32)."""
    return load_shipped(weights_dir / f"{name}.pt")


# --- `edgeret train codec-encoder` ------------------------------------------------------


def train(request) -> Path:
    """`edgeret train codec-encoder --data DIR --variant NAME`: train on a folder of images.

    Every PNG/JPEG/TIFF under DIR (of the variant's modality: grayscale for OCT,
    colour for fundus) is cut into patches; weights go to ``--out``.
    """
    from edgeret.errors import EdgeretError
    from edgeret.imageio import read_image

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
