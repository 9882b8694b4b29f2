"""Synthetic OCT B-scans: determinism, anatomy, speckle and quality labels."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from edgeret.build.data.oct import (
    BAND_NAMES,
    BOUNDARY_NAMES,
    GRADE_DISTRIBUTION,
    LABEL_COMBINATIONS,
    LABEL_NAMES,
    LAYER_BANDS,
    OctSample,
    calibration_bscans,
    display_to_linear,
    generate_oct,
    grade_from_labels,
    sample_labels,
)

H, W = 320, 512  # half size keeps the suite fast; geometry scales with the frame
CLEAN = {k: False for k in LABEL_NAMES}


def _band_mask(s: OctSample, band: str, trim: float = 0.25) -> np.ndarray:
    """Pixels well inside a band (a quarter of its thickness trimmed each side)."""
    top, bot = (s.layer_boundaries[n] for n in LAYER_BANDS[band])
    th = bot - top
    yy = np.arange(s.image.shape[0], dtype=np.float32)[:, None] + 0.5
    with np.errstate(invalid="ignore"):
        return (yy >= top + trim * th) & (yy < bot - trim * th)


def _snr(s: OctSample) -> float:
    """Retina mean over the spread of the vitreous (background) in display units."""
    img = s.image.astype(np.float64)
    ilm = s.layer_boundaries["ILM"]
    yy = np.arange(img.shape[0])[:, None]
    vitreous = yy < np.nan_to_num(ilm, nan=0.0)[None, :] - 15
    bg = img[vitreous]
    return float((img[s.retina_mask].mean() - bg.mean()) / bg.std())


def _lap_var(img: np.ndarray, mask: np.ndarray) -> float:
    """Sharpness: variance of the Laplacian over the retina."""
    return float(cv2.Laplacian(img.astype(np.float32), cv2.CV_32F)[mask].var())


# -- determinism -------------------------------------------------------------


def test_same_seed_same_bytes():
    a = generate_oct(11, H, W, quality="poor")
    b = generate_oct(11, H, W, quality="poor")
    assert a.image.tobytes() == b.image.tobytes()
    assert a.labels == b.labels and a.grade == b.grade
    assert a.retina_mask.tobytes() == b.retina_mask.tobytes()
    for k in BOUNDARY_NAMES:
        assert a.layer_boundaries[k].tobytes() == b.layer_boundaries[k].tobytes()
    c = generate_oct(12, H, W, quality="poor")
    assert a.image.tobytes() != c.image.tobytes()


def test_output_types_and_default_size():
    s = generate_oct(3)
    assert s.image.shape == (640, 1024) and s.image.dtype == np.uint8
    assert s.retina_mask.shape == (640, 1024) and s.retina_mask.dtype == bool
    assert set(s.labels) == set(LABEL_NAMES)
    assert all(isinstance(v, bool) for v in s.labels.values())
    assert list(s.layer_boundaries) == list(BOUNDARY_NAMES)
    assert all(v.shape == (1024,) for v in s.layer_boundaries.values())
    assert s.grade == grade_from_labels(s.labels)


@pytest.mark.parametrize("shape", [(128, 256), (496, 768)])
def test_other_frame_sizes(shape):
    s = generate_oct(5, *shape, quality="usable")
    assert s.image.shape == shape and s.retina_mask.shape == shape


# -- anatomy -----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_layer_boundaries_strictly_ordered(seed):
    for quality in ("good", "usable", "poor"):
        s = generate_oct(seed, H, W, quality=quality)
        b = np.stack([s.layer_boundaries[n] for n in BOUNDARY_NAMES])  # (K, W)
        for x in range(W):
            col = b[:, x]
            col = col[~np.isnan(col)]
            assert np.all(np.diff(col) > 0), (seed, quality, x, col)
        present = ~np.isnan(b)
        assert np.all((b[present] >= 0) & (b[present] < H))


@pytest.mark.parametrize("seed", range(6))
def test_foveal_pit(seed):
    s = generate_oct(seed, H, W, labels=CLEAN)
    b = s.layer_boundaries
    xf = int(round(s.meta["fovea_x"]))
    inner = b["INL_OPL"] - b["ILM"]  # RNFL + GCL + IPL + INL
    onl = b["ONL_ELM"] - b["OPL_ONL"]
    total = b["BM"] - b["ILM"]
    edges = np.r_[inner[: W // 10], inner[-W // 10 :]]
    assert inner[xf] < 0.2 * np.median(edges)
    assert onl[xf] > 1.3 * np.median(np.r_[onl[: W // 10], onl[-W // 10 :]])
    assert total[xf] < np.median(np.r_[total[: W // 10], total[-W // 10 :]])
    # the ILM dips: the pit centre is lower than the rim on both sides
    ilm_rel = b["ILM"] - b["BM"]  # remove tilt/curvature of the eye
    assert ilm_rel[xf] > ilm_rel[max(xf - W // 6, 0)] + 5
    assert ilm_rel[xf] > ilm_rel[min(xf + W // 6, W - 1)] + 5


@pytest.mark.parametrize("seed", range(6))
def test_rpe_is_brightest_band(seed):
    s = generate_oct(seed, H, W, labels=CLEAN)
    means = {}
    for band in BAND_NAMES:
        v = s.image[_band_mask(s, band)]
        if v.size > 50:
            means[band] = float(v.mean())
    rpe = means.pop("RPE")
    assert rpe > max(means.values()), (rpe, means)
    # and the expected hyper/hypo-reflective alternation of the inner retina
    assert means["RNFL"] > means["GCL"] > means["INL"] < means["OPL"] > means["ONL"]
    assert means["EZ"] > means["MZ"] and means["EZ"] > means["OS"]


def test_vitreous_dark_and_retina_inside_mask():
    s = generate_oct(2, H, W, labels=CLEAN)
    ilm = s.layer_boundaries["ILM"]
    vit = np.arange(H)[:, None] < ilm[None, :] - 10
    assert s.image[vit].mean() < 20
    assert s.image[s.retina_mask].mean() > 3 * s.image[vit].mean() + 30
    assert 0.05 < s.retina_mask.mean() < 0.5


@pytest.mark.parametrize("seed", [1, 4, 9])
def test_speckle_is_multiplicative(seed):
    """Linear intensity: std grows with the mean (constant contrast), not constant."""
    s = generate_oct(seed, labels=CLEAN)  # full size: more pixels per band
    lin = display_to_linear(s.image, s.meta["lo_db"], s.meta["hi_db"])
    ok = (s.image > 0) & (s.image < 255)
    stats = []
    for band in ("RNFL", "IPL", "INL", "OPL", "ONL", "MZ", "OS"):
        v = lin[_band_mask(s, band, trim=0.3) & ok]
        if v.size > 500:
            stats.append((v.mean(), v.std()))
    mean, std = np.array(stats).T
    cv = std / mean
    assert mean.max() / mean.min() > 10  # the bands really differ in brightness
    assert cv.max() / cv.min() < 1.5, cv  # ...but share one speckle contrast
    assert 0.3 < np.median(cv) < 1.2
    assert np.corrcoef(np.log(mean), np.log(std))[0, 1] > 0.95


# -- quality labels ----------------------------------------------------------


def test_grade_rule_all_16_combinations():
    for bits in itertools.product([False, True], repeat=4):
        lab = dict(zip(LABEL_NAMES, bits, strict=True))
        if lab["noise"] or lab["deficiency"]:
            want = "poor"
        elif lab["blur"] or lab["slight_deficiency"]:
            want = "usable"
        else:
            want = "good"
        assert grade_from_labels(lab) == want, lab


def test_label_distribution_follows_table_1():
    rng = np.random.Generator(np.random.PCG64(0))
    n = 4000
    grades = [grade_from_labels(sample_labels(rng)) for _ in range(n)]
    for g, p in GRADE_DISTRIBUTION.items():
        assert abs(grades.count(g) / n - p) < 0.03
    allowed = {frozenset(a) for _, a, _ in LABEL_COMBINATIONS}
    for _ in range(200):
        lab = sample_labels(rng)
        assert frozenset(k for k, v in lab.items() if v) in allowed


@pytest.mark.parametrize("quality", ["good", "usable", "poor", None])
def test_generated_labels_match_grade(quality):
    for seed in range(12):
        s = generate_oct(seed, 128, 256, quality=quality)
        lab = s.labels
        if quality is not None:
            assert s.grade == quality
        if s.grade == "poor":
            assert lab["noise"] or lab["deficiency"]
        elif s.grade == "usable":
            assert (lab["blur"] or lab["slight_deficiency"]) and not (
                lab["noise"] or lab["deficiency"]
            )
        else:
            assert not any(lab.values())


def test_forced_labels_and_argument_errors():
    s = generate_oct(1, 128, 256, labels={"blur": True, "noise": True})
    assert s.labels == {"noise": True, "deficiency": False, "blur": True,
                        "slight_deficiency": False}
    assert s.grade == "poor"
    with pytest.raises(ValueError):
        generate_oct(1, 128, 256, quality="good", labels={"blur": True})
    with pytest.raises(ValueError):
        generate_oct(1, 128, 256, labels={"smudge": True})
    with pytest.raises(ValueError):
        generate_oct(1, 128, 256, quality="excellent")
    with pytest.raises(ValueError):
        generate_oct(1, 128, 256, bit_depth=12)


@pytest.mark.parametrize("seed", range(4))
def test_noise_lowers_snr(seed):
    clean = generate_oct(seed, H, W, labels=CLEAN)
    noisy = generate_oct(seed, H, W, labels={"noise": True})
    assert _snr(noisy) < 0.5 * _snr(clean)


@pytest.mark.parametrize("seed", range(4))
def test_blur_lowers_sharpness(seed):
    clean = generate_oct(seed, H, W, labels=CLEAN)
    blurred = generate_oct(seed, H, W, labels={"blur": True})
    m = clean.retina_mask
    assert _lap_var(blurred.image, m) < 0.5 * _lap_var(clean.image, m)
    # whole frame too (the vitreous noise floor is not blurred)
    full = np.ones_like(m)
    assert _lap_var(blurred.image, full) < 0.7 * _lap_var(clean.image, full)
    # the anatomy is the same eye
    np.testing.assert_array_equal(clean.layer_boundaries["BM"], blurred.layer_boundaries["BM"])


@pytest.mark.parametrize("seed", range(10))
def test_deficiency_removes_retina(seed):
    clean = generate_oct(seed, H, W, labels=CLEAN).retina_mask.sum()
    heavy = generate_oct(seed, H, W, labels={"deficiency": True}).retina_mask.sum()
    slight = generate_oct(seed, H, W, labels={"slight_deficiency": True}).retina_mask.sum()
    assert heavy / clean < 0.75
    assert 0.85 <= slight / clean <= 0.99


def test_good_images_are_clean():
    for seed in range(6):
        s = generate_oct(seed, H, W, quality="good")
        assert s.meta["visible_fraction"] == 1.0
        assert s.meta["blur"] is None and s.meta["noise"] is None
        assert s.retina_mask.sum() > 0.98 * (s.layer_boundaries["BM"]
                                             - s.layer_boundaries["ILM"]).sum()


# -- bit depth and calibration ------------------------------------------------


def test_16_bit_matches_8_bit():
    a8 = generate_oct(6, H, W, quality="usable")
    a16 = generate_oct(6, H, W, quality="usable", bit_depth=16)
    assert a16.image.dtype == np.uint16 and a16.image.max() > 255
    diff = np.abs(a16.image.astype(np.float64) / 257.0 - a8.image)
    assert diff.max() <= 1.0 and diff.mean() < 0.3
    assert a8.labels == a16.labels
    assert a8.retina_mask.tobytes() == a16.retina_mask.tobytes()


def test_calibration_bscans():
    imgs = list(calibration_bscans(3, seed=5, height=128, width=256))
    again = list(calibration_bscans(3, seed=5, height=128, width=256))
    assert len(imgs) == 3
    assert all(i.shape == (128, 256) and i.dtype == np.uint8 for i in imgs)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(imgs, again, strict=True))
    assert imgs[0].tobytes() != imgs[1].tobytes()
