"""dr-grade pre/post-processing: pure numpy, shared by torch and every backend.

On the device a poor-quality capture gets no DR grade: the result says
"ungradable — retake" (the point of quality-guided grading).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from edgeret.plugin.registrations import TaskPlugin
from edgeret.runtime.task_inputs import POOR, QUALITY_LABELS, fundus_nchw

DR_LABELS = ("no DR", "mild NPDR", "moderate NPDR", "severe NPDR", "proliferative DR")
REFERABLE_FROM = 2  # ICDR: moderate NPDR or worse is referable
INPUT_SIZE = 320  # microaneurysms are 1.5-3 px at 512, ~1-2 px here: visible after contrast normalisation
RETAKE = "ungradable — retake"
# The shipped weights' operating points, chosen by patient-level cross-validation on real
# photographs (TRAINING.md): retake when p(poor) >= POOR_THRESHOLD; referable when
# p(referable) >= REFERABLE_THRESHOLD. None: argmax quality, and grade >= 2 or p(DME) >= 0.5.
POOR_THRESHOLD: float | None = 0.55
REFERABLE_THRESHOLD: float | None = 0.64
# Local contrast normalisation (Graham's Kaggle-DR preprocessing): subtract the local
# mean colour so small red and yellow lesions stand out against the varying background.
CONTRAST_SIGMA_FRACTION = 1 / 30
CONTRAST_GAIN = 4.0


def enhance(rgb: np.ndarray) -> np.ndarray:
    """FOV crop (H x W x 3 float in [0, 1], black outside) -> 0.5 + gain * (image - local mean)."""
    inside = rgb.max(axis=2) > 0
    local = cv2.GaussianBlur(rgb, (0, 0), rgb.shape[0] * CONTRAST_SIGMA_FRACTION)
    return np.clip(0.5 + CONTRAST_GAIN * (rgb - local), 0.0, 1.0) * inside[..., None]


def preprocess(image: np.ndarray, task: TaskPlugin) -> dict[str, np.ndarray]:
    """FOV-cropped RGB, then :func:`enhance`, zero outside the FOV."""
    feeds = fundus_nchw(image, task)
    name = task.inputs[0].name
    enhanced = enhance(feeds[name][0].transpose(1, 2, 0))
    return {name: np.ascontiguousarray(enhanced.transpose(2, 0, 1)[None], dtype=np.float32)}


def referable_probability(dr: np.ndarray, p_dme: np.ndarray | float) -> np.ndarray:
    """p(moderate NPDR or worse, or DME) = 1 - (1 - p(DME)) (1 - p(ICDR >= 2)): what programmes refer."""
    dr = np.atleast_2d(np.asarray(dr, dtype=np.float64))
    return 1.0 - (1.0 - np.asarray(p_dme, dtype=np.float64)) * (1.0 - dr[:, REFERABLE_FROM:].sum(axis=1))


def postprocess(outputs: Mapping[str, np.ndarray], task: TaskPlugin) -> dict[str, Any]:
    dr = np.asarray(outputs["dr_probs"], dtype=np.float64).reshape(-1)
    quality = np.asarray(outputs["quality_probs"], dtype=np.float64).reshape(-1)
    p_dme = float(np.asarray(outputs["dme_prob"]).reshape(-1)[0]) if "dme_prob" in outputs else 0.0
    if POOR_THRESHOLD is None:
        q = int(np.argmax(quality))
    else:
        q = POOR if quality[POOR] >= POOR_THRESHOLD else int(np.argmax(quality[:POOR]))
    result: dict[str, Any] = {
        "quality": QUALITY_LABELS[q],
        **{f"p_quality_{n}": round(float(p), 6) for n, p in zip(QUALITY_LABELS, quality, strict=True)},
    }
    if q == POOR:
        return {**result, "result": RETAKE, "dr_grade": None, "referable": None, "dme": None}
    grade = int(np.argmax(dr))
    p_referable = float(referable_probability(dr, p_dme)[0])
    referable = (grade >= REFERABLE_FROM or p_dme >= 0.5) if REFERABLE_THRESHOLD is None \
        else p_referable >= REFERABLE_THRESHOLD
    return {
        **result,
        "result": DR_LABELS[grade],
        "dr_grade": grade,
        "dme": p_dme >= 0.5,
        "referable": bool(referable),
        "p_referable": round(p_referable, 6),
        "p_dme": round(p_dme, 6),
        **{f"p_dr_{i}": round(float(p), 6) for i, p in enumerate(dr)},
    }
