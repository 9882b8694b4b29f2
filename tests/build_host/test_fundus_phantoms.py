"""Synthetic colour fundus phantoms: determinism, ICDR lesion rules, quality rule, anatomy."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.morphology import skeletonize

from edgeret.build.data.fundus import (
    DEGRADATIONS,
    LESION_TYPES,
    POOR_FROM,
    QUADRANTS,
    USABLE_FROM,
    calibration_images,
    generate_fundus,
    generate_fundus_batch,
    quality_from_degradations,
)

SMALL = 192  # label-only checks do not need full resolution


# -- determinism ---------------------------------------------------------------------------

def test_same_seed_same_bytes_other_seed_differs():
    a = generate_fundus(7, dr_grade=3, quality="usable")
    b = generate_fundus(7, dr_grade=3, quality="usable")
    assert a.image.dtype == np.uint8 and a.image.shape == (512, 512, 3)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.vessel_mask.tobytes() == b.vessel_mask.tobytes()
    assert a.degradations == b.degradations and a.lesions == b.lesions
    assert generate_fundus(8, dr_grade=3, quality="usable").image.tobytes() != a.image.tobytes()
    batch = generate_fundus_batch([7, 8], size=SMALL)
    assert batch[0].image.tobytes() == generate_fundus(7, size=SMALL).image.tobytes()


def test_same_seed_is_the_same_eye_whatever_the_grade():
    healthy = generate_fundus(5, size=SMALL, dr_grade=0, quality="good")
    severe = generate_fundus(5, size=SMALL, dr_grade=3, quality="good")
    assert np.array_equal(healthy.vessel_mask, severe.vessel_mask)
    assert healthy.laterality == severe.laterality


def test_defaults_are_drawn_from_the_seed():
    samples = [generate_fundus(s, size=64) for s in range(40)]
    assert {s.dr_grade for s in samples} == set(range(5))
    assert {s.quality for s in samples} == {"good", "usable", "poor"}
    assert {s.laterality for s in samples} == {"OD", "OS"}


# -- ICDR lesions --------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_lesions_follow_icdr(seed):
    g = {k: generate_fundus(seed, size=SMALL, dr_grade=k, quality="good") for k in range(5)}
    assert set(g[0].lesions) == set(LESION_TYPES) and sum(g[0].lesions.values()) == 0
    for k in range(1, 5):
        assert g[k].lesions["microaneurysm"] >= 1
    mild = g[1].lesions
    assert sum(v for t, v in mild.items() if t != "microaneurysm") == 0
    moderate = g[2].lesions
    assert moderate["haemorrhage"] + moderate["hard_exudate"] + moderate["cotton_wool_spot"] >= 1
    assert moderate["haemorrhage"] <= 20
    assert sum(1 for n in g[2].lesion_quadrants["haemorrhage"] if n) <= 3
    for t in ("venous_beading", "irma", "neovascularisation", "preretinal_haemorrhage"):
        assert moderate[t] == 0
    severe = g[3]
    assert severe.lesions["haemorrhage"] > 20
    assert all(n > 20 for n in severe.lesion_quadrants["haemorrhage"])  # 4-2-1 rule
    assert severe.lesions["neovascularisation"] == 0
    assert g[4].lesions["neovascularisation"] >= 1
    for s in g.values():  # per-quadrant counts add up to the totals
        assert {t: sum(q) for t, q in s.lesion_quadrants.items()} == s.lesions
        assert all(len(q) == len(QUADRANTS) for q in s.lesion_quadrants.values())


def test_grade_3_sometimes_adds_venous_beading_in_two_quadrants_or_irma():
    seen = set()
    for seed in range(12):
        s = generate_fundus(seed, size=SMALL, dr_grade=3, quality="good")
        if s.lesions["venous_beading"]:
            assert sum(1 for n in s.lesion_quadrants["venous_beading"] if n) >= 2
            seen.add("beading")
        if s.lesions["irma"]:
            seen.add("irma")
    assert seen == {"beading", "irma"}


def _lesion_components(sample, threshold=10):
    diff = np.abs(sample.image.astype(int) - sample.lesion_free.astype(int)).max(axis=2)
    count, _, stats, _ = cv2.connectedComponentsWithStats((diff > threshold).astype(np.uint8))
    return stats[1:, cv2.CC_STAT_AREA]


@pytest.mark.parametrize("seed", [2, 5])
def test_microaneurysms_are_tiny_red_dots(seed):
    sample = generate_fundus(seed, dr_grade=1, quality="good", keep_lesion_free=True)
    areas = _lesion_components(sample)
    assert 1 <= len(areas) <= sample.lesions["microaneurysm"]
    assert areas.max() <= 12, areas  # ~1-3 px across at 512 x 512
    diff = sample.lesion_free.astype(int) - sample.image.astype(int)
    changed = np.abs(diff).max(axis=2) > 10
    assert (diff[changed] >= -2).all()  # only ever darker: red dots, no bright halo
    assert diff[changed][:, 0].mean() > 0  # and they take red out: dark red, not black ink


def test_severe_npdr_haemorrhages_stay_small():
    sample = generate_fundus(1, dr_grade=3, quality="good", keep_lesion_free=True)
    areas = _lesion_components(sample)
    assert np.median(areas) <= 40, np.median(areas)  # dots and blots, not giant blobs
    assert areas.sum() < 0.05 * sample.fov_mask.sum()


# -- quality rule --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("degradations", "expected"),
    [
        ({}, "good"),
        ({"noise": 0.05}, "good"),
        ({"noise": 0.3}, "usable"),
        ({"defocus": 0.3}, "usable"),
        ({"defocus": 0.9}, "poor"),
        ({"motion": 0.55}, "poor"),
        ({"occlusion": 0.5}, "poor"),
        ({"underexposure": 0.8}, "poor"),
        ({"overexposure": 0.7}, "poor"),
        ({"haze": 0.5, "underexposure": 0.5}, "poor"),  # compound: each nearly disqualifying
        ({"haze": 0.3, "underexposure": 0.3}, "usable"),
        ({"haze": 0.25, "defocus": 0.2, "vignetting": 0.25}, "poor"),  # three mild problems
        ({"off_centre": 0.1, "noise": 0.1}, "good"),
    ],
)
def test_quality_rule_table(degradations, expected):
    assert quality_from_degradations(degradations) == expected


def test_quality_rule_thresholds_and_errors():
    for name in DEGRADATIONS:
        assert USABLE_FROM[name] < POOR_FROM[name]
        assert quality_from_degradations({name: USABLE_FROM[name] - 0.01}) == "good"
        assert quality_from_degradations({name: USABLE_FROM[name]}) == "usable"
        assert quality_from_degradations({name: POOR_FROM[name]}) == "poor"
    with pytest.raises(ValueError, match="unknown degradations"):
        quality_from_degradations({"sparkles": 0.9})
    assert quality_from_degradations({}, nonretinal=True) == "poor"


@pytest.mark.parametrize("quality", ["good", "usable", "poor"])
def test_generated_quality_follows_the_rule(quality):
    for seed in range(8):
        s = generate_fundus(seed, size=96, quality=quality, kind="retina")
        assert s.quality == quality == quality_from_degradations(s.degradations)
        assert s.gradable == int(quality != "poor") and not s.nonretinal
        if quality == "good":  # nothing significant
            assert all(v < USABLE_FROM[k] for k, v in s.degradations.items())
        if quality == "usable":
            assert any(v >= USABLE_FROM[k] for k, v in s.degradations.items())
            assert all(v < POOR_FROM[k] for k, v in s.degradations.items())


def _detail(sample):
    """Fine detail inside the field of view (away from its sharp rim; noise smoothed away)."""
    gray = cv2.GaussianBlur(cv2.cvtColor(sample.image, cv2.COLOR_RGB2GRAY), (0, 0), 1.0)
    inside = cv2.erode(sample.fov_mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    return cv2.Laplacian(gray, cv2.CV_64F)[inside].var()


def test_degradations_are_visible():
    for seed in range(5):  # same eye, good vs poor capture
        good = generate_fundus(seed, size=256, dr_grade=2, quality="good")
        poor = generate_fundus(seed, size=256, dr_grade=2, quality="poor", kind="retina")
        assert np.abs(poor.image.astype(float) - good.image.astype(float)).mean() > 8
    seed = next(i for i in range(200)  # the plan does not depend on the size: find one cheaply
                if generate_fundus(i, size=32, quality="poor", kind="retina").degradations.get(
                    "defocus", 0) > 0.7)
    sharp = generate_fundus(seed, size=256, quality="good")
    blurred = generate_fundus(seed, size=256, quality="poor", kind="retina")
    assert _detail(blurred) < 0.3 * _detail(sharp)


def test_nonretinal_captures_are_poor_and_ungradable():
    kinds = set()
    for seed in range(9):
        s = generate_fundus(seed, size=SMALL, kind="nonretinal")
        assert s.nonretinal and s.quality == "poor" and s.gradable == 0 and s.dr_grade == 0
        assert not s.fov_mask.any() and not s.vessel_mask.any()
        assert quality_from_degradations(s.degradations, nonretinal=s.nonretinal) == "poor"
        kinds.add(s.kind)
    assert kinds == {"white", "dark", "scene"}
    assert generate_fundus(0, size=64, kind="white").image.mean() > 180
    assert generate_fundus(0, size=64, kind="dark").image.mean() < 20
    # asked-for poor quality is sometimes not a retina at all
    assert any(generate_fundus(s, size=64, quality="poor").nonretinal for s in range(40))
    with pytest.raises(ValueError, match="always poor"):
        generate_fundus(0, kind="nonretinal", quality="good")


# -- anatomy -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def healthy():
    return [generate_fundus(s, dr_grade=0, quality="good") for s in range(4)]


def test_black_outside_the_field_of_view(healthy):
    for s in healthy:
        assert 0.55 < s.fov_mask.mean() < 0.78
        ring = ~cv2.dilate(s.fov_mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert np.percentile(s.image[ring], 99) <= 4 and s.image[ring].max() <= 12
        assert s.image[s.fov_mask].mean() > 60


def test_vessel_tree_has_trunks_and_one_pixel_twigs(healthy):
    for s in healthy:
        mask = s.vessel_mask
        assert not (mask & ~s.fov_mask).any()
        fraction = mask.sum() / s.fov_mask.sum()
        assert 0.05 <= fraction <= 0.15, fraction
        dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
        width = 2 * dist[skeletonize(mask)]  # vessel calibre along the centre lines
        assert np.mean(width <= 2.5) > 0.3  # plenty of 1-2 px vessels
        assert width.max() >= 6  # trunks near the disc
        # vessels are darker than the background around them (green channel)
        green = s.image[..., 1].astype(float)
        near = cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~mask
        assert green[mask].mean() < green[near & s.fov_mask].mean() - 5


def _radius(s):
    yy, xx = np.mgrid[: s.image.shape[0], : s.image.shape[1]]
    return np.hypot(xx - s.disc_center[0], yy - s.disc_center[1]), \
        np.hypot(xx - s.fovea_center[0], yy - s.fovea_center[1])


def test_disc_is_bright_and_fovea_dark(healthy):
    for s in healthy:
        gray = cv2.cvtColor(s.image, cv2.COLOR_RGB2GRAY).astype(float)
        rd, rf = _radius(s)
        dd = s.disc_diameter
        assert 0.12 < dd / (2 * np.sqrt(s.fov_mask.sum() / np.pi)) < 0.2  # ~1/6-1/7 of the FOV
        background = s.fov_mask & ~s.vessel_mask & (rd > 1.5 * dd)
        assert gray[rd < 0.3 * dd].mean() > 1.3 * gray[background].mean()
        assert 2.0 * dd < np.hypot(*np.subtract(s.disc_center, s.fovea_center)) < 3.0 * dd
        green = s.image[..., 1].astype(float)
        centre = green[rf < 0.1 * dd].mean()
        macula = green[(rf > 0.5 * dd) & (rf < dd) & ~s.vessel_mask].mean()
        assert centre < macula - 8  # small dark foveal centre
        assert not s.vessel_mask[rf < 0.25 * dd].any()  # foveal avascular zone


def test_laterality_mirrors_the_layout():
    od = generate_fundus(4, size=256, dr_grade=0, quality="good", laterality="OD")
    os_ = generate_fundus(4, size=256, dr_grade=0, quality="good", laterality="OS")
    assert od.disc_center[0] > od.fovea_center[0]  # OD: disc right of the fovea
    assert os_.disc_center[0] < os_.fovea_center[0]
    assert np.array_equal(od.vessel_mask, os_.vessel_mask[:, ::-1])
    gray = cv2.GaussianBlur(cv2.cvtColor(od.image, cv2.COLOR_RGB2GRAY), (0, 0), 6)
    assert np.unravel_index(np.argmax(gray), gray.shape)[1] > 128


def test_sizes_calibration_and_argument_checks():
    for size in (64, 200):
        s = generate_fundus(1, size=size)
        assert s.image.shape == (size, size, 3) and s.fov_mask.shape == (size, size)
    images = list(calibration_images(3, seed=1, size=64))
    assert len(images) == 3 and all(i.shape == (64, 64, 3) and i.dtype == np.uint8 for i in images)
    for bad in ({"dr_grade": 5}, {"quality": "great"}, {"kind": "moon"}, {"laterality": "L"},
                {"size": 8}):
        with pytest.raises(ValueError):
            generate_fundus(0, **bad)
    with pytest.raises(ValueError):
        generate_fundus(-1)
