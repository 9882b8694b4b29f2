"""Capture failures applied to real fundus photographs: real-based "poor" examples (build host).

Real quality labels are few (DRIMDB: 45 bad, 17 outliers); real photographs made ungradable the
way cameras fail give the quality models poor examples with real anatomy and real colour. Each
degradation works on a field-of-view crop in [0, 1] (black outside the FOV, as preprocessing makes
it) and is strong enough that a grader could not grade DR on the result: the documented rule is
"a reader could not see microaneurysms or the vessel arcades' second branches". Strengths below are
in fractions of the crop's side so they hold at any input size.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Image = np.ndarray  # H x W x 3 float32 in [0, 1]


def _mask(img: Image) -> np.ndarray:
    return (img.max(axis=2) > 0.0)[..., None]


def defocus(img: Image, rng: np.random.Generator) -> Image:
    sigma = rng.uniform(0.012, 0.03) * img.shape[0]  # 12-30 px on a 1000-px photograph
    return cv2.GaussianBlur(img, (0, 0), sigma) * _mask(img)


def motion(img: Image, rng: np.random.Generator) -> Image:
    length = max(3, int(rng.uniform(0.03, 0.07) * img.shape[0]))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2] = 1.0 / length
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    kernel /= max(kernel.sum(), 1e-6)
    return cv2.filter2D(img, -1, kernel) * _mask(img)


def haze(img: Image, rng: np.random.Generator) -> Image:
    """Cataract / media opacity: a milky veil that lowers contrast, plus blur."""
    alpha = rng.uniform(0.55, 0.8)
    veil = np.array(rng.uniform([0.6, 0.45, 0.3], [0.9, 0.75, 0.6]), np.float32)
    blurred = cv2.GaussianBlur(img, (0, 0), 0.006 * img.shape[0])
    return ((1 - alpha) * blurred + alpha * veil) * _mask(img)


def underexposed(img: Image, rng: np.random.Generator) -> Image:
    dark = img * rng.uniform(0.06, 0.18)
    noise = rng.normal(0, 0.01, img.shape).astype(np.float32)
    return np.clip(np.round((dark + noise) * 255) / 255, 0, 1) * _mask(img)


def overexposed(img: Image, rng: np.random.Generator) -> Image:
    return np.clip(img * rng.uniform(2.8, 4.5) + rng.uniform(0.1, 0.3), 0, 1) * _mask(img)


def uneven(img: Image, rng: np.random.Generator) -> Image:
    """Uneven illumination: a large part of the field in deep shadow (misaligned camera)."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xx / w - 0.5) + np.sin(angle) * (yy / h - 0.5)) * rng.uniform(4, 8)
    gain = 1.0 / (1.0 + np.exp(-ramp))  # dark on one side, normal on the other
    return img * gain[..., None] * 0.9


def lid_shadow(img: Image, rng: np.random.Generator) -> Image:
    """Eyelid / eyelashes: the top or bottom 35-60 % of the field dark, with lash streaks."""
    h, w = img.shape[:2]
    cut = int(rng.uniform(0.35, 0.6) * h)
    shade = np.ones((h, w), np.float32)
    shade[:cut] = rng.uniform(0.02, 0.12)
    for _ in range(int(rng.integers(6, 14))):
        x = int(rng.integers(0, w))
        end = (x + int(rng.integers(-w // 8, w // 8)), cut + int(rng.uniform(0.05, 0.2) * h))
        cv2.line(shade, (x, cut), end, 0.05, max(1, w // 100))
    shade = cv2.GaussianBlur(shade, (0, 0), 0.01 * h)
    if rng.random() < 0.5:
        shade = shade[::-1]
    return img * shade[..., None]


def off_centre(img: Image, rng: np.random.Generator) -> Image:
    """Small pupil or the eye moved: only a small, displaced part of the field lit."""
    h, w = img.shape[:2]
    radius = rng.uniform(0.18, 0.3) * h
    cx = w / 2 + rng.uniform(-0.3, 0.3) * w
    cy = h / 2 + rng.uniform(-0.3, 0.3) * h
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    lit = np.clip((radius - np.hypot(xx - cx, yy - cy)) / (0.05 * h), 0, 1)
    return img * (0.03 + 0.97 * lit)[..., None]


DEGRADATIONS: dict[str, Callable[[Image, np.random.Generator], Image]] = {
    "defocus": defocus, "motion": motion, "haze": haze, "underexposed": underexposed,
    "overexposed": overexposed, "uneven": uneven, "lid_shadow": lid_shadow, "off_centre": off_centre,
}


def degrade(img: Image, rng: np.random.Generator) -> tuple[Image, str]:
    """One random capture failure (two at once one time in four): (image, names joined by '+')."""
    names = list(rng.choice(list(DEGRADATIONS), size=2 if rng.random() < 0.25 else 1, replace=False))
    out = img.astype(np.float32)
    for name in names:
        out = DEGRADATIONS[name](out, rng).astype(np.float32)
    return np.clip(out, 0.0, 1.0), "+".join(names)
