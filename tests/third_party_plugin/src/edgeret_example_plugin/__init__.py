"""An example third-party edgeret plugin: flags under- and over-exposed captures.

Everything a task needs is here: its input spec, numpy pre/post-processing
and a tiny ONNX model (made by ../../make_model.py).
"""

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeret import hookimpl
from edgeret.plugin.registrations import TaskPlugin, TensorSpec

SIZE = 64


def preprocess(image: np.ndarray, task: TaskPlugin) -> dict[str, np.ndarray]:
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray.astype(np.float32) / scale, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return {"image": small[None, None].astype(np.float32)}


def postprocess(outputs: Mapping[str, np.ndarray], task: TaskPlugin) -> dict[str, Any]:
    mean = float(outputs["mean"].reshape(-1)[0])
    verdict = "under" if mean < 0.15 else "over" if mean > 0.85 else "ok"
    return {"mean_intensity": round(mean, 6), "exposure": verdict}


@hookimpl
def edgeret_tasks() -> Iterable[TaskPlugin]:
    yield TaskPlugin(
        name="exposure-check",
        modality="any",
        description="Mean intensity of the capture; flags under/over-exposure",
        inputs=(TensorSpec("image", (1, 1, SIZE, SIZE)),),
        outputs=(TensorSpec("mean", (1, 1)),),
        preprocess=preprocess,
        postprocess=postprocess,
        labels=("under", "ok", "over"),
        default_model=Path(__file__).with_name("exposure.onnx"),
    )
