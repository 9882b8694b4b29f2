"""quality-fundus pre/post-processing: pure numpy, shared by torch and every backend."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeret.registrations import TaskPlugin
from edgeret.task_inputs import POOR, QUALITY_LABELS, fundus_nchw, quality_code

LABELS = QUALITY_LABELS
INPUT_SIZE = 256
preprocess = fundus_nchw
__all__ = ["INPUT_SIZE", "LABELS", "POOR", "postprocess", "preprocess", "quality_code"]


def postprocess(outputs: Mapping[str, np.ndarray], task: TaskPlugin) -> dict[str, Any]:
    """Probabilities -> grade, the paper's binary gradable decision, and the scores."""
    probs = np.asarray(outputs["quality_probs"], dtype=np.float64).reshape(-1)
    grade = int(np.argmax(probs))
    return {
        "quality": LABELS[grade],
        "gradable": grade != POOR,
        **{f"p_{name}": round(float(p), 6) for name, p in zip(LABELS, probs, strict=True)},
    }
