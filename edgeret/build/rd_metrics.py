"""Rate-distortion curve arithmetic: Bjontegaard delta rate and compression ratio at a quality.

Pure functions over plain numbers, used by the codec benchmark and its tests. A
curve point is a dict with at least ``bpp``, ``cr`` (compression ratio) and a
quality key (``ms_ssim`` by default). MS-SSIM is compared in dB,
``-10 log10(1 - MS-SSIM)``, so the high-quality end is not squeezed against 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def msssim_db(value: float) -> float:
    """MS-SSIM on a dB scale (1e-10 floor keeps a perfect score finite)."""
    return -10.0 * math.log10(max(1e-10, 1.0 - value))


def msssim_from_db(db: float) -> float:
    return 1.0 - 10.0 ** (-db / 10.0)


def monotone(rates: Sequence[float], qualities: Sequence[float]) -> tuple[list[float], list[float]]:
    """Points sorted by rate, keeping only those that raise the quality (a usable curve)."""
    keep: list[tuple[float, float]] = []
    for r, q in sorted(zip(rates, qualities, strict=True)):
        if not keep or q > keep[-1][1] + 1e-9:
            keep.append((r, q))
    return [p[0] for p in keep], [p[1] for p in keep]


def bd_rate(anchor_rates: Sequence[float], anchor_q: Sequence[float],
            test_rates: Sequence[float], test_q: Sequence[float]) -> dict:
    """Bjontegaard delta rate (%), piecewise-cubic (PCHIP) log-rate over quality.

    Negative: the test codec needs that many percent fewer bits at equal quality,
    averaged over the quality interval both curves cover (``overlap``). PCHIP rather
    than the original cubic polynomial: it never overshoots between measured points.
    ``bd_rate`` is None, with a ``reason``, when a curve has fewer than two usable
    points or the curves share no quality interval.
    """
    from scipy.interpolate import PchipInterpolator

    ar, aq = monotone(anchor_rates, anchor_q)
    tr, tq = monotone(test_rates, test_q)
    if len(ar) < 2 or len(tr) < 2:
        return {"bd_rate": None, "reason": "fewer than two monotone points"}
    lo, hi = max(min(aq), min(tq)), min(max(aq), max(tq))
    if hi <= lo:
        return {"bd_rate": None, "reason": "quality ranges do not overlap"}
    anchor = PchipInterpolator(aq, np.log(ar))
    test = PchipInterpolator(tq, np.log(tr))
    mean_log_ratio = (test.integrate(lo, hi) - anchor.integrate(lo, hi)) / (hi - lo)
    return {"bd_rate": float((math.exp(mean_log_ratio) - 1) * 100), "overlap": [float(lo), float(hi)],
            "test_points": len(tr), "anchor_points": len(ar)}


def cr_at_quality(points: list[dict], threshold: float = 0.99, key: str = "ms_ssim") -> dict:
    """Highest compression ratio at which the mean quality is still >= threshold.

    Walks the curve from the lowest rate up and interpolates the first crossing
    linearly in log-rate (``how``: "interpolated"); when even the lowest rate
    passes, that point's CR is a lower bound (``how``: "lower bound"); when no
    point reaches the threshold, ``cr`` is None and ``best_ms_ssim`` / ``best_cr``
    say how close the curve came.
    """
    pts = sorted(points, key=lambda p: p["bpp"])
    if not pts:
        return {"cr": None, "how": "no points"}
    best = max(pts, key=lambda p: p[key])
    out = {"best_ms_ssim": best[key], "best_cr": best["cr"]}
    if pts[0][key] >= threshold:
        return {"cr": pts[0]["cr"], "how": "lower bound", **out}
    for a, b in zip(pts, pts[1:], strict=False):
        if a[key] < threshold <= b[key]:
            t = (threshold - a[key]) / (b[key] - a[key])
            bpp = math.exp(math.log(a["bpp"]) + t * (math.log(b["bpp"]) - math.log(a["bpp"])))
            return {"cr": a["cr"] * a["bpp"] / bpp, "how": "interpolated", **out}
    return {"cr": None, "how": "never reached", **out}


def quality_at_cr(points: list[dict], cr: float, key: str = "ms_ssim") -> float | None:
    """Mean quality at this compression ratio, interpolated linearly in log-rate (None outside the curve)."""
    pts = sorted(points, key=lambda p: p["cr"])
    for a, b in zip(pts, pts[1:], strict=False):
        if a["cr"] <= cr <= b["cr"]:
            t = (math.log(cr) - math.log(a["cr"])) / (math.log(b["cr"]) - math.log(a["cr"]))
            return a[key] + t * (b[key] - a[key])
    return None
