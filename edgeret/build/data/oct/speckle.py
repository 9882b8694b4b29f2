"""Speckle, detector noise and log-compressed display.

OCT intensity is ``I = R * S + N``: tissue reflectivity ``R`` times a
multiplicative, spatially correlated speckle field ``S`` (unit mean), plus a
noise floor ``N``. Devices display ``10 log10 I`` mapped linearly onto the
grey range between a low and a high dB value; :func:`display_to_linear`
inverts that mapping.

The speckle field comes from exponential (fully developed speckle intensity)
samples drawn at half resolution, smoothed a little (grain size, partial
averaging) and interpolated up; its contrast is then set in the log domain,
which keeps it multiplicative (``S ** p`` is still a unit-free factor).
"""

from __future__ import annotations

import cv2
import numpy as np

DB = 10.0 / np.log(10.0)  # natural log -> dB
INV_DB = np.log(10.0) / 10.0


def base_speckle(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Raw half-resolution exponential field (the random part of the speckle)."""
    return rng.standard_exponential(((height + 1) // 2, (width + 1) // 2), dtype=np.float32)


def speckle_db(
    base: np.ndarray, height: int, width: int, std_db: float,
    sigma_x: float = 0.55, sigma_y: float = 0.45, add_db: np.ndarray | None = None,
) -> np.ndarray:
    """Speckle in dB (zero mean, ``std_db`` spread), float32 (H, W).

    ``sigma_x``/``sigma_y`` (half-resolution pixels) set the grain size;
    defocus enlarges the lateral grain. ``add_db`` (half resolution) is
    another multiplicative factor (tissue texture) folded in before the
    upsampling.
    """
    e = cv2.GaussianBlur(base, (0, 0), sigma_x, sigmaY=sigma_y)
    np.maximum(e, 1e-6, out=e)
    cv2.log(e, e)
    mean, std = cv2.meanStdDev(e)
    e -= float(mean[0, 0])
    e *= float(std_db / max(std[0, 0], 1e-6))
    if add_db is not None:
        e += add_db
    return cv2.resize(e, (width, height), interpolation=cv2.INTER_LINEAR)


def floor_field(base: np.ndarray, height: int, width: int) -> np.ndarray:
    """Fine-grained detector-noise intensity (unit mean), float32 (H, W).

    Re-uses the speckle draw mirrored in both axes, which decorrelates it
    from the tissue speckle without spending more random numbers.
    """
    e = cv2.resize(base[::-1, ::-1], (width, height), interpolation=cv2.INTER_LINEAR)
    return e


def compose_db(
    level_db: np.ndarray, spk_db: np.ndarray, floor: np.ndarray, noise_floor_db: float = 0.0
) -> np.ndarray:
    """Total intensity in dB: ``10 log10(R * S + N * floor)``."""
    t = cv2.exp((level_db + spk_db) * np.float32(INV_DB))
    t += floor * np.float32(10.0 ** (noise_floor_db / 10.0))
    np.maximum(t, 1e-6, out=t)
    cv2.log(t, t)
    t *= np.float32(DB)
    return t


def to_display(total_db: np.ndarray, lo_db: float, hi_db: float, bit_depth: int) -> np.ndarray:
    """Log-compressed display: ``lo_db`` -> 0, ``hi_db`` -> full scale."""
    if bit_depth == 8:
        x = total_db * np.float32(255.0 / (hi_db - lo_db)) + np.float32(-lo_db * 255.0 / (hi_db - lo_db))
        np.maximum(x, 0.0, out=x)
        return cv2.convertScaleAbs(x)  # rounds and saturates at 255
    if bit_depth == 16:
        x = (total_db - np.float32(lo_db)) * np.float32(65535.0 / (hi_db - lo_db))
        np.clip(x, 0.0, 65535.0, out=x)
        x += 0.5
        return x.astype(np.uint16)
    raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")


def display_to_db(image: np.ndarray, lo_db: float, hi_db: float) -> np.ndarray:
    """Invert :func:`to_display` (up to clipping): grey value -> dB."""
    full = 65535.0 if image.dtype == np.uint16 else 255.0
    return lo_db + image.astype(np.float64) * ((hi_db - lo_db) / full)


def display_to_linear(image: np.ndarray, lo_db: float, hi_db: float) -> np.ndarray:
    """Invert :func:`to_display` to linear intensity (noise floor = 1)."""
    return 10.0 ** (display_to_db(image, lo_db, hi_db) / 10.0)
