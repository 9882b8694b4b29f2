"""quality-oct: is this OCT B-scan good, usable or poor, and why?

DSFF-Net (deep and shallow features fusion network): a residual deep stream and
a shallow down-sampling + CBAM stream, fused; four sigmoid sub-labels (noise,
deficiency, blur, slight deficiency) and a three-way softmax grade.

Runtime (no torch): `processing.py` + the shipped ONNX model in `weights/`.
Build host: `model.py` (the network and its ablations) and `recipe.py` (training
with the paper's 0.3/0.3/0.4 loss, and the paper's Tables 2 and 3).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from edgeret.metrics import accuracy
from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.lazy import lazy
from edgeret.plugin.registrations import TaskPlugin, TensorSpec

from .processing import INPUT_SIZE, LABELS, SUBLABELS, grades, postprocess, preprocess

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def task_plugin() -> TaskPlugin:
    height, width = INPUT_SIZE
    return TaskPlugin(
        name="quality-oct",
        modality="oct",
        description="OCT B-scan quality: good / usable / poor, with noise, deficiency, blur, "
                    "slight-deficiency sub-labels",
        inputs=(TensorSpec("bscan", ("batch", 1, height, width), "float32", (0.0, 1.0),
                           "grayscale B-scan fitted to the width (640x1024 -> 160x256), "
                           "zero-padded below/beside"),),
        outputs=(TensorSpec("grade_probs", ("batch", len(LABELS)), "float32", (0.0, 1.0),
                            "softmax over good, usable, poor"),
                 TensorSpec("sublabel_probs", ("batch", len(SUBLABELS)), "float32", (0.0, 1.0),
                            "sigmoid per sub-label: noise, deficiency, blur, slight_deficiency")),
        preprocess=preprocess,
        postprocess=postprocess,
        decide=grades,  # poor from p(poor) >= POOR_THRESHOLD, the shipped operating point
        labels=LABELS,
        metrics={"accuracy": accuracy},
        image_kind="gray",
        default_model=WEIGHTS_DIR / "quality_oct.onnx",
        model_factory=lazy(f"{__name__}.model", "build"),
        runtime_module=lazy(f"{__name__}.model", "RuntimeOutputs"),
        default_weights=WEIGHTS_DIR / "real-mix.pt",
        calibration=lazy("edgeret.build.data.oct", "calibration_bscans"),
        train=lazy(f"{__name__}.recipe", "train"),
        evaluate=lazy(f"{__name__}.recipe", "evaluate"),
    )


@hookimpl
def edgeret_tasks() -> Iterable[TaskPlugin]:
    yield task_plugin()
