"""Capture-quality degradations and the rule mapping them to good / usable / poor.

Each degradation has a severity in [0, 1]. The rule (EyeQ-like grades; the
fundus quality paper's binary label is gradable = not poor):

| degradation        | usable from | poor from | what it looks like at 1.0                     |
|--------------------|-------------|-----------|-----------------------------------------------|
| defocus            | 0.2         | 0.6       | Gaussian blur sigma 7 px (at 512): vessels gone |
| motion             | 0.2         | 0.6       | 24 px linear smear                            |
| uneven_illumination| 0.2         | 0.7       | half the field 85% darker                     |
| underexposure      | 0.2         | 0.6       | gain 0.12: near black                         |
| overexposure       | 0.2         | 0.6       | gain 3.5: washed out, saturated               |
| haze               | 0.2         | 0.6       | 85% veil (cataract), contrast lost            |
| occlusion          | 0.2         | 0.5       | eyelid covering 45% of the field + lashes     |
| vignetting         | 0.2         | 0.6       | small pupil: dark ring closing to 45% radius  |
| noise              | 0.2         | 0.7       | Gaussian sensor noise sigma 0.22              |
| off_centre         | 0.2         | 0.6       | field of view shifted 45% of its radius out   |

good: every severity < 0.2. poor: any severity at or above its poor threshold,
or two or more degradations each >= 0.45, or a non-retinal capture. usable:
otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

USABLE_FROM = 0.2
POOR_FROM = {"defocus": 0.6, "motion": 0.6, "uneven_illumination": 0.7, "underexposure": 0.6,
             "overexposure": 0.6, "haze": 0.6, "occlusion": 0.5, "vignetting": 0.6, "noise": 0.7,
             "off_centre": 0.6}
DEGRADATIONS = tuple(POOR_FROM)


def quality_from_degradations(degradations: Mapping[str, float], nonretinal: bool = False) -> str:
    """The documented rule above: degradation severities -> good / usable / poor."""
    if nonretinal:
        return "poor"
    unknown = set(degradations) - set(POOR_FROM)
    if unknown:
        raise ValueError(f"unknown degradations: {sorted(unknown)}")
    if any(v >= POOR_FROM[k] for k, v in degradations.items()):
        return "poor"
    if sum(v >= 0.45 for v in degradations.values()) >= 2:
        return "poor"
    if any(v >= USABLE_FROM for v in degradations.values()):
        return "usable"
    return "good"


def plan_degradations(rng: np.random.Generator, quality: str) -> dict[str, float]:
    """Severities that the rule maps to `quality` (checked, not assumed)."""
    for _ in range(100):
        if quality == "good":
            kinds = rng.choice(DEGRADATIONS, rng.integers(0, 2), replace=False)
            plan = {k: float(rng.uniform(0.02, 0.15)) for k in kinds}
        elif quality == "usable":
            kinds = rng.choice(DEGRADATIONS, rng.integers(1, 3), replace=False)
            plan = {k: float(rng.uniform(0.25, min(0.43, POOR_FROM[k] - 0.08))) for k in kinds}
        else:
            kinds = list(rng.choice(DEGRADATIONS, rng.integers(1, 3), replace=False))
            plan = {kinds[0]: float(rng.uniform(max(POOR_FROM[kinds[0]] + 0.1, 0.75), 1.0))}
            plan.update({k: float(rng.uniform(0.1, 0.4)) for k in kinds[1:]})
        if quality_from_degradations(plan) == quality:
            return plan
    raise AssertionError(f"could not plan degradations for {quality}")


def apply_degradations(rng: np.random.Generator, rgb: np.ndarray, plan: Mapping[str, float],
                       center: tuple[float, float], radius: float) -> np.ndarray:
    """Apply each planned degradation in a fixed physical order (optics, then sensor)."""
    size = rgb.shape[0]
    s = size / 512
    img = rgb.copy()
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if (v := plan.get("off_centre")) is not None:
        angle = rng.uniform(0, 2 * np.pi)
        shift = v * 0.45 * radius
        m = np.float32([[1, 0, shift * np.cos(angle)], [0, 1, shift * np.sin(angle)]])
        img = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
        center = (center[0] + m[0, 2], center[1] + m[1, 2])
    if (v := plan.get("vignetting")) is not None:
        d = np.hypot(xx - center[0], yy - center[1]) / radius
        inner = 1 - 0.55 * v
        img *= np.clip(1 - (d - inner) / 0.12, 0.02, 1)[..., None]
    if (v := plan.get("haze")) is not None:
        veil = np.array([0.75, 0.62, 0.5], np.float32)
        img = img * (1 - 0.85 * v) + veil * 0.85 * v * (img.mean(axis=2, keepdims=True) > 0.01)
    if (v := plan.get("uneven_illumination")) is not None:
        a = rng.uniform(0, 2 * np.pi)
        ramp = ((xx - center[0]) * np.cos(a) + (yy - center[1]) * np.sin(a)) / radius
        img *= np.clip(1 - 0.85 * v * np.clip(ramp, 0, 1), 0.05, 1)[..., None]
    if (v := plan.get("defocus")) is not None:
        img = cv2.GaussianBlur(img, (0, 0), 0.3 + 7 * v * s)
    if (v := plan.get("motion")) is not None:
        length = max(2, int(24 * v * s))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1 / length
        rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(0, 180), 1)
        kernel = cv2.warpAffine(kernel, rot, (length, length))
        img = cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6))
    if (v := plan.get("occlusion")) is not None:
        top = rng.random() < 0.6
        reach = 2 * radius * 0.45 * v
        edge = (center[1] - radius + reach) if top else (center[1] + radius - reach)
        bow = radius * 0.25 * (((xx - center[0]) / radius) ** 2)
        lid = (yy < edge + bow) if top else (yy > edge - bow)
        img[lid] *= 0.08
        for _ in range(int(12 * v)):  # eyelashes: dark curved strokes along the lid
            x0 = center[0] + rng.uniform(-0.8, 0.8) * radius
            y0 = edge + radius * 0.25 * ((x0 - center[0]) / radius) ** 2
            tip = (x0 + rng.normal(0, 10 * s), y0 + (1 if top else -1) * rng.uniform(15, 40) * s)
            pts = np.array([[x0, y0], tip])
            cv2.polylines(img, [(pts * 16).astype(np.int32)], False, (0.05, 0.03, 0.03),
                          max(1, round(2 * s)), cv2.LINE_AA, 4)
    if (v := plan.get("underexposure")) is not None:
        img = img * (1 - 0.88 * v)
    if (v := plan.get("overexposure")) is not None:
        img = np.clip(img * (1 + 2.5 * v) + 0.15 * v, 0, 1)
    if (v := plan.get("noise")) is not None:
        img = img + rng.normal(0, 0.22 * v, img.shape).astype(np.float32)
    return np.clip(img, 0, 1)


def nonretinal_capture(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    """A capture that is not a retina: blank white, dark frame, or some other scene."""
    kind = ("white", "dark", "scene")[int(rng.integers(0, 3))]
    if kind == "white":
        img = np.full((size, size, 3), rng.uniform(0.85, 1.0), np.float32)
        img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    elif kind == "dark":
        img = np.full((size, size, 3), rng.uniform(0.0, 0.04), np.float32)
        img += rng.normal(0, 0.015, img.shape).astype(np.float32)
    else:  # a room: gradient wall, furniture blocks, a lamp, some text
        yy = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
        wall = rng.uniform(0.3, 0.8, 3).astype(np.float32)
        img = (wall * (1 - 0.4 * yy)) * np.ones((size, size, 3), np.float32)
        for _ in range(int(rng.integers(3, 8))):
            x0, y0 = rng.integers(0, size, 2)
            w, h = rng.integers(size // 10, size // 3, 2)
            cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)),
                          tuple(float(c) for c in rng.uniform(0, 1, 3)), -1)
        lamp = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.circle(img, lamp, int(size // 12), (1.0, 0.95, 0.8), -1)
        sign = np.ascontiguousarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
        cv2.putText(sign, "EXIT", (int(size * 0.1), int(size * 0.9)), cv2.FONT_HERSHEY_SIMPLEX,
                    size / 300, (230, 25, 25), 2)  # OpenCV 5 draws text on 8-bit images only
        img = sign.astype(np.float32) / 255
    return np.clip(img, 0, 1), kind
