"""Capture degradations with a severity in [0, 1], and the rule mapping them to quality.

Quality grades follow EyeQ (Fu et al., MICCAI 2019): *good* (no or negligible
problem), *usable* (some degradation but the main structures - disc, macula,
vessels - are visible and a grader could still work), *poor* / reject (lesions
cannot be judged). The fundus-quality paper (Kaggle DR quality labels) uses a
binary label; here ``gradable = quality != "poor"`` (good and usable are
gradable = 1, poor is ungradable = 0).

What each severity means physically (pixel sizes scale with the image), and the
rule's thresholds:

| degradation         | at severity v (sizes at 512 x 512)                    | usable from | poor from |
|---------------------|-------------------------------------------------------|-------------|-----------|
| defocus             | Gaussian blur, sigma = 6 v px                         | 0.15        | 0.50      |
| motion              | linear smear of 24 v px at a random angle             | 0.15        | 0.50      |
| uneven_illumination | one side min(125 v, 95) % darker, flare opposite      | 0.20        | 0.60      |
| underexposure       | gain 1 - 0.9 v, then gamma 1 + 0.8 v (dark)           | 0.20        | 0.55      |
| overexposure        | gain 1 + 2.2 v, clipped, washed 45 v % toward white   | 0.20        | 0.50      |
| haze                | cataract veil: 85 v % scattered light, blur 2 v px    | 0.20        | 0.55      |
| occlusion           | eyelid + lashes, band covering v/2 of the FOV height  | 0.15        | 0.45      |
| vignetting          | small pupil: dark ring closing in to radius 1 - 0.6 v | 0.20        | 0.55      |
| noise               | sensor noise, sigma = 0.2 v (0.25 + 0.75 signal)      | 0.15        | 0.60      |
| off_centre          | FOV shifted 0.6 v radii, partly out of the frame      | 0.20        | 0.55      |

Rule (:func:`quality_from_degradations`):

* **poor** if any severity >= its *poor from*; or two or more degradations are
  each >= 0.8 x their *poor from* (compound: each nearly disqualifying); or
  three or more are >= their *usable from*; or the capture is not a retina.
* **usable** otherwise, if any severity >= its *usable from*.
* **good** if every severity is below its *usable from* (negligible).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import cv2
import numpy as np

from .anatomy import gauss_noise

USABLE_FROM = {"defocus": 0.15, "motion": 0.15, "uneven_illumination": 0.2, "underexposure": 0.2,
               "overexposure": 0.2, "haze": 0.2, "occlusion": 0.15, "vignetting": 0.2,
               "noise": 0.15, "off_centre": 0.2}
POOR_FROM = {"defocus": 0.5, "motion": 0.5, "uneven_illumination": 0.6, "underexposure": 0.55,
             "overexposure": 0.5, "haze": 0.55, "occlusion": 0.45, "vignetting": 0.55,
             "noise": 0.6, "off_centre": 0.55}
DEGRADATIONS = tuple(POOR_FROM)
COMPOUND_FRACTION = 0.8
#: How often each degradation is the cause when a capture is degraded (screening experience:
#: blur, darkness, uneven light, cataract haze, lids/lashes and small pupils dominate).
PREVALENCE = {"defocus": 0.2, "motion": 0.06, "uneven_illumination": 0.13, "underexposure": 0.13,
              "overexposure": 0.05, "haze": 0.12, "occlusion": 0.1, "vignetting": 0.11,
              "noise": 0.04, "off_centre": 0.06}

#: Problems that can be present at a negligible level in a good image (a lid, a small
#: pupil or a framing error is either visible or absent, so good images have none).
SUBTLE = ("defocus", "motion", "uneven_illumination", "underexposure", "overexposure", "haze",
          "noise")


def quality_from_degradations(degradations: Mapping[str, float], nonretinal: bool = False) -> str:
    """The rule in the module docstring: severities -> "good" / "usable" / "poor"."""
    if nonretinal:
        return "poor"
    unknown = set(degradations) - set(POOR_FROM)
    if unknown:
        raise ValueError(f"unknown degradations: {sorted(unknown)}")
    if any(v >= POOR_FROM[k] for k, v in degradations.items()):
        return "poor"
    if sum(v >= COMPOUND_FRACTION * POOR_FROM[k] for k, v in degradations.items()) >= 2:
        return "poor"
    mild = sum(v >= USABLE_FROM[k] for k, v in degradations.items())
    if mild >= 3:
        return "poor"
    return "usable" if mild else "good"


def plan_degradations(rng: np.random.Generator, quality: str) -> dict[str, float]:
    """Severities aimed at `quality`, then checked against the rule (never assumed)."""
    names = list(PREVALENCE)
    p = np.array([PREVALENCE[k] for k in names])
    p = p / p.sum()
    for _ in range(100):
        plan = {"noise": float(rng.uniform(0.01, 0.08))}  # every sensor has a little
        if quality == "good":  # at most one more negligible, photometric/optical problem
            if rng.random() < 0.5:
                k = SUBTLE[int(rng.integers(len(SUBTLE)))]
                plan[k] = max(plan.get(k, 0.0), float(rng.uniform(0.02, 0.6 * USABLE_FROM[k])))
        elif quality == "usable":
            for k in rng.choice(names, 1 if rng.random() < 0.7 else 2, replace=False, p=p):
                hi = COMPOUND_FRACTION * POOR_FROM[k] - 0.02
                plan[str(k)] = float(rng.uniform(USABLE_FROM[k] + 0.03, hi))
        else:
            kinds = [str(k) for k in rng.choice(names, 2, replace=False, p=p)]
            if rng.random() < 0.8:  # one disqualifying problem, maybe a milder second one
                plan[kinds[0]] = float(rng.uniform(POOR_FROM[kinds[0]] + 0.05, 1.0))
                if rng.random() < 0.4:
                    plan[kinds[1]] = max(plan.get(kinds[1], 0.0),
                                         float(rng.uniform(0.05, POOR_FROM[kinds[1]] - 0.05)))
            else:  # compound: two problems, each nearly disqualifying
                for k in kinds:
                    plan[k] = float(rng.uniform(COMPOUND_FRACTION * POOR_FROM[k] + 0.01,
                                                POOR_FROM[k] - 0.01))
        plan = {k: round(v, 3) for k, v in plan.items()}
        if quality_from_degradations(plan) == quality:
            return plan
    raise AssertionError(f"could not plan degradations for {quality}")  # pragma: no cover


def _smooth(x: np.ndarray) -> np.ndarray:
    return x * x * (3.0 - 2.0 * x)


def apply_degradations(img: np.ndarray, fov: np.ndarray, plan: Mapping[str, float],
                       centre: tuple[float, float], radius: float,
                       rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
    """Apply `plan` to a float32 RGB image in [0, 1] (in a fixed physical order).

    Light path (pupil, lids, illumination, cataract), then optics (defocus,
    motion), the camera's sharp field stop, exposure, framing, sensor noise.
    Returns the new image and the integer (dx, dy) framing shift.
    """
    size = img.shape[0]
    s = size / 512
    cx, cy = centre
    c = np.arange(size, dtype=np.float32)
    xx, yy = c[None, :] - cx, c[:, None] - cy
    if (v := plan.get("vignetting", 0.0)) > 0.02:
        r = np.sqrt(xx * xx + yy * yy) / radius
        inner = 1.0 - 0.6 * v
        t = np.clip((r - inner) / (0.08 + 0.25 * v), 0.0, 1.0)
        img *= (1.0 - (0.35 + 0.62 * min(1.0, 1.6 * v)) * _smooth(t))[..., None]
    if (v := plan.get("occlusion", 0.0)) > 0.02:
        img = _occlude(img, v, cx, cy, radius, s, xx, yy, rng)
    if (v := plan.get("uneven_illumination", 0.0)) > 0.02:
        a = rng.uniform(0, 2 * np.pi)
        ramp = (xx * math.cos(a) + yy * math.sin(a)) / radius
        dark = min(0.95, 1.25 * v) * _smooth(np.clip(ramp * 0.6 + 0.4, 0.0, 1.0))
        flare = 0.35 * v * _smooth(np.clip(-ramp - 0.3, 0.0, 1.0))
        img *= (1.0 - dark + flare)[..., None]
    blurred = False
    if (v := plan.get("haze", 0.0)) > 0.02:
        q = max(8, size // 4)
        small = cv2.resize(img, (q, q), interpolation=cv2.INTER_AREA).mean(axis=2)
        light = cv2.resize(cv2.GaussianBlur(small, (0, 0), 5 * s), (size, size))
        veil = np.array([0.95, 0.80, 0.62], np.float32) * (0.35 + light)[..., None]
        img = _blur(img, 0.3 + 2.0 * v * s)
        a = 0.85 * v
        img = img * (1 - a) + veil * (a * fov[..., None])
        blurred = True
    if (v := plan.get("defocus", 0.0)) > 0.02:
        img = _blur(img, max(0.3, 6.0 * v * s))
        blurred = True
    if (v := plan.get("motion", 0.0)) > 0.02:
        img = _motion(img, 24 * v * s, rng.uniform(0, np.pi))
        blurred = True
    if blurred:
        img *= fov[..., None]  # the camera's field stop stays sharp
    if (v := plan.get("underexposure", 0.0)) > 0.02:
        img = cv2.pow(np.maximum(img, 0.0) * np.float32(1.0 - 0.9 * v), 1.0 + 0.8 * v)
    if (v := plan.get("overexposure", 0.0)) > 0.02:
        img = np.clip(img * (1.0 + 2.2 * v), 0.0, 1.0)
        img += (1.0 - img) * (0.45 * v * fov[..., None])
    shift = (0, 0)
    if (v := plan.get("off_centre", 0.0)) > 0.02:
        a = rng.uniform(0, 2 * np.pi)
        shift = (int(round(0.6 * v * radius * math.cos(a))), int(round(0.6 * v * radius * math.sin(a))))
        img = shift_image(img, *shift)
    if (v := plan.get("noise", 0.0)) > 0.0:
        sigma = 0.2 * v
        z = gauss_noise(rng, img.shape)
        # shot noise grows with the signal; read noise (dark frame) is a quarter of it
        scale = np.clip(img, 0.0, 1.0)
        scale *= np.float32(0.75 * sigma)
        scale += np.float32(0.25 * sigma)
        z *= scale
        img += z
    return img, shift


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide ones at half resolution (same look, a quarter of the work)."""
    if sigma <= 2.5:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    size = img.shape[1], img.shape[0]
    half = cv2.resize(img, (size[0] // 2, size[1] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(half, (0, 0), sigma / 2), size, interpolation=cv2.INTER_LINEAR)


def _motion(img: np.ndarray, length: float, angle: float) -> np.ndarray:
    """Linear motion smear of `length` px at `angle` (long ones at half resolution)."""
    if length > 9:
        size = img.shape[1], img.shape[0]
        half = cv2.resize(img, (size[0] // 2, size[1] // 2), interpolation=cv2.INTER_AREA)
        return cv2.resize(_motion(half, length / 2, angle), size, interpolation=cv2.INTER_LINEAR)
    n = max(3, int(round(length)) | 1)
    kernel = np.zeros((n, n), np.float32)
    h = (n - 1) / 2
    cv2.line(kernel, (round(h - h * math.cos(angle)), round(h - h * math.sin(angle))),
             (round(h + h * math.cos(angle)), round(h + h * math.sin(angle))), 1.0, 1, cv2.LINE_AA)
    return cv2.filter2D(img, -1, kernel / kernel.sum())


def shift_image(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Translate by whole pixels, filling with zeros (what falls off the sensor is lost)."""
    out = np.zeros_like(a)
    h, w = a.shape[:2]
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(dy, 0): h + min(dy, 0), max(dx, 0): w + min(dx, 0)] = \
        a[max(-dy, 0): h - max(dy, 0), max(-dx, 0): w - max(dx, 0)]
    return out


def _occlude(img, v, cx, cy, radius, s, xx, yy, rng) -> np.ndarray:
    """Upper (usually) or lower eyelid with lashes: a dark, out-of-focus band and strokes."""
    size = img.shape[0]
    top = rng.random() < 0.7
    reach = radius * v  # band depth from the FOV edge: v/2 of the FOV height
    sag = radius * rng.uniform(0.15, 0.35)
    edge = (yy + cy) - ((cy - radius + reach) + sag * (xx / radius) ** 2) if top else \
        ((cy + radius - reach) - sag * (xx / radius) ** 2) - (yy + cy)
    soft = 10.0 * s + 14.0 * s * rng.random()  # lids are far out of focus
    cover = np.clip(0.5 - edge / soft, 0.0, 1.0)
    lashes = np.zeros((size, size), np.uint8)
    for _ in range(int(40 * max(0.0, v - 0.08))):
        x0 = cx + rng.uniform(-0.9, 0.9) * radius
        y0 = ((cy - radius + reach) + sag * ((x0 - cx) / radius) ** 2) if top else \
            ((cy + radius - reach) - sag * ((x0 - cx) / radius) ** 2)
        length = rng.uniform(15, 45) * s
        ang = rng.normal(math.pi / 2 if top else -math.pi / 2, 0.4)
        pts = np.array([[x0, y0], [x0 + 0.5 * length * math.cos(ang) + rng.normal(0, 4 * s),
                                   y0 + 0.5 * length * math.sin(ang)],
                        [x0 + length * math.cos(ang), y0 + length * math.sin(ang)]])
        cv2.polylines(lashes, [np.round(pts * 8).astype(np.int32)], False, 255,
                      max(1, round(rng.uniform(2, 5) * s)), cv2.LINE_AA, 3)
    lash = cv2.GaussianBlur(lashes, (0, 0), 4.0 * s).astype(np.float32) * (0.8 / 255)
    cover = np.maximum(cover, lash)
    if rng.random() < 0.75:  # dark lid
        return img * (1.0 - 0.92 * cover)[..., None]
    lid = np.array([0.55, 0.45, 0.40], np.float32) * rng.uniform(0.5, 1.0)  # lit, greyish lid
    return img + (lid - img) * (0.85 * cover)[..., None]
