"""Half-resolution coding of oversampled images: pure numpy, no torch, same on every machine.

Many cameras sample finer than their optics resolve: ``skimage.data.retina()``
(1411x1411) loses almost nothing when it is halved and doubled again (49 dB),
while the codec's own error at its low rate points is 30-36 dB. For such an
image, coding it at half resolution and doubling it at the hub spends about a
third of the bits for better quality at those rates (``benchmarks/codec.md``).

The device decides per image and rate point (:func:`coded_scale`): half when the
model allows it at that rate point (its manifest's ``half_scale_through``, set
from measurements on up-sampled phantoms and photographs, never the benchmark's
retina) and the image is *oversampled*: halving and doubling it costs less than
:data:`OVERSAMPLED_DB` PSNR. The stream's header records the factor; the hub
decodes the half-size image and doubles it with :func:`upscale2`.

Both resamplers are exact-arithmetic numpy: :func:`downscale2` averages 2x2
blocks in integers, :func:`upscale2` is Keys' cubic (a = -0.5) at the two
phases a box-halved image needs, with weights that are multiples of 1/128.
"""

from __future__ import annotations

import math

import numpy as np

OVERSAMPLED_DB = 45.0  # halving + doubling must cost less than this (PSNR) for half-scale coding

# Keys' cubic, a = -0.5, for output pixels a quarter low-res pixel before / after a low-res centre
_EVEN = (-0.0234375, 0.2265625, 0.8671875, -0.0703125)  # taps i-2 .. i+1
_ODD = _EVEN[::-1]  # taps i-1 .. i+2


def coded_size(height: int, width: int, scale: int) -> tuple[int, int]:
    """The size the encoder sees for an image of ``height`` x ``width`` coded at ``scale``."""
    return math.ceil(height / scale), math.ceil(width / scale)


def downscale2(image: np.ndarray) -> np.ndarray:
    """Average 2x2 blocks (odd sides: the last row / column repeated), rounded half up; same dtype."""
    x = image.astype(np.int64)
    if x.shape[0] % 2:
        x = np.concatenate([x, x[-1:]], 0)
    if x.shape[1] % 2:
        x = np.concatenate([x, x[:, -1:]], 1)
    s = x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]
    return ((s + 2) // 4).astype(image.dtype)


def _up_axis(x: np.ndarray, axis: int) -> np.ndarray:
    """Double ``axis`` (0 or 1) of a float array: even outputs from taps i-2..i+1, odd from i-1..i+2."""
    if axis == 1:
        return _up_axis(x.swapaxes(0, 1), 0).swapaxes(0, 1)
    n = x.shape[0]
    p = np.concatenate([x[:1], x[:1], x, x[-1:], x[-1:]], 0)  # two edge rows repeated each side
    even = _EVEN[0] * p[0:n] + _EVEN[1] * p[1:n + 1] + _EVEN[2] * p[2:n + 2] + _EVEN[3] * p[3:n + 3]
    odd = _ODD[0] * p[1:n + 1] + _ODD[1] * p[2:n + 2] + _ODD[2] * p[3:n + 3] + _ODD[3] * p[4:n + 4]
    return np.stack([even, odd], 1).reshape(2 * n, *x.shape[1:])


def upscale2(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Double a half-size image (as :func:`downscale2` made it) and crop to ``height`` x ``width``."""
    peak = 255 if image.dtype == np.uint8 else 65535
    x = _up_axis(_up_axis(image.astype(np.float64), 0), 1)[:height, :width]
    return np.clip(np.rint(x), 0, peak).astype(image.dtype)


def resample_psnr(image: np.ndarray) -> float:
    """PSNR (dB) of the image's brightness (mean over channels) halved and doubled against itself.

    High = oversampled. Brightness only and float32, to keep the test a few ms on a camera: a
    colour camera's chroma is never sharper than its brightness."""
    peak = 255.0 if image.dtype == np.uint8 else 65535.0
    x = image.astype(np.float32)
    if x.ndim == 3:
        x = x.mean(axis=2)
    h, w = x.shape
    x = x[: h - h % 2, : w - w % 2]
    half = (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]) * np.float32(0.25)
    back = _up_axis(_up_axis(half, 0), 1)
    mse = float(np.mean(np.square(back - x, dtype=np.float32), dtype=np.float64))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def coded_scale(image: np.ndarray, rate_allows_half: bool, request: str | int = "auto") -> int:
    """1 or 2: ``request`` 1 or 2 forces it; "auto" halves an oversampled image where the rate allows."""
    if request in (1, 2, "1", "2"):
        return int(request)
    if request != "auto":
        raise ValueError(f"scale must be auto, 1 or 2, got {request!r}")
    if not rate_allows_half or min(image.shape[:2]) < 64:
        return 1
    return 2 if resample_psnr(image) >= OVERSAMPLED_DB else 1
