"""quality-fundus pre/post-processing: pure numpy, shared by torch and every backend."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeret.errors import InputError
from edgeret.imageio import ARRAY
from edgeret.preprocess import preprocess_fundus
from edgeret.registrations import TaskPlugin

LABELS = ("good", "usable", "poor")
POOR = LABELS.index("poor")
INPUT_SIZE = 256
# EyeQ codes 0/1/2 and names both appear in datasets; the binary layout's
# gradable=1/0 maps to good/poor (the paper's two classes).
NAME_TO_CODE = {"good": 0, "usable": 1, "poor": 2, "reject": 2}


def preprocess(image: np.ndarray, task: TaskPlugin) -> dict[str, np.ndarray]:
    """Colour fundus photo (uint8/uint16 H×W×3) -> {"image": 1×3×S×S float32 in [0,1]}."""
    if image.ndim != 3 or image.shape[2] != 3:
        got = "grayscale (an OCT B-scan?)" if image.ndim == 2 else f"shape {image.shape}"
        raise InputError(ARRAY, f"{task.name} expects a colour fundus photograph, got {got}")
    height, width = task.inputs[0].shape[2:]
    rgb, _ = preprocess_fundus(image, (height, width))
    return {"image": np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)}


def postprocess(outputs: Mapping[str, np.ndarray], task: TaskPlugin) -> dict[str, Any]:
    """Probabilities -> grade, the paper's binary gradable decision, and the scores."""
    probs = np.asarray(outputs["quality_probs"], dtype=np.float64).reshape(-1)
    grade = int(np.argmax(probs))
    return {
        "quality": LABELS[grade],
        "gradable": grade != POOR,
        **{f"p_{name}": round(float(p), 6) for name, p in zip(LABELS, probs, strict=True)},
    }


def quality_code(labels: Mapping[str, Any]) -> int:
    """The 3-class target from any supported dataset layout's labels."""
    if "quality" in labels:
        value = labels["quality"]
        return NAME_TO_CODE[value] if isinstance(value, str) else int(value)
    if "gradable" in labels:
        return 0 if int(labels["gradable"]) == 1 else POOR
    raise KeyError("no 'quality' or 'gradable' label")
