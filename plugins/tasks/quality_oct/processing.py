"""quality-oct pre/post-processing: pure numpy, shared by torch and every backend."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeret.errors import EdgeretError, InputError
from edgeret.images.grey_exports import as_grey
from edgeret.images.preprocess import preprocess_oct
from edgeret.images.read_write import ARRAY
from edgeret.plugin.registrations import TaskPlugin

# Same order as edgeret.build.data.oct (GRADES, LABEL_NAMES); not imported from there so
# the runtime never loads the phantom generator.
LABELS = ("good", "usable", "poor")
SUBLABELS = ("noise", "deficiency", "blur", "slight_deficiency")
POOR = LABELS.index("poor")
# Model input (height, width): a 640x1024 B-scan fitted to the width (scale 0.25; the
# paper uses 0.5 and pads to 512x512) fills it exactly. No square padding: zero rows
# would cost 2.2x the training time on two CPU cores (measured). Other sizes fit inside.
INPUT_SIZE = (160, 256)
MIN_SIDE = 32  # smaller than this is not a B-scan we can grade
FLAG_THRESHOLD = 0.5
UNKNOWN = -1  # sub-label not given by the dataset (e.g. class folders)
NAME_TO_CODE = {"good": 0, "usable": 1, "poor": 2}
# The shipped weights' operating point: poor when p(poor) >= this, else the likelier of good and
# usable. Chosen by patient-level cross-validation on real clinical B-scans (TRAINING.md,
# benchmarks/quality-oct-real-cv.md); None: argmax over the three grades.
POOR_THRESHOLD: float | None = 0.45


def preprocess(image: np.ndarray, task: TaskPlugin) -> dict[str, np.ndarray]:
    """Grayscale B-scan (uint8/uint16 H×W) -> {"bscan": 1×1×H×W float32 in [0, 1]}.

    H×W come from the task's input spec. The scan is fitted into it keeping its
    aspect ratio (content at the top, zero padding below), so any scan size is
    resized per the spec; a colour photograph raises InputError.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 3:
        grey = as_grey(arr, ARRAY)  # a viewer's RGB export with markers is still a grey scan
        if grey is None:
            raise InputError(ARRAY, f"{task.name} expects a grayscale OCT B-scan, got a colour image "
                                    "(a fundus photograph?)")
        arr = grey
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3)):
        raise InputError(ARRAY, f"{task.name} expects a grayscale OCT B-scan, got shape {arr.shape}")
    if min(arr.shape[:2]) < MIN_SIDE:
        raise InputError(ARRAY, f"B-scan is {arr.shape[1]}x{arr.shape[0]}; {task.name} needs at "
                                f"least {MIN_SIDE} pixels per side")
    height, width = task.inputs[0].shape[2:]
    scan = preprocess_oct(arr, (height, width), scale=None)
    return {task.inputs[0].name: np.ascontiguousarray(scan[None, None], dtype=np.float32)}


def grades(probs: np.ndarray, poor_threshold: float | None = POOR_THRESHOLD) -> np.ndarray:
    """(N, 3) grade probabilities -> (N,) grade indices at the operating point (argmax when None)."""
    probs = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    if poor_threshold is None:
        return probs.argmax(axis=1)
    return np.where(probs[:, POOR] >= poor_threshold, POOR, probs[:, :POOR].argmax(axis=1))


def postprocess(outputs: Mapping[str, np.ndarray], task: TaskPlugin) -> dict[str, Any]:
    """Probabilities -> grade, gradable, the four sub-label probabilities and the raised flags."""
    probs = np.asarray(outputs["grade_probs"], dtype=np.float64).reshape(-1)
    subs = np.asarray(outputs["sublabel_probs"], dtype=np.float64).reshape(-1)
    grade = int(grades(probs)[0])
    return {
        "grade": LABELS[grade],
        "gradable": grade != POOR,
        **{f"p_{name}": round(float(p), 6) for name, p in zip(LABELS, probs, strict=True)},
        "sublabels": {name: round(float(p), 6) for name, p in zip(SUBLABELS, subs, strict=True)},
        "flags": [name for name, p in zip(SUBLABELS, subs, strict=True) if p >= FLAG_THRESHOLD],
    }


def grade_code(labels: Mapping[str, Any]) -> int:
    """The 3-class target from an edgeret labels.csv ("quality") or class folders ("class")."""
    value = labels.get("quality", labels.get("class"))
    if value is None:
        raise EdgeretError("OCT labels need a 'quality' column or good/usable/poor class folders")
    if isinstance(value, str):
        if value.lower() not in NAME_TO_CODE:
            raise EdgeretError(f"OCT quality '{value}' is not one of {', '.join(LABELS)}")
        return NAME_TO_CODE[value.lower()]
    if int(value) not in range(len(LABELS)):
        raise EdgeretError(f"OCT quality code {value} is not 0 (good), 1 (usable) or 2 (poor)")
    return int(value)


def sublabel_codes(labels: Mapping[str, Any]) -> dict[str, int]:
    """0/1 per sub-label, or UNKNOWN (-1) where the dataset does not say (class folders)."""
    return {name: int(labels[name]) if name in labels else UNKNOWN for name in SUBLABELS}
