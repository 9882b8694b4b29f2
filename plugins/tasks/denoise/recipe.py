"""denoise training (build host only; imports torch).

Data: every PNG/JPEG/TIFF under `--data` (clean images; `edgeret data synth`
phantoms in TRAINING.md) plus, for the colour task, the natural photographs
scikit-image ships (never `retina`, the real fundus test photograph, nor
`microaneurysms`, a crop of it). Random 48×48 patches (patches of the black
surround outside the fundus are mostly skipped) with flips and 90° turns.

Noise, drawn per patch and per step: colour -- Gaussian, sigma = 25/255 for half
of the patches (the paper's setting) and uniform in 5..50/255 for the other
half (blind, for real use); clipped to [0, 1] and rounded to 8-bit levels like
a camera's output. OCT -- multiplicative speckle (Gamma, 2..8 looks) on the
log-compressed display (see processing.add_speckle).

Loss: DnCNN -- the paper's green-weighted MSE (Eq. 1: red 1, green 3, blue 2);
the autoencoder -- plain MSE, as in the paper; OCT -- MSE.

Real OCT (`--data` in the layout `real_pairs.py` reads: per subject noisy and
neighbouring B-scans, optionally a registered average): `train_real_oct` --
real speckle, no synthetic noise. 64×64 crops of a noisy scan paired with the
same crop of the clean average (supervised) or of another noisy scan of the
subject (Noise2Noise), horizontal flips only (OCT speckle and layers are not
rotation invariant), MSE on the 8-bit display values. Settings in `REAL_OCT`
were chosen by subject-level cross-validation (TRAINING.md). Phantoms with
synthetic speckle can be mixed in (`phantom_dir`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from edgeret.build.training.loop import FitConfig, fit
from edgeret.build.training.natural import natural_images as load_natural
from edgeret.build.training.shipping import ship
from edgeret.errors import EdgeretError
from edgeret.images.read_write import read_folder_8bit
from edgeret.plugin.registrations import TaskPlugin, TrainRequest

from .model import OCT_ARCH, VARIANTS, build, build_oct
from .processing import GREEN_WEIGHTS

PATCH = 48
NATURAL = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "rocket",
           "colorwheel", "brick", "camera", "clock", "coins", "grass", "gravel", "moon", "page", "text")
SIGMA_FIXED, SIGMA_BLIND = 25.0, (5.0, 50.0)
LOOKS = (2.0, 8.0)


class RuntimeDenoiser(torch.nn.Module):
    """What ships: noisy -> (denoised, removed noise)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        clean = self.net(x)
        return clean, x - clean


def natural_images(gray: bool) -> list[np.ndarray]:
    return load_natural(NATURAL, gray)


def folder_images(data_dir: Path, gray: bool) -> list[np.ndarray]:
    return [img for _, img in read_folder_8bit(data_dir, gray=gray)]


def sample_patches(images: list[np.ndarray], n: int, patch: int, seed: int,
                   weights: list[float] | None = None) -> np.ndarray:
    """n random patch×patch crops (N×C×P×P uint8); crops that are mostly black are re-drawn."""
    rng = np.random.default_rng(seed)
    usable = [im for im in images if min(im.shape[:2]) >= patch]
    p = np.asarray(weights if weights else [1.0] * len(usable), np.float64)
    p = p / p.sum()
    out = []
    while len(out) < n:
        img = usable[int(rng.choice(len(usable), p=p))]
        y = int(rng.integers(0, img.shape[0] - patch + 1))
        x = int(rng.integers(0, img.shape[1] - patch + 1))
        crop = img[y:y + patch, x:x + patch]
        if (crop.reshape(patch, patch, -1).mean(axis=2) < 12).mean() > 0.5 and rng.random() < 0.9:
            continue
        out.append(crop if crop.ndim == 3 else crop[..., None])
    return np.ascontiguousarray(np.stack(out).transpose(0, 3, 1, 2))


