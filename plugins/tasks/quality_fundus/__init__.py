"""quality-fundus: is this colour fundus photograph good, usable or poor?

Runtime (no torch): `processing.py` + the shipped ONNX model in `weights/`.
Build host: `model.py` (the network) and `recipe.py` (training with weighted
softmax + center loss, and the paper's evaluation tables).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.lazy import lazy
from edgeret.plugin.registrations import TaskPlugin, TensorSpec

from .processing import INPUT_SIZE, LABELS, grades, postprocess, preprocess

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def task_plugin() -> TaskPlugin:
    return TaskPlugin(
        name="quality-fundus",
        modality="fundus",
        description="Fundus image quality: good / usable / poor, and gradable or not",
        inputs=(TensorSpec("image", ("batch", 3, INPUT_SIZE, INPUT_SIZE), "float32", (0.0, 1.0),
                           "RGB, cropped to the field of view, black outside it"),),
        outputs=(TensorSpec("quality_probs", ("batch", len(LABELS)), "float32", (0.0, 1.0),
                            "softmax over good, usable, poor"),),
        preprocess=preprocess,
        postprocess=postprocess,
        decide=grades,  # poor from p(poor) >= POOR_THRESHOLD, the shipped operating point
        labels=LABELS,
        image_kind="color",
        default_model=WEIGHTS_DIR / "quality_fundus.onnx",
        model_factory=lazy(f"{__name__}.model", "build"),
        runtime_module=lazy(f"{__name__}.model", "ProbabilitiesOnly"),
        default_weights=WEIGHTS_DIR / "real-mix.pt",
        calibration=lazy("edgeret.build.data.fundus", "calibration_images"),
        train=lazy(f"{__name__}.recipe", "train"),
        evaluate=lazy(f"{__name__}.recipe", "evaluate"),
    )


@hookimpl
def edgeret_tasks() -> Iterable[TaskPlugin]:
    yield task_plugin()
