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
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from edgeret.errors import EdgeretError
from edgeret.imageio import read_folder_8bit
from edgeret.registrations import TaskPlugin, TrainRequest
from edgeret.training.loop import FitConfig, fit
from edgeret.training.natural import natural_images as load_natural
from edgeret.training.shipping import ship

from .model import VARIANTS, build
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


def train_variant(task: TaskPlugin, name: str, request: TrainRequest, onnx_name: str | None) -> Path:
    oct_ = name == "dncnn-oct"
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
