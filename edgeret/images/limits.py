"""Size limits every image reader enforces before it allocates pixels (raster and DICOM alike)."""

from __future__ import annotations

import math
from pathlib import Path

from edgeret.errors import InputError


def _limit_text(max_pixels: int) -> str:
    side = math.isqrt(max_pixels)
    return f"{side}x{side}" if side * side == max_pixels else f"{max_pixels}-pixel"


def check_dims(p: Path, w: int, h: int, max_pixels: int, frames: int = 1) -> None:
    """One-line :class:`InputError` naming ``p`` for an empty image or one over ``max_pixels``."""
    if w <= 0 or h <= 0:
        raise InputError(p, f"image is {w}x{h}")
    if w * h * frames > max_pixels:
        what = f"volume of {frames} frames {w}x{h}" if frames > 1 else f"image {w}x{h}"
        raise InputError(p, f"{what} exceeds the {_limit_text(max_pixels)} limit")
