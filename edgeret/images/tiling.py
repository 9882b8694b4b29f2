"""Run an image-to-image model over a large image in overlapping tiles, without seams.

Pure numpy; works with any runner (ONNX Runtime, OpenVINO, LiteRT, torch, a
plain function). A tile's output is trusted only away from its edges: the
first ``halo`` pixels next to a neighbouring tile are dropped (there the model
saw zero padding instead of the neighbour's pixels), and the next ``blend``
pixels fade out with a raised-cosine ramp while the neighbour fades in. The
two ramps sum to one, so where both tiles agree (a model whose receptive
field fits in the halo) the tiled result equals the whole-image result, and
where they do not, the change is spread smoothly over ``blend`` pixels
instead of forming a seam. Image borders keep full weight (no neighbour).

>>> out = run_tiled(x, lambda t: model(t), tile=512, halo=16, blend=16, scale=2)

``x`` is C×H×W float32; ``fn`` maps a 1×C×h×w tile to 1×C'×(h·scale)×(w·scale).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

TileFn = Callable[[np.ndarray], np.ndarray]
# Largest result the image-to-image tasks produce (40 megapixels: a 6324x6324 image): the
# tiled result is blended in float32 buffers of this size (~0.6 GB for RGB).
MAX_OUTPUT_PIXELS = 40_000_000


def check_output_size(height: int, width: int, what: str) -> None:
    """InputError (naming `what`) if an H×W result exceeds MAX_OUTPUT_PIXELS."""
    if height * width > MAX_OUTPUT_PIXELS:
        from edgeret.errors import InputError
        from edgeret.images.read_write import ARRAY

        raise InputError(ARRAY, f"{what} would be {width}x{height} ({height * width / 1e6:.0f} MP), more "
                                f"than the {MAX_OUTPUT_PIXELS // 1_000_000} MP limit; crop or split it first")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length), neighbours overlapping >= `overlap`.

    Tiles are spread evenly, so every overlap is at least `overlap` and the last
    tile ends exactly at `length`.
    """
    if tile <= overlap:
        raise ValueError(f"tile ({tile}) must be larger than the overlap ({overlap})")
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return sorted({round(i * (length - tile) / (count - 1)) for i in range(count)})


def _ramp(n: int, first: bool, last: bool, halo: int, blend: int) -> np.ndarray:
    """1-D weights of one tile along one axis (output resolution)."""
    w = np.ones(n, np.float64)
    t = (np.arange(blend, dtype=np.float64) + 0.5) / max(blend, 1)
    up = np.sin(0.5 * np.pi * t) ** 2  # rises 0 -> 1; its mirror falls; the two sum to 1
    if not first:
        w[:halo] = 0.0
        w[halo:halo + blend] = up
    if not last:
        w[n - halo:] = 0.0
        w[n - halo - blend:n - halo] = up[::-1]
    return w