def _geometric(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    k = int(torch.randint(0, 4, (1,), generator=generator))
    batch = torch.rot90(batch, k, dims=(2, 3))
    if bool(torch.rand(1, generator=generator) < 0.5):
        batch = batch.flip(3)
    return batch


def gaussian_augment(batch, generator):
    clean = _geometric(batch[0], generator).float() / 255.0
    n = len(clean)
    blind = torch.rand(n, generator=generator) * (SIGMA_BLIND[1] - SIGMA_BLIND[0]) + SIGMA_BLIND[0]
    sigma = torch.where(torch.rand(n, generator=generator) < 0.5, torch.full((n,), SIGMA_FIXED), blind)
    noise = torch.randn(clean.shape, generator=generator) * (sigma / 255.0)[:, None, None, None]
    noisy = torch.round((clean + noise).clamp(0, 1) * 255.0) / 255.0
    return [noisy, clean]


def speckle_augment(batch, generator):
    from .processing import OCT_RANGE_DB

    clean = _geometric(batch[0], generator).float() / 255.0
    n = len(clean)
    looks = torch.rand(n, generator=generator) * (LOOKS[1] - LOOKS[0]) + LOOKS[0]
    # Gamma(L, 1/L) drawn by numpy, seeded from the loop's generator (so a resumed run matches)
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    shape = looks.numpy()[:, None, None, None]
    gain = torch.from_numpy(rng.gamma(np.broadcast_to(shape, clean.shape), 1.0 / np.broadcast_to(
        shape, clean.shape)).astype(np.float32))
    noisy = (clean + 10.0 * torch.log10(gain.clamp_min(1e-6)) / OCT_RANGE_DB).clamp(0, 1)
    return [torch.round(noisy * 255.0) / 255.0, clean]


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weights=GREEN_WEIGHTS) -> torch.Tensor:
    w = torch.tensor(weights, dtype=pred.dtype).view(1, -1, 1, 1)
    return (((pred - target) ** 2) * w).mean() * (len(weights) / sum(weights))


DEFAULTS = {  # variant: (epochs, patches, batch)
    "dncnn": (32, 5120, 32),
    "autoencoder": (2, 3072, 32),
    "dncnn-oct": (2, 3072, 32),
}


# real OCT pairs: chosen by 4-fold subject-level cross-validation (tools/bench_denoise_oct_real.py cv)
REAL_OCT = {"arch": OCT_ARCH, "epochs": 3, "patches": 4096, "batch": 16, "patch": 64,
            "supervised": 0.75, "lr": 1e-3, "phantom_share": 0.25}


def pair_augment(batch, generator):
    """N×2×P×P uint8 (input, target) -> [input, target] float in [0, 1]; one horizontal flip per batch."""
    pair = batch[0]
    if bool(torch.rand(1, generator=generator) < 0.5):
        pair = pair.flip(3)
    pair = pair.float() / 255.0
    return [pair[:, :1], pair[:, 1:]]


def phantom_pairs(phantom_dir: Path, n: int, patch: int, seed: int) -> np.ndarray:
    """n (speckled phantom, clean phantom) crops, N×2×P×P uint8 (speckle: 2..8 looks)."""
    from .processing import add_speckle

    crops = sample_patches(folder_images(phantom_dir, gray=True), n, patch, seed)
    rng = np.random.default_rng(seed + 1)
    noisy = [add_speckle(c[0] / 255.0, float(rng.uniform(*LOOKS)), rng) for c in crops]
    return np.concatenate([np.round(np.stack(noisy)[:, None] * 255.0).astype(np.uint8), crops], axis=1)


