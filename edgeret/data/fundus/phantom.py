"""Fundus anatomy: FOV, background, optic disc and cup, macula/fovea, vessel tree.

Everything is drawn with OpenCV at the output size (vessels at 2x, then area-
downsampled so the thinnest branches end as 1-2 px lines with soft edges).
Coordinates are in pixels of the output; lengths are scaled by size / 512.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

SUPERSAMPLE = 2


@dataclass
class Anatomy:
    size: int
    center: tuple[float, float]
    radius: float
    disc: tuple[float, float]
    disc_radius: float
    fovea: tuple[float, float]
    side: int  # +1: disc on the right of the image (OD), -1: left (OS)
    rgb: np.ndarray  # float32 H×W×3 in [0, 1]
    fov_mask: np.ndarray
    vessel_mask: np.ndarray
    veins: list[np.ndarray] = field(default_factory=list)  # main vein polylines (for beading)


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    noise = rng.standard_normal((size, size)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    return noise / (noise.std() + 1e-6)


def _background(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    """Orange-red fundus colour, brighter centre, choroidal texture; d = distance / FOV radius."""
    size = d.shape[0]
    pigment = rng.uniform(0.8, 1.12)
    base = np.array([0.90, 0.40, 0.16], np.float32) * pigment
    base[1] *= rng.uniform(0.85, 1.15)
    falloff = np.clip(1.0 - 0.45 * d**2.4, 0.25, 1.0)
    # low-frequency choroid pattern made at 1/4 size (fast), plus fine grain
    coarse = cv2.resize(_smooth_noise(rng, size // 4, size / 180), (size, size),
                        interpolation=cv2.INTER_LINEAR)
    grain = rng.standard_normal((size, size), dtype=np.float32)
    choroid = 1.0 + 0.07 * coarse + 0.02 * grain
    return base[None, None, :] * (falloff * choroid)[..., None]


def _window(size: int, cx: float, cy: float, half: float) -> tuple[slice, slice, np.ndarray, np.ndarray]:
    """Slices and local coordinate grids of a square window around (cx, cy)."""
    y0, y1 = max(0, int(cy - half)), min(size, int(cy + half) + 1)
    x0, x1 = max(0, int(cx - half)), min(size, int(cx + half) + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return slice(y0, y1), slice(x0, x1), xx, yy


def _curve(points: np.ndarray, n: int) -> np.ndarray:
    """Smooth a few control points into an n-point polyline (Catmull-Rom-like)."""
    t = np.linspace(0, 1, len(points))
    ts = np.linspace(0, 1, n)
    return np.stack([np.interp(ts, t, points[:, 0]), np.interp(ts, t, points[:, 1])], 1)


def _walk(rng, start, angle, length, step, curl, fovea, faz) -> np.ndarray:
    """A vessel branch: a curving random walk that stops at the foveal avascular zone."""
    n = max(int(length / step), 1)
    angles = angle + np.cumsum(curl + rng.normal(0, 0.12, n))
    steps = step * np.stack([np.cos(angles), np.sin(angles)], 1)
    pts = np.vstack([np.asarray(start, np.float64)[None], np.asarray(start) + np.cumsum(steps, 0)])
    inside = np.hypot(pts[:, 0] - fovea[0], pts[:, 1] - fovea[1]) < faz
    if inside[1:].any():
        pts = pts[: int(np.argmax(inside[1:])) + 1]
    return pts.astype(np.float32)


def _draw_vessel(canvas, pts, width, scale):  # noqa: ARG001 - scale kept for clarity
    """Draw a tapering polyline (width in output px) on the supersampled canvas."""
    n = len(pts)
    if n < 2:
        return
    fixed = (np.asarray(pts) * (SUPERSAMPLE * 16)).astype(np.int64).tolist()
    # taper: draw in a few runs of equal thickness instead of per-segment calls
    runs = 4
    for r in range(runs):
        a, b = r * (n - 1) // runs, (r + 1) * (n - 1) // runs + 1
        if b - a < 2:
            continue
        w = width * (1 - 0.45 * a / n)
        cv2.polylines(canvas, [np.array(fixed[a:b], np.int32)], False, 1.0,
                      max(1, round(w * SUPERSAMPLE)), cv2.LINE_AA, shift=4)


def _vessel_tree(rng, size, disc, disc_r, fovea, side, radius, center):
    """Arteries and veins: four arcades plus nasal branches, each branching twice."""
    s = size / 512
    faz = 22 * s
    art = np.zeros((size * SUPERSAMPLE,) * 2, np.float32)
    vein = np.zeros_like(art)
    main_veins = []
    for kind, canvas, width0 in (("vein", vein, 6.5 * s), ("artery", art, 4.8 * s)):
        for vertical in (-1, 1):
            jitter = rng.normal(0, 6 * s, (4, 2))
            offset = 3 * s if kind == "artery" else -3 * s
            ctrl = np.array([
                [disc[0], disc[1] + vertical * disc_r * 0.3],
                [disc[0] - side * 40 * s, disc[1] + vertical * (70 * s + offset)],
                [fovea[0] + side * 20 * s, fovea[1] + vertical * (110 * s + offset)],
                [fovea[0] - side * 110 * s, fovea[1] + vertical * (120 * s + offset)],
                [fovea[0] - side * 200 * s, fovea[1] + vertical * (90 * s)],
            ], np.float32)
            ctrl[1:] += jitter
            arcade = _curve(ctrl, 60)
            _draw_vessel(canvas, arcade, width0, s)
            if kind == "vein":
                main_veins.append(arcade)
            for _ in range(rng.integers(5, 8)):  # branches off the arcade
                i = int(rng.integers(5, 55))
                base_angle = np.arctan2(*(arcade[min(i + 1, 59)] - arcade[i])[::-1])
                toward_macula = -vertical
                angle = base_angle + toward_macula * rng.uniform(0.5, 1.1) * (rng.random() < 0.5 or -1)
                branch = _walk(rng, arcade[i], angle, rng.uniform(60, 140) * s, 4 * s,
                               rng.normal(0, 0.02), fovea, faz)
                _draw_vessel(canvas, branch, width0 * 0.55, s)
                for _ in range(rng.integers(1, 3)):
                    if len(branch) < 6:
                        break
                    j = int(rng.integers(2, len(branch) - 2))
                    twig = _walk(rng, branch[j], angle + rng.uniform(-1.2, 1.2),
                                 rng.uniform(25, 70) * s, 3 * s, rng.normal(0, 0.04), fovea, faz)
                    _draw_vessel(canvas, twig, max(width0 * 0.3, 0.9 * s), s)
            # nasal vessels: straighter, toward the nasal rim
            nasal_dir = np.arctan2(vertical, side * 1.2)
            nasal = _walk(rng, (disc[0], disc[1] + vertical * disc_r * 0.4), nasal_dir,
                          rng.uniform(120, 200) * s, 4 * s, rng.normal(0, 0.01), fovea, faz)
            _draw_vessel(canvas, nasal, width0 * 0.65, s)
            for _ in range(rng.integers(2, 4)):
                j = int(rng.integers(2, max(3, len(nasal) - 2)))
                twig = _walk(rng, nasal[min(j, len(nasal) - 1)], nasal_dir + rng.uniform(-1, 1),
                             rng.uniform(30, 80) * s, 3 * s, rng.normal(0, 0.04), fovea, faz)
                _draw_vessel(canvas, twig, max(width0 * 0.3, 0.9 * s), s)
    down = (size, size)
    art = cv2.resize(art, down, interpolation=cv2.INTER_AREA)
    vein = cv2.resize(vein, down, interpolation=cv2.INTER_AREA)
    return np.clip(art, 0, 1), np.clip(vein, 0, 1), main_veins


def render_anatomy(rng: np.random.Generator, size: int, laterality: str) -> Anatomy:
    s = size / 512
    side = 1 if laterality == "OD" else -1
    center = (size / 2 + rng.normal(0, 4 * s), size / 2 + rng.normal(0, 4 * s))
    radius = size * rng.uniform(0.455, 0.47)
    disc_r = radius * rng.uniform(0.13, 0.155)
    disc = (center[0] + side * radius * rng.uniform(0.52, 0.62), center[1] + rng.normal(0, 10 * s))
    fovea = (disc[0] - side * 5.0 * disc_r * rng.uniform(0.92, 1.05), disc[1] + rng.uniform(0, 12) * s)
    yy, xx = np.ogrid[0:size, 0:size]
    dist = np.hypot(xx - np.float32(center[0]), yy - np.float32(center[1])).astype(np.float32)
    rgb = _background(rng, dist / radius)
    # macula: darker, more pigmented; fovea: small dark centre with a faint reflex
    ys, xs, wx, wy = _window(size, fovea[0], fovea[1], 3.5 * disc_r)
    dm = np.hypot(wx - fovea[0], wy - fovea[1])
    macula = 1 - 0.28 * np.exp(-(dm / (1.3 * disc_r)) ** 2) - 0.2 * np.exp(-(dm / (0.3 * disc_r)) ** 2)
    rgb[ys, xs] *= macula[..., None]
    rgb[ys, xs] += 0.12 * np.exp(-(dm / (1.2 * s)) ** 2)[..., None]
    # optic disc with a paler cup, soft rim
    ys, xs, wx, wy = _window(size, disc[0], disc[1], 1.3 * disc_r)
    dd = np.hypot(wx - disc[0], (wy - disc[1]) / 1.08)
    disc_alpha = (np.clip((disc_r - dd) / (2.5 * s) + 0.5, 0, 1) * 0.85)[..., None]
    disc_colour = np.array([0.96, 0.72, 0.45], np.float32) * rng.uniform(0.9, 1.05)
    rgb[ys, xs] = rgb[ys, xs] * (1 - disc_alpha) + disc_colour * disc_alpha
    cup_c = (disc[0] - side * disc_r * 0.12, disc[1])
    dc = np.hypot(wx - cup_c[0], wy - cup_c[1])
    cup_r = disc_r * rng.uniform(0.3, 0.5)
    cup_alpha = (np.clip((cup_r - dc) / (3 * s) + 0.5, 0, 1) * 0.7)[..., None]
    rgb[ys, xs] = rgb[ys, xs] * (1 - cup_alpha) + np.array([1.0, 0.9, 0.72], np.float32) * cup_alpha
    art, vein, main_veins = _vessel_tree(rng, size, disc, disc_r, np.array(fovea, np.float32), side,
                                         radius, center)
    art_col = np.array([0.78, 0.55, 0.55], np.float32)
    vein_col = np.array([0.55, 0.32, 0.38], np.float32)
    rgb *= 1 - art[..., None] * (1 - art_col)
    rgb *= 1 - vein[..., None] * (1 - vein_col)
    fov = dist <= radius
    rgb *= np.clip((radius - dist) / (1.5 * s), 0, 1)[..., None]
    return Anatomy(size, center, radius, disc, disc_r, fovea, side, rgb.astype(np.float32), fov,
                   (np.maximum(art, vein) > 0.3) & fov, main_veins)
