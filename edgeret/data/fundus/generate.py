"""Top level: a labelled synthetic fundus photograph from a seed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .capture import apply_degradations, nonretinal_capture, plan_degradations, quality_from_degradations
from .dr_lesions import LESION_TYPES, paint_lesions
from .phantom import render_anatomy

#: Drawn when dr_grade=None (roughly a screening population with some disease).
GRADE_DISTRIBUTION = (0.45, 0.15, 0.2, 0.1, 0.1)
#: Drawn when quality=None.
QUALITY_DISTRIBUTION = {"good": 0.6, "usable": 0.25, "poor": 0.15}
#: Share of poor captures that are not a retina at all (blank, dark, a room).
NONRETINAL_SHARE_OF_POOR = 0.15


@dataclass
class FundusSample:
    image: np.ndarray  # uint8 H×W×3 RGB
    dr_grade: int  # 0-4; 0 and meaningless for non-retinal captures
    quality: str  # good / usable / poor
    gradable: int  # 1 unless poor (the fundus quality paper's binary label)
    degradations: dict[str, float]
    lesions: dict[str, int]
    lesion_quadrants: dict[str, list[int]]
    fov_mask: np.ndarray
    vessel_mask: np.ndarray
    laterality: str
    nonretinal: bool = False
    kind: str = "retina"
    lesion_free: np.ndarray | None = field(default=None, repr=False)  # same eye without lesions


def generate_fundus(seed: int, size: int = 512, dr_grade: int | None = None,
                    quality: str | None = None, kind: str | None = None,
                    keep_lesion_free: bool = False) -> FundusSample:
    """Deterministic from `seed` (same arguments -> same bytes).

    `kind="nonretinal"` forces a non-retinal capture; otherwise a poor capture is
    non-retinal with probability NONRETINAL_SHARE_OF_POOR.
    """
    if dr_grade is not None and dr_grade not in range(5):
        raise ValueError(f"dr_grade must be 0-4, got {dr_grade}")
    if quality is not None and quality not in QUALITY_DISTRIBUTION:
        raise ValueError(f"quality must be good, usable or poor, got {quality!r}")
    pick = np.random.default_rng([seed, 0])
    grade = int(pick.choice(5, p=GRADE_DISTRIBUTION)) if dr_grade is None else dr_grade
    names = list(QUALITY_DISTRIBUTION)
    quality = quality or names[int(pick.choice(3, p=list(QUALITY_DISTRIBUTION.values())))]
    nonretinal = kind == "nonretinal" or (quality == "poor" and kind is None
                                          and pick.random() < NONRETINAL_SHARE_OF_POOR)
    if nonretinal:
        image, what = nonretinal_capture(np.random.default_rng([seed, 3]), size)
        empty = np.zeros((size, size), bool)
        return FundusSample((image * 255 + 0.5).astype(np.uint8), 0, "poor", 0, {},
                            dict.fromkeys(LESION_TYPES, 0), {t: [0] * 4 for t in LESION_TYPES},
                            empty, empty, "OD", True, what)
    laterality = "OD" if pick.random() < 0.5 else "OS"
    anatomy = render_anatomy(np.random.default_rng([seed, 1]), size, laterality)
    rgb, painter = paint_lesions(np.random.default_rng([seed, 2]), anatomy, grade)
    plan = plan_degradations(np.random.default_rng([seed, 4]), quality)
    assert quality_from_degradations(plan) == quality
    degraded = apply_degradations(np.random.default_rng([seed, 5]), rgb, plan, anatomy.center, anatomy.radius)
    lesion_free = None
    if keep_lesion_free:
        clean = apply_degradations(np.random.default_rng([seed, 5]), anatomy.rgb, plan, anatomy.center,
                                   anatomy.radius)
        lesion_free = (clean * 255 + 0.5).astype(np.uint8)
    return FundusSample(
        image=(degraded * 255 + 0.5).astype(np.uint8), dr_grade=grade, quality=quality,
        gradable=int(quality != "poor"), degradations=plan,
        lesions={t: painter.counts.get(t, 0) for t in LESION_TYPES},
        lesion_quadrants=painter.quadrants, fov_mask=anatomy.fov_mask,
        vessel_mask=anatomy.vessel_mask, laterality=laterality, lesion_free=lesion_free,
    )


def generate_fundus_batch(seeds: Iterable[int], **kwargs) -> list[FundusSample]:
    return [generate_fundus(seed, **kwargs) for seed in seeds]


def calibration_images(n: int, seed: int = 0, size: int = 512) -> Iterator[np.ndarray]:
    """Images for INT8 calibration: the generator's natural mix of grades and qualities."""
    for i in range(n):
        yield generate_fundus(seed * 1_000_000 + 900_000 + i, size=size).image
