"""sr: real-time super-resolution ×2 / ×4 (LapSRN-edge, Charbonnier loss).

A Laplacian-pyramid network (progressive ×2 levels, residual learning,
learned sub-pixel up-sampling initialised to bicubic) small enough for
512×512 -> 1024×1024 in real time on a two-core CPU: ×2 has 5.4 k parameters.
ESPCN is the learned baseline, bicubic the classical one.

Runtime (no torch): `processing.py` + `weights/sr_x2.onnx` (the default) and
`weights/sr_x4.onnx` (dynamic height and width; large images go through
`edgeret.images.tiling`). The models output sub-pixel planes; `processing` does the
final pixel shuffle. Build host: `model.py`, `recipe.py`, `evaluation.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from edgeret.metrics import psnr
from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.lazy import lazy
from edgeret.plugin.registrations import EvalRequest, TaskPlugin, TensorSpec, TrainRequest

from .processing import SCALES, postprocess, preprocess

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MODEL_FILES = {2: "sr_x2.onnx", 4: "sr_x4.onnx"}
BASELINE_FILES = {2: "espcn_x2.onnx", 4: "espcn_x4.onnx"}


def model_path(scale: int, models_dir: Path | None = None, baseline: bool = False) -> Path:
    if scale not in SCALES:
        from edgeret.errors import EdgeretError

        raise EdgeretError(f"sr supports --scale {' or '.join(map(str, SCALES))}, not {scale}")
    return (models_dir or WEIGHTS_DIR) / (BASELINE_FILES if baseline else MODEL_FILES)[scale]


def _train(request: TrainRequest) -> Path:
    from .recipe import train

    return train(request, task_plugin())


def _evaluate(request: EvalRequest) -> dict:
    from .evaluation import evaluate

    return evaluate(request, task_plugin())


def _factory():
    from .model import build

    return build("lapsrn-x2")


def _calibration(n: int, seed: int):
    from edgeret.build.data.fundus import calibration_images

    return calibration_images(n, seed)


def _metric(y_true, y_pred) -> float:
    return psnr(y_true, y_pred)


def task_plugin() -> TaskPlugin:
    return TaskPlugin(
        name="sr",
        modality="any",
        description="super-resolution x2 (default model) or x4 (sr_x4.onnx), LapSRN-edge; writes an image",
        inputs=(TensorSpec("image", ("batch", 3, "height", "width"), "float32", (0.0, 1.0),
                           "low-resolution RGB in [0, 1] (8-bit /255, 16-bit /65535)"),),
        outputs=(TensorSpec("planes", ("batch", 12, "out_height", "out_width"), "float32", (0.0, 1.0),
                            "sub-pixel planes of the result at half the output size (x2: the input "
                            "size); plane 4c+2dy+dx is output pixel (2y+dy, 2x+dx) of colour c "
                            "(= ONNX DepthToSpace mode CRD, blocksize 2)"),),
        preprocess=preprocess,
        postprocess=postprocess,
        image_kind=None,
        default_model=WEIGHTS_DIR / MODEL_FILES[2],
        model_factory=_factory,
        runtime_module=lazy(f"{__name__}.model", "runtime"),
        default_weights=WEIGHTS_DIR / "lapsrn-x2.pt",
        metrics={"psnr": _metric},
        calibration=_calibration,
        train=_train,
        evaluate=_evaluate,
    )


@hookimpl
def edgeret_tasks() -> Iterable[TaskPlugin]:
    yield task_plugin()
