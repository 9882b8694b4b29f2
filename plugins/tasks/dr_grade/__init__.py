"""dr-grade: ICDR diabetic retinopathy grade 0-4 and macular oedema, guided by image quality.

Runtime (no torch): `processing.py` + the shipped ONNX model in `weights/`;
a poor-quality capture returns "ungradable — retake" instead of a grade.
Build host: `model.py` (shared trunk, DR and quality heads) and `recipe.py`
(single- vs multi-task training; the paper's Table 4 and referable-DR figures).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.lazy import lazy
from edgeret.plugin.registrations import TaskPlugin, TensorSpec
from edgeret.runtime.task_inputs import QUALITY_LABELS

from .processing import DR_LABELS, INPUT_SIZE, postprocess, preprocess

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def task_plugin() -> TaskPlugin:
    return TaskPlugin(
        name="dr-grade",
        modality="fundus",
        description="DR grade (ICDR 0-4), macular oedema and referable, guided by image quality",
        inputs=(TensorSpec("image", ("batch", 3, INPUT_SIZE, INPUT_SIZE), "float32", (0.0, 1.0),
                           "RGB, cropped to the field of view, black outside it"),),
        outputs=(
            TensorSpec("dr_probs", ("batch", len(DR_LABELS)), "float32", (0.0, 1.0),
                       "softmax over ICDR grades 0-4"),
            TensorSpec("quality_probs", ("batch", len(QUALITY_LABELS)), "float32", (0.0, 1.0),
                       "softmax over good, usable, poor"),
            TensorSpec("dme_prob", ("batch", 1), "float32", (0.0, 1.0),
                       "probability of diabetic macular oedema (sigmoid)"),
        ),
        preprocess=preprocess,
        postprocess=postprocess,
        labels=DR_LABELS,
        image_kind="color",
        default_model=WEIGHTS_DIR / "dr_grade.onnx",
        model_factory=lazy(f"{__name__}.model", "build"),
        runtime_module=lazy(f"{__name__}.model", "Probabilities"),
        default_weights=WEIGHTS_DIR / "real-mix.pt",
        calibration=lazy("edgeret.build.data.fundus", "calibration_images"),
        train=lazy(f"{__name__}.recipe", "train"),
        evaluate=lazy(f"{__name__}.recipe", "evaluate"),
    )


@hookimpl
def edgeret_tasks() -> Iterable[TaskPlugin]:
    yield task_plugin()
