"""Top level: one labelled synthetic colour fundus photograph from a seed.

Determinism: every random draw comes from ``numpy.random.Generator(PCG64([seed,
stream]))`` with a fixed stream per concern (labels, anatomy, vessels, lesions,
degradation plan, degradation rendering, non-retinal scene). No global RNG, no
clock. Because the streams are independent, the *same eye* (anatomy and
vessels) is drawn for a seed whatever grade or quality is asked for, and
``draw_lesions=False`` renders that exact image without its lesions.

Defaults when not given (documented distributions):

* ``dr_grade``: :data:`GRADE_DISTRIBUTION` = 0: 45 %, 1: 15 %, 2: 20 %, 3: 10 %,
  4: 10 % - a screening population enriched for disease so every ICDR grade is
  well represented (real EyePACS prevalence is about 73/7/15/2.5/2 %).
* ``quality``: :data:`QUALITY_DISTRIBUTION` = good 58 %, usable 23 %, poor 19 %,
  the proportions of EyeQ's labels (16,817 / 6,435 / 5,540 of 28,792).
* a poor capture is non-retinal (white frame, dark frame, other scene) with
  probability :data:`NONRETINAL_SHARE_OF_POOR` = 15 %.
* laterality: OD or OS with equal probability.

``dr_grade`` is the grade of the underlying eye even when the capture is poor
(ungradable); for non-retinal captures it is 0 and meaningless.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from .anatomy import fov_alpha, paint_disc, render_background, sample_geometry
from .degradations import apply_degradations, plan_degradations, quality_from_degradations, shift_image
from .lesions import LESION_TYPES, draw_beading, draw_red, paint_bright, plan_lesions
from .nonretinal import NONRETINAL_KINDS, nonretinal_capture
from .vessels import draw_vessel_canvases, grow_vessels, vessel_transmission

GRADE_DISTRIBUTION = (0.45, 0.15, 0.2, 0.1, 0.1)
QUALITY_DISTRIBUTION = {"good": 0.58, "usable": 0.23, "poor": 0.19}
NONRETINAL_SHARE_OF_POOR = 0.15
KINDS = ("retina", "nonretinal", *NONRETINAL_KINDS)
_LABELS, _ANATOMY, _VESSELS, _LESIONS, _PLAN, _RENDER, _SCENE = range(7)


@dataclass
class FundusSample:
    image: np.ndarray  # uint8 H x W x 3 RGB
    dr_grade: int  # ICDR 0-4 (0 and meaningless for non-retinal captures)
    quality: str  # "good" / "usable" / "poor" (EyeQ-like)
    gradable: int  # 1 unless poor: the fundus-quality paper's binary label
    degradations: dict[str, float]  # name -> severity in [0, 1]
    lesions: dict[str, int]  # lesion type -> count (every type present, 0 if absent)
    lesion_quadrants: dict[str, list[int]]  # type -> counts in lesions.QUADRANTS order
    fov_mask: np.ndarray  # bool H x W
    vessel_mask: np.ndarray  # bool H x W: the whole tree, 1 px twigs to the trunks
    laterality: str  # "OD" (disc on the right) / "OS" (disc on the left)
    nonretinal: bool = False
    kind: str = "retina"  # "retina", or the non-retinal kind: "white" / "dark" / "scene"
    seed: int = 0
    disc_center: tuple[float, float] | None = None  # (x, y) in image pixels
    disc_diameter: float = 0.0
    fovea_center: tuple[float, float] | None = None
    lesion_free: np.ndarray | None = field(default=None, repr=False)  # same image, no lesions


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([seed, stream]))


def _to_uint8(img: np.ndarray) -> np.ndarray:
    np.maximum(img, 0.0, out=img)
    return cv2.convertScaleAbs(img, alpha=255.0)  # rounds and saturates


def generate_fundus(seed: int, size: int = 512, dr_grade: int | None = None,
                    quality: str | None = None, kind: str | None = None, *,
                    laterality: str | None = None, draw_lesions: bool = True,
                    keep_lesion_free: bool = False) -> FundusSample:
    """A synthetic colour fundus photograph with its labels; same arguments -> same bytes.

    kind: None draws per the module docstring; "retina" forces a fundus image;
    "nonretinal" forces a non-retinal capture (or name one: "white", "dark",
    "scene"). draw_lesions=False renders the same image without lesions (labels
    still describe the lesions that were planned); keep_lesion_free=True also
    attaches that lesion-free rendering as ``lesion_free``.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")
    if dr_grade is not None and dr_grade not in range(5):
        raise ValueError(f"dr_grade must be 0-4, got {dr_grade!r}")
    if quality is not None and quality not in QUALITY_DISTRIBUTION:
        raise ValueError(f"quality must be good, usable or poor, got {quality!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if laterality is not None and laterality not in ("OD", "OS"):
        raise ValueError(f"laterality must be OD or OS, got {laterality!r}")
    seed, size = int(seed), int(size)
    lab = _rng(seed, _LABELS)
    u_grade, u_quality, u_kind, u_lat = lab.random(4)  # always drawn: streams stay aligned
    grade = int(np.searchsorted(np.cumsum(GRADE_DISTRIBUTION), u_grade * 0.999999)) \
        if dr_grade is None else int(dr_grade)
    if kind is not None and kind != "retina":  # a non-retinal capture was asked for
        if quality not in (None, "poor"):
            raise ValueError(f"a non-retinal capture is always poor quality, not {quality!r}")
        quality, nonretinal = "poor", True
    else:
        if quality is None:
            names = list(QUALITY_DISTRIBUTION)
            cum = np.cumsum(list(QUALITY_DISTRIBUTION.values()))
            quality = names[int(np.searchsorted(cum, u_quality * 0.999999))]
        nonretinal = kind is None and quality == "poor" and u_kind < NONRETINAL_SHARE_OF_POOR
    lat = laterality or ("OD" if u_lat < 0.5 else "OS")
    if nonretinal:
        img, what = nonretinal_capture(_rng(seed, _SCENE), size,
                                       kind if kind in NONRETINAL_KINDS else None)
        empty = np.zeros((size, size), bool)
        return FundusSample(
            image=_to_uint8(img), dr_grade=0, quality="poor", gradable=0, degradations={},
            lesions=dict.fromkeys(LESION_TYPES, 0),
            lesion_quadrants={t: [0, 0, 0, 0] for t in LESION_TYPES}, fov_mask=empty,
            vessel_mask=empty.copy(), laterality=lat, nonretinal=True, kind=what, seed=seed)
    sample = _render(seed, size, grade, quality, lat, draw_lesions)
    if keep_lesion_free:
        sample.lesion_free = _render(seed, size, grade, quality, lat, False).image
    return sample


def _render(seed: int, size: int, grade: int, quality: str, lat: str, draw_lesions: bool) -> FundusSample:
    rng = _rng(seed, _ANATOMY)
    geom = sample_geometry(rng, size)
    refl, illum = render_background(geom, rng)
    paint_disc(refl, geom, rng)
    pieces = grow_vessels(geom, _rng(seed, _VESSELS))
    art, vein, reflex, vmask = draw_vessel_canvases(geom, pieces)
    plan = plan_lesions(geom, pieces, grade, _rng(seed, _LESIONS))
    red = None
    if draw_lesions:
        draw_beading(plan, vein)
        red = draw_red(plan, size)
    fov = fov_alpha(geom)
    illum *= fov
    img = refl
    img *= vessel_transmission(art, vein, reflex, red, geom.scale, illum)
    if draw_lesions:
        paint_bright(plan, img, illum, geom.scale)
    disc, fovea = geom.disc, geom.fovea
    if lat == "OD":  # canonical layout is OS (disc on the left); OD is its mirror image
        img, fov, vmask = cv2.flip(img, 1), cv2.flip(fov, 1), cv2.flip(vmask, 1)
        disc, fovea = (size - 1 - disc[0], disc[1]), (size - 1 - fovea[0], fovea[1])
    degradations = plan_degradations(_rng(seed, _PLAN), quality)
    assert quality_from_degradations(degradations) == quality
    img, (dx, dy) = apply_degradations(img, fov, degradations, (geom.cx, geom.cy), geom.radius,
                                       _rng(seed, _RENDER))
    fov_mask = fov >= 0.5
    vessel_mask = (vmask > 0) & fov_mask
    if dx or dy:
        fov_mask, vessel_mask = shift_image(fov_mask, dx, dy), shift_image(vessel_mask, dx, dy)
        disc, fovea = (disc[0] + dx, disc[1] + dy), (fovea[0] + dx, fovea[1] + dy)
    return FundusSample(
        image=_to_uint8(img), dr_grade=grade, quality=quality, gradable=int(quality != "poor"),
        degradations=degradations, lesions=dict(plan.counts),
        lesion_quadrants={k: list(v) for k, v in plan.quadrants.items()}, fov_mask=fov_mask,
        vessel_mask=vessel_mask, laterality=lat, nonretinal=False, kind="retina", seed=seed,
        disc_center=(float(disc[0]), float(disc[1])), disc_diameter=float(geom.dd),
        fovea_center=(float(fovea[0]), float(fovea[1])))


def generate_fundus_batch(seeds: Iterable[int], **kwargs) -> list[FundusSample]:
    """generate_fundus for each seed (same keyword arguments for all)."""
    return [generate_fundus(seed, **kwargs) for seed in seeds]


def calibration_images(n: int, seed: int = 0, size: int = 512) -> Iterator[np.ndarray]:
    """n uint8 RGB images for INT8 calibration: the generator's default mix of grades,
    qualities and non-retinal captures, from seeds no other helper here uses."""
    for i in range(n):
        yield generate_fundus(seed * 1_000_000 + 900_000 + i, size=size).image
