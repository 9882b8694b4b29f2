"""denoise and denoise-oct: remove noise without losing thin vessels.

The denoising paper's DnCNN (residual learning: the network predicts the noise,
which is subtracted), made light for the edge (10 layers x 32 filters, ~76 k
parameters instead of 17 x 64 and ~556 k), trained with the paper's
green-weighted loss; the paper's skip-connected autoencoder as the baseline.
`denoise-oct` is the same design for grayscale OCT B-scans, trained on real
SD-OCT speckle (noisy / registered-average pairs and Noise2Noise pairs of
neighbouring B-scans, `real_pairs.py`), with a 2×2 pixel-unshuffled body and a
Gaussian-blur base (model.py).

Runtime (no torch): `processing.py` + the ONNX models in `weights/` (dynamic
height and width; large images go through `edgeret.images.tiling` in overlapping
tiles). Build host: `model.py`, `recipe.py` (training), `evaluation.py`
(`edgeret eval`: PSNR/SSIM vs the autoencoder, OpenCV NLM and BM3D).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from edgeret.metrics import psnr
from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.lazy import lazy
from edgeret.plugin.registrations import EvalRequest, TaskPlugin, TensorSpec, TrainRequest

from .processing import postprocess, preprocess

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
COLOR_VARIANTS = {"dncnn": "denoise.onnx", "autoencoder": "autoencoder.onnx"}
OCT_VARIANTS = {"dncnn-oct": "denoise_oct.onnx"}


def _specs(channels: int, what: str) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    shape = ("batch", channels, "height", "width")
    return ((TensorSpec("noisy", shape, "float32", (0.0, 1.0),
                        f"{what} in [0, 1] (8-bit /255, 16-bit /65535), any height and width"),),
            (TensorSpec("denoised", shape, "float32", (0.0, 1.0), "the denoised image (clip to [0, 1])"),
             TensorSpec("noise", shape, "float32", None, "the removed noise: noisy - denoised")))


def _calibration(n: int, seed: int):
    from edgeret.build.data.fundus import calibration_images

    return calibration_images(n, seed)


def _oct_calibration(n: int, seed: int):
    from edgeret.build.data.oct import calibration_bscans

    return calibration_bscans(n, seed)


def _metric(y_true, y_pred) -> float:
    return psnr(y_true, y_pred)


def _make(name: str, oct_: bool) -> TaskPlugin:
    variants = OCT_VARIANTS if oct_ else COLOR_VARIANTS
    default = next(iter(variants))

    def train(request: TrainRequest) -> Path:
        from .recipe import train as run

        return run(request, task, variants)

    def evaluate(request: EvalRequest) -> dict:
        from .evaluation import evaluate as run

        return run(request, task, list(variants))

    def factory():
        from .model import build

        return build(default)

    inputs, outputs = _specs(1 if oct_ else 3, "grayscale OCT B-scan" if oct_ else "RGB image")
    task = TaskPlugin(
        name=name,
        modality="oct" if oct_ else "fundus",
        description=("OCT B-scan speckle reduction (DnCNN-edge, 1 channel, real SD-OCT)" if oct_ else
                     "colour fundus denoising (DnCNN-edge, green-weighted loss); writes an image"),
        inputs=inputs,
        outputs=outputs,
        preprocess=preprocess,
        postprocess=postprocess,
        image_kind=None,
        default_model=WEIGHTS_DIR / variants[default],
        model_factory=factory,
        runtime_module=lazy(f"{__name__}.recipe", "RuntimeDenoiser"),
        default_weights=WEIGHTS_DIR / f"{default}.pt",
        metrics={"psnr": _metric},
        calibration=_oct_calibration if oct_ else _calibration,
        train=train,
        evaluate=evaluate,
    )
    return task


def task_plugins() -> tuple[TaskPlugin, TaskPlugin]:
    return _make("denoise", oct_=False), _make("denoise-oct", oct_=True)


@hookimpl
def edgeret_tasks() -> Iterable[TaskPlugin]:
    yield from task_plugins()
