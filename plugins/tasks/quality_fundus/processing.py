"""quality-fundus pre/post-processing: pure numpy, shared by torch and every backend."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeret.plugin.registrations import TaskPlugin
from edgeret.runtime.task_inputs import POOR, QUALITY_LABELS, fundus_nchw, quality_code

LABELS = QUALITY_LABELS
INPUT_SIZE = 256
preprocess = fundus_nchw
__all__ = ["INPUT_SIZE", "LABELS", "POOR", "POOR_THRESHOLD", "grades", "postprocess", "preprocess",
           "quality_code"]

# The shipped weights' operating point: a capture is poor when p(poor) >= this, otherwise
# the likelier of good and usable. Chosen by patient-level cross-validation on real photographs
# by a rule fixed beforehand (real_recipe.py, benchmarks/quality-fundus-real-cv.md); None = argmax.
POOR_THRESHOLD: float | None = 0.7


def grades(probs: np.ndarray, poor_threshold: float | None = POOR_THRESHOLD) -> np.ndarray:
    """(N, 3) probabilities -> (N,) grade indices; argmax when ``poor_threshold`` is None."""
    probs = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    if poor_threshold is None:
        return probs.argmax(axis=1)
    gradable = probs[:, :POOR].argmax(axis=1)
    return np.where(probs[:, POOR] >= poor_threshold, POOR, gradable)


def postprocess(outputs: Mapping[str, np.ndarray], task: TaskPlugin) -> dict[str, Any]:
    """Probabilities -> grade, the paper's binary gradable decision, and the scores."""
    probs = np.asarray(outputs["quality_probs"], dtype=np.float64).reshape(-1)
    grade = int(grades(probs)[0])
    return {
        "quality": LABELS[grade],
        "gradable": grade != POOR,
        **{f"p_{name}": round(float(p), 6) for name, p in zip(LABELS, probs, strict=True)},
        "poor_threshold": POOR_THRESHOLD,  # so a programme can set its own operating point on p_poor
    }
