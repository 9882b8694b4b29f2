"""dr-grade pre/post-processing: pure numpy, shared by torch and every backend.

On the device a poor-quality capture gets no DR grade: the result says
"ungradable — retake" (the point of quality-guided grading).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeret.registrations import TaskPlugin
from edgeret.task_inputs import POOR, QUALITY_LABELS, fundus_nchw

DR_LABELS = ("no DR", "mild NPDR", "moderate NPDR", "severe NPDR", "proliferative DR")
REFERABLE_FROM = 2  # ICDR: moderate NPDR or worse is referable
INPUT_SIZE = 384  # microaneurysms are 1-3 px at 512; 384 keeps them while training on CPU
RETAKE = "ungradable — retake"
preprocess = fundus_nchw


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
