"""Grey images saved as colour: how OCT viewers export B-scans (RGB JPEG, a few coloured marker pixels).

A B-scan exported by a clinical viewer is grey, stored as three channels, with small coloured overlays
(a scan line, a caliper, a text label) and JPEG chroma noise. Such an image is converted to one
channel with a note; an image with real colour (a fundus photograph: over half of its pixels have
channels more than a few levels apart) is still refused by the caller.
"""

from __future__ import annotations

import logging

import numpy as np

# Measured on 160 real clinical B-scan exports (1408x573 RGB JPEG): at most 0.03 % of pixels have
# channels more than 8 levels apart; on real colour fundus photographs 30-99 %. 1 % sits between.
CHROMA_LEVELS = 8
MAX_COLOURED_FRACTION = 0.01
log = logging.getLogger("edgeret.images")


def coloured_fraction(rgb: np.ndarray) -> float:
    """Share of pixels whose channels differ by more than CHROMA_LEVELS (8-bit scale)."""
    step = 257 if rgb.dtype == np.uint16 else 1
    spread = rgb.max(axis=2).astype(np.int32) - rgb.min(axis=2)
    return float(np.count_nonzero(spread > CHROMA_LEVELS * step)) / spread.size


def as_grey(rgb: np.ndarray, source: object) -> np.ndarray | None:
    """(H, W, 3) -> (H, W) when the image is grey stored as colour, else None.

    Identical channels are taken as they are; otherwise, when at most MAX_COLOURED_FRACTION of the
    pixels are coloured, each pixel becomes the median of its channels (a pure-colour marker turns
    dark-to-mid grey rather than bright) and a one-line note is logged naming ``source``.
    """
    first = rgb[..., 0]
    if np.array_equal(first, rgb[..., 1]) and np.array_equal(first, rgb[..., 2]):
        return np.ascontiguousarray(first)
    fraction = coloured_fraction(rgb)
    if fraction > MAX_COLOURED_FRACTION:
        return None
    log.warning("%s: grey image stored as colour (%.2f %% coloured pixels: markers or text); "
                "converted to one channel", source, 100 * fraction)
    return np.ascontiguousarray(np.median(rgb, axis=2).astype(rgb.dtype))
