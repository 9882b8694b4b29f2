"""dr-grade pre/post-processing: pure numpy, shared by torch and every backend.

On the device a poor-quality capture gets no DR grade: the result says
"ungradable — retake" (the point of quality-guided grading).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from edgeret.registrations import TaskPlugin
from edgeret.task_inputs import POOR, QUALITY_LABELS, fundus_nchw

DR_LABELS = ("no DR", "mild NPDR", "moderate NPDR", "severe NPDR", "proliferative DR")
REFERABLE_FROM = 2  # ICDR: moderate NPDR or worse is referable
INPUT_SIZE = 320  # microaneurysms are 1.5-3 px at 512, ~1-2 px here: visible after contrast normalisation
RETAKE = "ungradable — retake"
# Local contrast normalisation (Graham's Kaggle-DR preprocessing): subtract the local
# mean colour so small red and yellow lesions stand out against the varying background.
CONTRAST_SIGMA_FRACTION = 1 / 30
CONTRAST_GAIN = 4.0


def preprocess(image: np.ndarray, task: TaskPlugin) -> dict[str, np.ndarray]:
    """FOV-cropped RGB, then 0.5 + gain * (image - local mean), zero outside the FOV."""
    feeds = fundus_nchw(image, task)
    name = task.inputs[0].name
    rgb = feeds[name][0].transpose(1, 2, 0)
    inside = rgb.max(axis=2) > 0
    local = cv2.GaussianBlur(rgb, (0, 0), rgb.shape[0] * CONTRAST_SIGMA_FRACTION)
    enhanced = np.clip(0.5 + CONTRAST_GAIN * (rgb - local), 0.0, 1.0) * inside[..., None]
    return {name: np.ascontiguousarray(enhanced.transpose(2, 0, 1)[None], dtype=np.float32)}


def postprocess(outputs: Mapping[str, np.ndarray], task: TaskPlugin) -> dict[str, Any]:
    dr = np.asarray(outputs["dr_probs"], dtype=np.float64).reshape(-1)
    quality = np.asarray(outputs["quality_probs"], dtype=np.float64).reshape(-1)
    q = int(np.argmax(quality))
    result: dict[str, Any] = {
        "quality": QUALITY_LABELS[q],
        **{f"p_quality_{n}": round(float(p), 6) for n, p in zip(QUALITY_LABELS, quality, strict=True)},
    }
    if q == POOR:
        return {**result, "result": RETAKE, "dr_grade": None, "referable": None}
    grade = int(np.argmax(dr))
    return {
        **result,
        "result": DR_LABELS[grade],
        "dr_grade": grade,
        "referable": grade >= REFERABLE_FROM,
        **{f"p_dr_{i}": round(float(p), 6) for i, p in enumerate(dr)},
    }
