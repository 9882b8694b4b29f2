"""Task-level input builders and label codes shared by the fundus tasks (pure numpy).

They turn a decoded image into the NCHW float32 tensor a task's input spec
declares, with one-line errors naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeret.errors import InputError
from edgeret.images.preprocess import preprocess_fundus
from edgeret.images.read_write import ARRAY
from edgeret.plugin.registrations import TaskPlugin

QUALITY_LABELS = ("good", "usable", "poor")
POOR = 2
# EyeQ codes 0/1/2 and names both appear in datasets.
_QUALITY_NAMES = {"good": 0, "usable": 1, "poor": 2, "reject": 2}


def fundus_nchw(image: np.ndarray, task: TaskPlugin) -> dict[str, np.ndarray]:
    """Colour fundus photo (uint8/uint16 H×W×3) -> {input: 1×3×H×W float32 in [0,1]}."""
    if image.ndim != 3 or image.shape[2] != 3:
        got = "grayscale (an OCT B-scan?)" if image.ndim == 2 else f"shape {image.shape}"
        raise InputError(ARRAY, f"{task.name} expects a colour fundus photograph, got {got}")
    spec = task.inputs[0]
    height, width = spec.shape[2:]
    rgb, _ = preprocess_fundus(image, (height, width))
    return {spec.name: np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)}


def quality_code(labels: Mapping[str, Any]) -> int:
    """3-class quality target (0 good, 1 usable, 2 poor) from any dataset layout's labels.

    The binary layout's gradable=1/0 maps to good/poor (the paper's two classes).
    Returns -1 when the dataset has no quality label (e.g. EyePACS).
    """
    if "quality" in labels:
        value = labels["quality"]
        return _QUALITY_NAMES[value] if isinstance(value, str) else int(value)
    if "gradable" in labels:
        return 0 if int(labels["gradable"]) == 1 else POOR
    return -1