def run_tiled(
    image: np.ndarray,
    fn: TileFn,
    *,
    tile: int | tuple[int, int] = 512,
    halo: int = 16,
    blend: int = 16,
    scale: int = 1,
) -> np.ndarray:
    """Apply `fn` to `image` (C×H×W) tile by tile and blend; returns C'×(H·scale)×(W·scale) float32.

    `tile` is a side or (height, width). Neighbouring tiles overlap by at least
    ``2 * halo + blend`` input pixels. An image that fits in one tile is passed
    to `fn` whole; an image at least as large as the tile is cut into tiles of
    exactly that size (what a fixed-size exported model needs). Memory: two
    float32 buffers of the output's size (C' planes and the weights).
    """
    if image.ndim != 3:
        raise ValueError(f"run_tiled expects C×H×W, got shape {image.shape}")
    if halo < 0 or blend < 1:
        raise ValueError("halo must be >= 0 and blend >= 1")
    _, height, width = image.shape
    overlap = 2 * halo + blend
    tile_h, tile_w = (tile, tile) if isinstance(tile, int) else (int(tile[0]), int(tile[1]))
    if min(tile_h, tile_w) < 2 * (halo + blend) + 1:
        raise ValueError(f"tile ({tile}) must exceed 2*(halo+blend) ({2 * (halo + blend)})")
    if height <= tile_h and width <= tile_w:
        return _call(fn, image, scale)
    ys, xs = tile_starts(height, tile_h, overlap), tile_starts(width, tile_w, overlap)
    out: np.ndarray | None = None
    weight = np.zeros((height * scale, width * scale), np.float32)
    for i, y in enumerate(ys):
        th = min(tile_h, height)
        wy = _ramp(th * scale, i == 0, i == len(ys) - 1, halo * scale, blend * scale)
        for j, x in enumerate(xs):
            tw = min(tile_w, width)
            wx = _ramp(tw * scale, j == 0, j == len(xs) - 1, halo * scale, blend * scale)
            result = _call(fn, image[:, y:y + th, x:x + tw], scale)
            if out is None:
                out = np.zeros((result.shape[0], height * scale, width * scale), np.float32)
            w2 = (wy[:, None] * wx[None, :]).astype(np.float32)
            oy, ox = y * scale, x * scale
            out[:, oy:oy + th * scale, ox:ox + tw * scale] += result * w2
            weight[oy:oy + th * scale, ox:ox + tw * scale] += w2
    assert out is not None
    if (weight <= 0).any():  # cannot happen with the overlap above; guard against future edits
        raise AssertionError("tiling left pixels without weight")
    out /= weight
    return out


def _call(fn: TileFn, tile: np.ndarray, scale: int) -> np.ndarray:
    result = np.asarray(fn(np.ascontiguousarray(tile[None], dtype=np.float32)))
    if result.ndim == 4:
        result = result[0]
    h, w = tile.shape[1:]
    if result.ndim != 3 or result.shape[1:] != (h * scale, w * scale):
        raise ValueError(f"tile function returned shape {result.shape} for a {h}x{w} tile "
                         f"(expected C×{h * scale}×{w * scale})")
    return result


# --- image <-> planes, shared by the image-to-image tasks (denoise, sr) ---------------------

def to_planes(image: np.ndarray) -> np.ndarray:
    """uint8/uint16 H×W or H×W×C -> C×H×W float32 in [0, 1] (16-bit is divided by 65535)."""
    arr = np.asarray(image)
    scale = 255.0 if arr.dtype == np.uint8 else 65535.0
    planes = arr[None] if arr.ndim == 2 else np.moveaxis(arr, 2, 0)
    return np.ascontiguousarray(planes, dtype=np.float32) * np.float32(1.0 / scale)


def from_planes(planes: np.ndarray, dtype: np.dtype | type = np.uint8) -> np.ndarray:
    """C×H×W floats in [0, 1] -> H×W (C = 1) or H×W×C integers of `dtype`, rounded and clipped."""
    top = 255.0 if np.dtype(dtype) == np.uint8 else 65535.0
    values = np.clip(planes, 0.0, 1.0) * np.float32(top) + np.float32(0.5)
    out = values[0] if values.shape[0] == 1 else np.moveaxis(values, 0, 2)
    return np.ascontiguousarray(out).astype(dtype)


def pad_to_multiple(planes: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad C×H×W at the bottom/right so H and W are multiples; returns (padded, (H, W))."""
    _, height, width = planes.shape
    ph, pw = (-height) % multiple, (-width) % multiple
    if ph or pw:
        mode = "reflect" if min(height, width) > max(ph, pw) else "edge"
        planes = np.pad(planes, ((0, 0), (0, ph), (0, pw)), mode=mode)
    return planes, (height, width)


def pad_to_at_least(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad an H×W(×C) image at the bottom/right to at least height×width."""
    ph, pw = max(0, height - image.shape[0]), max(0, width - image.shape[1])
    if not (ph or pw):
        return image
    mode = "reflect" if min(image.shape[:2]) > max(ph, pw) else "symmetric"
    pad = ((0, ph), (0, pw)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, pad, mode=mode)
