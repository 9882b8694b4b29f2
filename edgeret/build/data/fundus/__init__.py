"""Synthetic colour fundus photographs with ICDR DR grade and EyeQ-like quality labels.

numpy + cv2 only (runs on devices). Deterministic from a seed.

>>> s = generate_fundus(3, dr_grade=2, quality="usable")
>>> s.image.shape, s.dr_grade, s.quality, s.gradable
((512, 512, 3), 2, 'usable', 1)

Modules: :mod:`.anatomy` (FOV, choroid, macula/fovea, disc), :mod:`.vessels`
(artery/vein tree), :mod:`.lesions` (DR lesions by ICDR grade, table in its
docstring), :mod:`.degradations` (capture problems and the quality rule, table
in its docstring), :mod:`.nonretinal`, :mod:`.generate` (labels, default
distributions).
"""

from .degradations import (
    DEGRADATIONS,
    POOR_FROM,
    USABLE_FROM,
    apply_degradations,
    plan_degradations,
    quality_from_degradations,
)
from .generate import (
    GRADE_DISTRIBUTION,
    NONRETINAL_SHARE_OF_POOR,
    QUALITY_DISTRIBUTION,
    FundusSample,
    calibration_images,
    generate_fundus,
    generate_fundus_batch,
)
from .lesions import LESION_TYPES, QUADRANTS
from .nonretinal import NONRETINAL_KINDS

__all__ = [
    "DEGRADATIONS", "GRADE_DISTRIBUTION", "LESION_TYPES", "NONRETINAL_KINDS",
    "NONRETINAL_SHARE_OF_POOR", "POOR_FROM", "QUADRANTS", "QUALITY_DISTRIBUTION", "USABLE_FROM",
    "FundusSample", "apply_degradations", "calibration_images", "generate_fundus",
    "generate_fundus_batch", "plan_degradations", "quality_from_degradations",
]
