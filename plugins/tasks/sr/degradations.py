"""Realistic low-resolution models for sr training and evaluation (numpy + OpenCV, no torch).

Training (`random_degradation` + `apply`): a second-order-free version of the
Real-ESRGAN / BSRGAN recipe, kept mild because fundus cameras are not phones:

* blur: an isotropic or anisotropic Gaussian kernel (sigmas 0.2-1.8 px, random
  angle), or none, so that plain anti-aliased down-scaling is also covered;
* down-scaling by the scale with a random interpolator (area, i.e. box
  anti-aliasing; bilinear or bicubic after the blur);
* noise (40 %): Gaussian, colour or luminance-only, sigma 0.5-4 / 255, or
  Poisson-like (signal-dependent);
* JPEG (40 %) at quality 60-95; then 8-bit rounding, as a camera writes.

Those are the `STANDARD` ranges; `MILD` halves the noise and JPEG (20 % each,
sigma <= 2 / 255, quality >= 75) and caps the blur at sigma 1.6.

Evaluation (`EVAL_DEGRADATIONS`): two fixed kernels that none of the models
was trained on exactly: anti-aliased down-scaling (a Gaussian pre-filter of
sigma (s - 1) / 2 then area averaging, as scikit-image's `rescale(...,
anti_aliasing=True)`) and a Gaussian-blur kernel (sigma 1.2 px for ×2) then
area averaging.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

INTERPOLATORS = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


@dataclass(frozen=True)
class Degradation:
    sigma_x: float  # 0: no blur kernel
    sigma_y: float
    angle: float  # degrees
    resize: str  # key of INTERPOLATORS
    noise: str  # "", "gauss-colour", "gauss-luma", "poisson"
    noise_level: float  # Gaussian sigma /255, or Poisson scale (photons per unit)
    jpeg: int  # 0: none, else the quality


@dataclass(frozen=True)
class Ranges:
    """How hard `random_degradation` degrades (probabilities and parameter ranges)."""

    sigma: tuple[float, float] = (0.2, 1.8)  # Gaussian kernel sigmas, px
    noise_p: float = 0.4
    noise_sigma: tuple[float, float] = (0.5, 4.0)  # /255
    poisson_scale: tuple[float, float] = (500.0, 5000.0)  # photons per unit of signal
    jpeg_p: float = 0.4
    jpeg_quality: tuple[int, int] = (60, 95)


STANDARD = Ranges()
# Cross-validation on real photographs (tools/cv_sr_real.py) preferred milder noise and JPEG: a
# 5 k-parameter model that cannot tell noise from detail learns to sharpen less.
MILD = Ranges(sigma=(0.2, 1.6), noise_p=0.2, noise_sigma=(0.5, 2.0), poisson_scale=(4000.0, 16000.0),
             jpeg_p=0.2, jpeg_quality=(75, 95))
RANGES = {"standard": STANDARD, "mild": MILD}


def random_degradation(rng: np.random.Generator, ranges: Ranges = STANDARD) -> Degradation:
    kind = rng.random()
    lo, hi = ranges.sigma
    if kind < 0.2:  # anti-aliased resize only
        sx = sy = 0.0
    elif kind < 0.6:  # isotropic Gaussian
        sx = sy = float(rng.uniform(lo, hi))
    else:  # anisotropic Gaussian
        sx, sy = (float(v) for v in rng.uniform(lo, hi, 2))
    resize = str(rng.choice(list(INTERPOLATORS))) if sx > 0 else "area"
    noise, level = "", 0.0
    if rng.random() < ranges.noise_p:
        noise = str(rng.choice(["gauss-colour", "gauss-luma", "poisson"]))
        level = float(rng.uniform(*(ranges.noise_sigma if noise != "poisson" else ranges.poisson_scale)))
    q_lo, q_hi = ranges.jpeg_quality
    jpeg = int(rng.integers(q_lo, q_hi + 1)) if rng.random() < ranges.jpeg_p else 0
    return Degradation(sx, sy, float(rng.uniform(0, 180)), resize, noise, level, jpeg)


def gaussian_kernel(sigma_x: float, sigma_y: float, angle: float) -> np.ndarray:
    """A normalised (an)isotropic Gaussian kernel, odd size covering 3 sigma."""
    radius = max(1, int(np.ceil(3 * max(sigma_x, sigma_y))))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    xx, yy = np.meshgrid(t, t)
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (k / k.sum()).astype(np.float32)


def apply(hr: np.ndarray, scale: int, d: Degradation, rng: np.random.Generator) -> np.ndarray:
    """uint8 H×W×3 (H, W multiples of `scale`) -> the uint8 low-resolution image under `d`."""
    x = hr.astype(np.float32) / 255.0
    if d.sigma_x > 0:
        x = cv2.filter2D(x, -1, gaussian_kernel(d.sigma_x, d.sigma_y, d.angle),
                         borderType=cv2.BORDER_REFLECT_101)
    x = cv2.resize(x, (hr.shape[1] // scale, hr.shape[0] // scale), interpolation=INTERPOLATORS[d.resize])
    if d.noise == "gauss-colour":
        x = x + rng.normal(0.0, d.noise_level / 255.0, x.shape).astype(np.float32)
    elif d.noise == "gauss-luma":
        x = x + rng.normal(0.0, d.noise_level / 255.0, x.shape[:2] + (1,)).astype(np.float32)
    elif d.noise == "poisson":
        x = rng.poisson(np.clip(x, 0, 1) * d.noise_level).astype(np.float32) / d.noise_level
    lr = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if d.jpeg:
        ok, buf = cv2.imencode(".jpg", lr[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, d.jpeg])
        if ok:
            lr = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return lr


def _area(x: np.ndarray, scale: int) -> np.ndarray:
    return cv2.resize(x, (x.shape[1] // scale, x.shape[0] // scale), interpolation=cv2.INTER_AREA)


def antialiased(hr: np.ndarray, scale: int) -> np.ndarray:
    """Anti-aliased down-scaling (scikit-image's rule: Gaussian sigma (s - 1) / 2, then averaging)."""
    x = hr.astype(np.float32) / 255.0
    x = cv2.GaussianBlur(x, (0, 0), (scale - 1) / 2.0, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(_area(x, scale) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def gaussian_blur_kernel(hr: np.ndarray, scale: int) -> np.ndarray:
    """A Gaussian-blur kernel (sigma 0.6·s px: 1.2 for ×2) before the averaging down-scale."""
    x = hr.astype(np.float32) / 255.0
    x = cv2.GaussianBlur(x, (0, 0), 0.6 * scale, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(_area(x, scale) * 255.0 + 0.5, 0, 255).astype(np.uint8)


EVAL_DEGRADATIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "anti-aliased": antialiased, "gaussian-blur": gaussian_blur_kernel,
}
