"""Synthetic macular OCT B-scans with image-quality labels (numpy + cv2 only).

>>> s = generate_oct(7, quality="usable")
>>> s.image.shape, s.grade
((640, 1024), 'usable')
"""

from .artifacts import DEFICIENCY_RANGE, LOSS_VISIBLE_DB, SLIGHT_RANGE
from .generate import OctSample, calibration_bscans, generate_oct
from .layers import BAND_NAMES, BOUNDARY_NAMES, LAYER_BANDS
from .quality import (
    GRADE_DISTRIBUTION,
    GRADES,
    LABEL_COMBINATIONS,
    LABEL_NAMES,
    grade_from_labels,
    sample_labels,
)
from .speckle import display_to_db, display_to_linear

__all__ = [
    "BAND_NAMES",
    "BOUNDARY_NAMES",
    "DEFICIENCY_RANGE",
    "GRADES",
    "GRADE_DISTRIBUTION",
    "LABEL_COMBINATIONS",
    "LABEL_NAMES",
    "LAYER_BANDS",
    "LOSS_VISIBLE_DB",
    "OctSample",
    "SLIGHT_RANGE",
    "calibration_bscans",
    "display_to_db",
    "display_to_linear",
    "generate_oct",
    "grade_from_labels",
    "sample_labels",
]
