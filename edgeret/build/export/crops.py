"""Fixed-size crops for image-to-image tasks exported at a device's input size.

An image-to-image model (denoise, denoise-oct) ships with the static tile size
of the device profile and runs on any image through `edgeret.images.tiling` (a
B-scan of 900×450, 1408×573 or 1024×640 is cut into overlapping tiles of that
size). Its INT8 calibration and held-out gate set must therefore be tiles of
that size too, cut from whole images: not resized (resampling changes the
noise the model is calibrated on), and not the whole image (the shapes would
not match). `fit_to_size` picks, among a few seeded candidate windows, the one
with the most structure (highest standard deviation), so a B-scan's crop
holds retina rather than the black vitreous; images smaller than the tile
are reflect-padded, as the tiled runtime pads them.
"""

from __future__ import annotations

import numpy as np

from edgeret.images.tiling import pad_to_at_least
from edgeret.plugin.registrations import TaskPlugin

CANDIDATES = 8  # seeded windows compared per image


def fixed_tile_size(task: TaskPlugin) -> tuple[int, int] | None:
    """(H, W) when `task` maps an image to an image of the same static size, else None.

    Classifiers and the codec resize or encode in their own preprocessing; only the
    restoration tasks sized by a device profile take fixed crops."""
    first = task.inputs[0]
    if len(first.shape) != 4 or not all(isinstance(d, int) for d in first.shape[2:]):
        return None
    for spec in task.outputs:
        if len(spec.shape) == 4 and tuple(spec.shape[2:]) == tuple(first.shape[2:]) and not task.labels:
            return int(first.shape[2]), int(first.shape[3])
    return None


def fit_to_size(image: np.ndarray, size: tuple[int, int], seed: int) -> np.ndarray:
    """A size[0]×size[1] window of `image` (H×W or H×W×C): the most structured of a few seeded
    candidates; smaller images are reflect-padded first."""
    height, width = size
    image = pad_to_at_least(np.asarray(image), height, width)
    if image.shape[:2] == (height, width):
        return image
    rng = np.random.default_rng(seed)
    best, best_score = None, -1.0
    for _ in range(CANDIDATES):
        y = int(rng.integers(0, image.shape[0] - height + 1))
        x = int(rng.integers(0, image.shape[1] - width + 1))
        window = image[y:y + height, x:x + width]
        score = float(window[::4, ::4].std())
        if score > best_score:
            best, best_score = window, score
    assert best is not None
    return np.ascontiguousarray(best)
