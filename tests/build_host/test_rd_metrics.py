"""The benchmark's rate-distortion arithmetic on curves whose answer is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeret.build.rd_metrics import (
    bd_rate,
    cr_at_quality,
    monotone,
    msssim_db,
    msssim_from_db,
    quality_at_cr,
)

RATES = [0.05, 0.1, 0.2, 0.4, 0.8]
QUALITY = [30.0, 33.0, 35.5, 37.5, 39.0]  # concave, like a real codec's curve


def test_a_curve_against_itself_is_zero():
    assert bd_rate(RATES, QUALITY, RATES, QUALITY)["bd_rate"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.25, 3.0])
def test_a_curve_needing_a_constant_fraction_of_the_bits(factor):
    # same qualities at factor x the rate: exactly (factor - 1) x 100 % at every quality
    result = bd_rate(RATES, QUALITY, [r * factor for r in RATES], QUALITY)
    assert result["bd_rate"] == pytest.approx((factor - 1) * 100, rel=1e-9)
    assert result["overlap"] == [30.0, 39.0]


def test_only_the_overlapping_quality_range_counts():
    # both curves lie on one line (quality linear in log-rate, which PCHIP reproduces exactly) but
    # cover different ranges: no difference on the shared range 36..42, whatever lies outside it
    def line(rates):
        return [36.0 + 3.0 * math.log2(r / 0.2) for r in rates]

    anchor, test = [0.05, 0.1, 0.2, 0.4, 0.8], [0.2, 0.4, 0.8, 1.6, 3.2]
    result = bd_rate(anchor, line(anchor), test, line(test))
    assert result["overlap"] == pytest.approx([36.0, 42.0])
    assert result["bd_rate"] == pytest.approx(0.0, abs=1e-9)
    # the same test curve at 80 % of the bits: -20 % on the shared range only
    assert bd_rate(anchor, line(anchor), [r * 0.8 for r in test], line(test))["bd_rate"] == \
        pytest.approx(-20.0, rel=1e-9)


def test_the_sign_says_who_wins():
    better = bd_rate(RATES, QUALITY, RATES, [q + 1.0 for q in QUALITY])["bd_rate"]
    worse = bd_rate(RATES, QUALITY, RATES, [q - 1.0 for q in QUALITY])["bd_rate"]
    assert better < 0 < worse


def test_no_answer_when_curves_cannot_be_compared():
    assert bd_rate(RATES, QUALITY, [0.1, 0.2], [50.0, 52.0])["reason"] == "quality ranges do not overlap"
    assert bd_rate(RATES, QUALITY, [0.1], [33.0])["bd_rate"] is None


def test_points_that_lose_quality_with_more_bits_are_dropped():
    rates, qualities = monotone([0.4, 0.1, 0.2, 0.8], [35.0, 30.0, 36.0, 35.9])
    assert rates == [0.1, 0.2] and qualities == [30.0, 36.0]


def test_msssim_db_round_trips_and_is_finite_at_one():
    for v in (0.5, 0.9, 0.99, 0.9999):
        assert msssim_from_db(msssim_db(v)) == pytest.approx(v, abs=1e-12)
    assert msssim_db(0.99) == pytest.approx(20.0)
    assert math.isfinite(msssim_db(1.0))


def _points(bpps, qualities, bits_per_raw_pixel=8):
    return [{"bpp": b, "cr": bits_per_raw_pixel / b, "ms_ssim": q}
            for b, q in zip(bpps, qualities, strict=True)]


def test_compression_ratio_at_a_quality_interpolates_in_log_rate():
    pts = _points([0.1, 0.4], [0.98, 1.0])  # 0.99 is half way: bpp = sqrt(0.1 * 0.4) = 0.2
    result = cr_at_quality(pts, 0.99)
    assert result["how"] == "interpolated"
    assert result["cr"] == pytest.approx(8 / 0.2)


def test_compression_ratio_bounds_and_misses():
    assert cr_at_quality(_points([0.1, 0.4], [0.995, 0.999]), 0.99)["how"] == "lower bound"
    missed = cr_at_quality(_points([0.1, 0.4, 0.8], [0.9, 0.95, 0.97]), 0.99)
    assert missed["cr"] is None and missed["best_ms_ssim"] == 0.97 and missed["best_cr"] == 10.0


def test_quality_at_a_compression_ratio():
    pts = _points([0.1, 0.4], [0.9, 0.96])  # CR 80 and 20; CR 40 is half way in log-rate
    assert quality_at_cr(pts, 40.0) == pytest.approx(0.93)
    assert quality_at_cr(pts, 100.0) is None
    assert np.isclose(quality_at_cr(pts, 80.0), 0.9)
