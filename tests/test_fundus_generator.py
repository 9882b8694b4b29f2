"""Synthetic fundus phantoms: determinism, ICDR lesion rules, quality rule, anatomy."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeret.data.fundus import (
    DEGRADATIONS,
    generate_fundus,
    quality_from_degradations,
)


def test_same_seed_same_bytes_other_seed_differs():
    a, b = generate_fundus(7, dr_grade=2, quality="usable"), generate_fundus(7, dr_grade=2, quality="usable")
    assert a.image.tobytes() == b.image.tobytes()
    assert generate_fundus(8, dr_grade=2, quality="usable").image.tobytes() != a.image.tobytes()
    assert a.image.dtype == np.uint8 and a.image.shape == (512, 512, 3)


@pytest.mark.parametrize("seed", range(4))
def test_grade_0_has_no_lesions_and_grade_1_only_microaneurysms(seed):
    assert sum(generate_fundus(seed, dr_grade=0, quality="good").lesions.values()) == 0
    mild = generate_fundus(seed, dr_grade=1, quality="good").lesions
    assert mild["microaneurysm"] >= 1
    assert sum(v for k, v in mild.items() if k != "microaneurysm") == 0


@pytest.mark.parametrize("seed", range(4))
def test_grade_3_has_many_haemorrhages_in_all_four_quadrants_and_no_new_vessels(seed):
    severe = generate_fundus(seed, dr_grade=3, quality="good")
    assert severe.lesions["haemorrhage"] > 20
    assert all(n >= 5 for n in severe.lesion_quadrants["haemorrhage"])
    assert severe.lesions["neovascularisation"] == 0


@pytest.mark.parametrize("seed", range(4))
def test_grade_2_is_less_than_severe_and_grade_4_has_neovascularisation(seed):
    moderate = generate_fundus(seed, dr_grade=2, quality="good")
    assert moderate.lesions["haemorrhage"] < 20 and moderate.lesions["neovascularisation"] == 0
    assert sum(1 for n in moderate.lesion_quadrants["haemorrhage"] if n) <= 3
    assert generate_fundus(seed, dr_grade=4, quality="good").lesions["neovascularisation"] >= 1


def test_microaneurysms_are_tiny():
    sample = generate_fundus(3, dr_grade=1, quality="good", keep_lesion_free=True)
    changed = (np.abs(sample.image.astype(int) - sample.lesion_free.astype(int)).max(axis=2) > 8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(changed.astype(np.uint8))
    areas = stats[1:, cv2.CC_STAT_AREA]
    assert 1 <= len(areas) <= sample.lesions["microaneurysm"]
    assert areas.max() <= 12, areas


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        ({}, "good"),
        ({"noise": 0.1}, "good"),
        ({"noise": 0.3}, "usable"),
        ({"defocus": 0.65}, "poor"),
        ({"occlusion": 0.5}, "poor"),
        ({"haze": 0.5, "underexposure": 0.5}, "poor"),
        ({"haze": 0.3, "underexposure": 0.3}, "usable"),
    ],
)
def test_quality_rule_table(plan, expected):
    assert quality_from_degradations(plan) == expected


def test_quality_rule_rejects_unknown_names_and_nonretinal_is_poor():
    with pytest.raises(ValueError, match="unknown degradations"):
        quality_from_degradations({"sparkles": 0.9})
    assert quality_from_degradations({}, nonretinal=True) == "poor"


@pytest.mark.parametrize("quality", ["good", "usable", "poor"])
def test_generated_quality_follows_the_rule(quality):
    for seed in range(6):
        sample = generate_fundus(seed, quality=quality, kind="retina")
        assert sample.quality == quality == quality_from_degradations(sample.degradations)
        assert sample.gradable == int(quality != "poor")
        if quality == "good":
            assert all(v < 0.2 for v in sample.degradations.values())
    assert set(DEGRADATIONS) >= {"defocus", "motion", "haze", "occlusion", "vignetting", "noise"}


def test_nonretinal_captures_are_poor_and_ungradable():
    kinds = set()
    for seed in range(9):
        sample = generate_fundus(seed, kind="nonretinal")
        assert sample.nonretinal and sample.quality == "poor" and sample.gradable == 0
        assert not sample.fov_mask.any()
        kinds.add(sample.kind)
    assert kinds == {"white", "dark", "scene"}


def test_anatomy_black_surround_vessels_disc_and_fovea():
    sample = generate_fundus(11, dr_grade=0, quality="good")
    img = sample.image.astype(float)
    ring = ~cv2.dilate(sample.fov_mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert img[ring].max() <= 2  # black outside the field of view
    fraction = sample.vessel_mask.sum() / sample.fov_mask.sum()
    assert 0.04 <= fraction <= 0.15, fraction
    dist = cv2.distanceTransform(sample.vessel_mask.astype(np.uint8), cv2.DIST_L2, 3)
    count, labels = cv2.connectedComponents(sample.vessel_mask.astype(np.uint8))
    widest = [dist[labels == i].max() for i in range(1, count)]
    assert min(widest) <= 1.5 and max(widest) >= 2.5  # thin twigs and wide trunks


def test_disc_bright_fovea_dark_and_laterality_mirrors():
    for seed in range(4):
        sample = generate_fundus(seed, dr_grade=0, quality="good")
        gray = cv2.cvtColor(sample.image, cv2.COLOR_RGB2GRAY).astype(float)
        bright = np.unravel_index(np.argmax(cv2.GaussianBlur(gray, (0, 0), 8)), gray.shape)
        disc_on_right = bright[1] > 256
        assert disc_on_right == (sample.laterality == "OD")
    # fovea: darker than the macula around it (small dark centre)
    from edgeret.data.fundus.phantom import render_anatomy

    anatomy = render_anatomy(np.random.default_rng(5), 512, "OS")
    fx, fy = (round(v) for v in anatomy.fovea)
    lum = anatomy.rgb.mean(axis=2)
    centre = lum[fy - 2 : fy + 3, fx - 2 : fx + 3].mean()
    around = lum[fy - 40 : fy + 41, fx - 40 : fx + 41].mean()
    assert centre < around
    assert anatomy.disc[0] < anatomy.fovea[0]  # OS: disc on the left