def train_real_oct(task: TaskPlugin, request: TrainRequest, onnx_name: str | None, *,
                   subjects: list[str] | None = None, phantom_dir: Path | None = None,
                   settings: dict | None = None, probe=None, probe_every: int = 0,
                   save: bool = True) -> torch.nn.Module:
    """Train denoise-oct on real pairs (module doc). `subjects`: train on these only (cross-validation);
    `probe(step, net)` is called (eval mode, no grad) every `probe_every` steps and at the end."""
    from .real_pairs import read_real_pairs, sample_pairs

    cfg = {**REAL_OCT, **(settings or {})}
    if request.epochs:
        cfg["epochs"] = request.epochs
    if request.batch_size:
        cfg["batch"] = request.batch_size
    data = read_real_pairs(request.data_dir, subjects)
    n_phantom = int(round(cfg["patches"] * cfg["phantom_share"])) if phantom_dir else 0  # on top
    inputs, targets, clean = sample_pairs(data, cfg["patches"], cfg["patch"], request.seed, cfg["supervised"])
    pairs = np.concatenate([inputs, targets], axis=1)
    if n_phantom:
        pairs = np.concatenate([pairs, phantom_pairs(phantom_dir, n_phantom, cfg["patch"], request.seed)])
    torch.manual_seed(request.seed)
    net = build_oct(cfg["arch"])
    step = [0]

    def run_probe():
        net.eval()
        with torch.no_grad():
            probe(step[0], net)
        net.train()

    def loss_fn(model, b):
        if probe and probe_every and step[0] and step[0] % probe_every == 0:
            run_probe()
        step[0] += 1
        noisy, target = b
        return torch.mean((model(noisy) - target) ** 2)

    config = FitConfig(epochs=cfg["epochs"], batch_size=cfg["batch"], lr=cfg["lr"], seed=request.seed,
                       threads=request.threads, progress=request.progress)
    start = time.perf_counter()
    fit(net, [torch.from_numpy(pairs)], loss_fn, config,
        request.out_dir / "checkpoints" / "dncnn-oct-real.ckpt", label="dncnn-oct (real)",
        augment=pair_augment)
    seconds = time.perf_counter() - start
    if probe:
        run_probe()
    net.eval()
    if not save:
        return net
    names = [s.name for s in data]
    meta = {"variant": "dncnn-oct", "model": VARIANTS["dncnn-oct"][0], "arch": cfg["arch"],
            "training": "real OCT pairs: supervised (noisy -> registered average) + Noise2Noise "
                        "(noisy <-> neighbour, neighbour <-> neighbour)",
            "data": str(request.data_dir), "subjects": names,
            "scans": {s.name: {"noisy": len(s.noisy), "clean": s.clean is not None} for s in data},
            "phantoms": str(phantom_dir) if phantom_dir else None,
            "epochs": cfg["epochs"], "batch_size": cfg["batch"], "patches": cfg["patches"],
            "patch": cfg["patch"], "supervised_share": cfg["supervised"],
            "supervised_patches": int(clean.sum()), "noise2noise_patches": int((~clean).sum()),
            "phantom_patches": n_phantom, "lr": cfg["lr"], "augment": "horizontal flips",
            "loss": "MSE on the 8-bit display values / 255", "seed": request.seed,
            "threads": request.threads, "params": sum(p.numel() for p in net.parameters()),
            "settings_chosen_by": "4-fold subject-level cross-validation, TRAINING.md",
            "train_seconds_this_run": round(seconds, 1)}
    ship(net, net, task, request.out_dir / "dncnn-oct.pt", None, meta)
    if onnx_name:
        export_image_model(RuntimeDenoiser(net), task, request.out_dir / onnx_name,
                           {**meta, "weights": "dncnn-oct.pt"}, channels=1)
    print(f"dncnn-oct (real pairs, {len(names)} subjects): {cfg['epochs']} epochs x {cfg['patches']} "
          f"patches in {seconds:.0f} s")
    return net


