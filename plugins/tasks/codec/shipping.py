"""Export of a trained codec (build host only): fp16 weights, ONNX graphs, rate points
with refitted priors and integer tables, the manifest entry (see ``TRAINING.md``)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch

from edgeret.codec.ert.entropy import IntegerTable
from edgeret.metrics import psnr

from . import WEIGHTS_DIR
from .losses import distortion
from .model import (
    STRIDES,
    Codec,
    DecoderGraph,
    EncoderGraph,
    count_params,
    load_shipped,
)
from .processing import MULTIPLE, dequantize, ms_ssim, quantize, to_model_input
from .specs import MANIFEST, MAX_RANGE, SPECS, VALIDATION_SEED, phantom


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
    k = d6.kernel_size[0]
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
            hp = model.decoder.output_input(h)[0]  # padded as the layer itself reads them
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
    """The model hash written in every header (see ``edgeret.codec.session.rate_digest``)."""
    from edgeret.codec.session import rate_digest as digest

    return digest(enc_sha, dec_sha, point["gains"], point["inv_gains"], point["tables"])


@torch.no_grad()
def measure(model: Codec, point: dict, r: int, images: list[np.ndarray], bit_depth: int = 8) -> dict:
    """Real bytes (entropy-coded with the tables) and quality on a few images, torch transform."""
    from edgeret.codec.ert.entropy import encode_symbols

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


def points_to_extrapolate(spec, cfg) -> int:
    """How many rate points the export adds below the trained ones: the spec's total
    (trained + extrapolated) minus what the model already has, so a model that learned a
    lower point (``finetune --train-lowest``) keeps the same number of points and ids."""
    wanted = len(spec.config.lambdas) + len(spec.extrapolate_low)
    return max(0, min(len(spec.extrapolate_low), wanted - len(cfg.lambdas)))


def export_codec(model: Codec, name: str, meta: dict, weights_dir: Path = WEIGHTS_DIR) -> dict:
    """Write weights, ONNX graphs, tables and the manifest entry for one trained model."""
    spec = SPECS[name]
    if not model.cfg.extrapolated:
        for steps in spec.extrapolate_low[:points_to_extrapolate(spec, model.cfg)]:
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
        "default_rate": f"{name}-{spec.default_rate}" if spec.default_rate else None,
        "half_scale_through": f"{name}-{spec.half_scale_through}" if spec.half_scale_through else None,
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
