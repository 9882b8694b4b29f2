"""Synthetic colour fundus photographs with DR grade and quality labels (numpy + cv2).

>>> s = generate_fundus(3, dr_grade=2, quality="usable")
>>> s.image.shape, s.dr_grade, s.quality, s.gradable
((512, 512, 3), 2, 'usable', 1)
"""

from .capture import DEGRADATIONS, POOR_FROM, USABLE_FROM, quality_from_degradations
from .dr_lesions import LESION_TYPES
from .generate import (
    GRADE_DISTRIBUTION,
    QUALITY_DISTRIBUTION,
    FundusSample,
    calibration_images,
    generate_fundus,
    generate_fundus_batch,
)

__all__ = [
    "DEGRADATIONS", "GRADE_DISTRIBUTION", "LESION_TYPES", "POOR_FROM", "QUALITY_DISTRIBUTION",
    "USABLE_FROM", "FundusSample", "calibration_images", "generate_fundus", "generate_fundus_batch",
    "quality_from_degradations",
]