def train_variant(task: TaskPlugin, name: str, request: TrainRequest, onnx_name: str | None) -> Path:
    oct_ = name == "dncnn-oct"
    if oct_:
        from .real_pairs import is_real_pairs_layout

        if is_real_pairs_layout(request.data_dir):
            train_real_oct(task, request, onnx_name)
            return request.out_dir
    images = folder_images(request.data_dir, gray=oct_)
    n_folder = len(images)
    if not oct_:
        images += natural_images(gray=False)
    epochs, count, batch = DEFAULTS[name]
    epochs, batch = request.epochs or epochs, request.batch_size or batch
    # phantoms carry 3/4 of the patches, the natural photographs 1/4
    weights = [3.0 / n_folder] * n_folder + [1.0 / max(len(images) - n_folder, 1)] * (len(images) - n_folder)
    patches = sample_patches(images, count, PATCH, request.seed, weights)
    torch.manual_seed(request.seed)
    net = build(name)
    loss_of = (lambda p, t: torch.mean((p - t) ** 2)) if name != "dncnn" else weighted_mse

    def loss_fn(model, b):
        noisy, clean = b
        return loss_of(model(noisy), clean)

    config = FitConfig(epochs=epochs, batch_size=batch, seed=request.seed, threads=request.threads,
                       progress=request.progress)
    start = time.perf_counter()
    fit(net, [torch.from_numpy(patches)], loss_fn, config,
        request.out_dir / "checkpoints" / f"{name}.ckpt", label=name,
        augment=speckle_augment if oct_ else gaussian_augment)
    seconds = time.perf_counter() - start
    meta = {"variant": name, "model": VARIANTS[name][0], "epochs": epochs, "batch_size": batch,
            "patches": count, "patch": PATCH, "seed": request.seed, "threads": request.threads,
            "data": str(request.data_dir), "folder_images": n_folder,
            "natural_images": len(images) - n_folder,
            "noise": ("speckle, Gamma looks 2..8 on a 36 dB log display" if oct_ else
                      "Gaussian sigma 25/255 (half) or U(5, 50)/255 (half), clipped, 8-bit rounded"),
            "loss": "green-weighted MSE (1, 3, 2)" if name == "dncnn" else "MSE",
            "params": sum(p.numel() for p in net.parameters()),
            "train_seconds_this_run": round(seconds, 1)}
    ship(net, net, task, request.out_dir / f"{name}.pt", None, meta)
    if onnx_name:
        export_image_model(RuntimeDenoiser(net), task, request.out_dir / onnx_name,
                           {**meta, "weights": f"{name}.pt"}, channels=net_channels(net))
    print(f"{name}: {epochs} epochs x {count} patches in {seconds:.0f} s")
    return request.out_dir


def train(request: TrainRequest, task: TaskPlugin, variants: dict[str, str | None]) -> Path:
    """`variants`: name -> ONNX file name (None: weights only)."""
    if request.variant and request.variant not in variants:
        raise EdgeretError(f"unknown variant '{request.variant}'; known: {', '.join(variants)}")
    for name in [request.variant] if request.variant else list(variants):
        train_variant(task, name, request, variants[name])
    return request.out_dir


def net_channels(net: torch.nn.Module) -> int:
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    unshuffle = getattr(getattr(net, "config", None), "unshuffle", 1)
    return first.in_channels // unshuffle ** 2


def export_image_model(runtime_model: torch.nn.Module, task: TaskPlugin, onnx_path: Path,
                       meta: dict, channels: int, example_hw: tuple[int, int] = (64, 64)) -> Path:
    """ONNX opset 17 with dynamic batch, height and width (fully convolutional models).

    `edgeret_exporters.onnx_exporter.export_onnx` makes only the batch axis dynamic;
    image-to-image models must take any size, so this exports with the same
    TorchScript exporter and settings plus dynamic spatial axes.
    """
    import io

    import onnx

    from edgeret_exporters.onnx_exporter import OPSET

    names_in = [s.name for s in task.inputs]
    names_out = [s.name for s in task.outputs]
    axes = {n: {0: "batch", 2: "height", 3: "width"} for n in names_in}
    axes.update({n: {0: "batch", 2: "out_height", 3: "out_width"} for n in names_out})
    example = torch.rand(1, channels, *example_hw)
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(runtime_model.eval(), (example,), buffer, input_names=names_in,
                          output_names=names_out, dynamic_axes=axes, opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in {"edgeret.task": task.name, **{f"edgeret.{k}": v for k, v in meta.items()}}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.checker.check_model(proto)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_path.with_suffix(".onnx.tmp")
    onnx.save(proto, tmp)
    tmp.replace(onnx_path)
    return onnx_path


def load_variant(name: str, models_dir: Path) -> torch.nn.Module:
    net = build(name)
    net.load_state_dict(torch.load(models_dir / f"{name}.pt", weights_only=True))
    return net.eval()
