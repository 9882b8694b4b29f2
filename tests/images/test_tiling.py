"""edgeret.images.tiling: overlapping tiles with smooth blending, no seams (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeret.images.tiling import from_planes, pad_to_multiple, run_tiled, tile_starts, to_planes


def box_filter(radius: int):
    """A local operator with a known receptive field (zero padding, like a conv net)."""
    def fn(x: np.ndarray) -> np.ndarray:
        k = 2 * radius + 1
        p = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (radius, radius), (radius, radius)))
        c = p.cumsum(2).cumsum(3)
        c = np.pad(c, ((0, 0), (0, 0), (1, 0), (1, 0)))
        return (c[..., k:, k:] - c[..., :-k, k:] - c[..., k:, :-k] + c[..., :-k, :-k]) / (k * k)
    return fn


def upsample2(x: np.ndarray) -> np.ndarray:
    return box_filter(2)(x).repeat(2, axis=2).repeat(2, axis=3)


def image(h=300, w=420, c=3, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = 0.5 + 0.4 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    return (smooth[None] + 0.05 * rng.standard_normal((c, h, w))).astype(np.float32)


@pytest.mark.parametrize("length,tile,overlap", [(1000, 256, 48), (256, 256, 48), (257, 256, 48),
                                                 (100, 256, 48), (4097, 512, 40)])
def test_tile_starts_cover_with_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0
    assert starts[-1] + min(tile, length) == max(length, min(tile, length))
    for a, b in zip(starts, starts[1:], strict=False):
        assert a + tile - b >= overlap


def test_small_image_is_one_call():
    calls = []
    x = image(64, 80)
    out = run_tiled(x, lambda t: calls.append(t.shape) or t, tile=128, halo=8, blend=8)
    assert calls == [(1, 3, 64, 80)] and np.array_equal(out, x)


def test_tiled_equals_whole_away_from_borders():
    """A receptive field inside the halo: tiles reproduce the whole-image result exactly."""
    x = image()
    fn = box_filter(5)
    whole = fn(x[None])[0]
    tiled = run_tiled(x, fn, tile=96, halo=8, blend=8)
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).max() < 1e-5


def test_tiled_scale_2_equals_whole():
    x = image(130, 170)
    whole = upsample2(x[None])[0]
    tiled = run_tiled(x, upsample2, tile=64, halo=4, blend=6, scale=2)
    assert tiled.shape == (3, 260, 340)
    assert np.abs(tiled - whole).max() < 1e-5


def seam_ratio(out: np.ndarray, columns: list[int]) -> float:
    """Gradient energy across the given columns vs the median over all columns."""
    g = np.abs(np.diff(out, axis=2)).mean(axis=(0, 1))  # per column boundary
    return float(max(g[c - 1] for c in columns) / np.median(g))


def test_no_seam_even_when_the_model_sees_too_little():
    """A receptive field LARGER than the halo makes tiles disagree; blending must hide it.

    Naive abutting tiles leave a visible step at each tile boundary; ours spread the
    disagreement over the blend zone, so the gradient energy at tile boundaries
    stays at the level of the rest of the image.
    """
    h, w = 128, 512
    yy, xx = np.mgrid[0:h, 0:w]
    x = (0.5 + 0.3 * np.sin(xx / 9.0) + 0.1 * np.cos(yy / 7.0))[None].astype(np.float32)
    fn = box_filter(20)  # sees 20 px; the halo below is 4
    tile = 128
    naive = np.concatenate([fn(x[None, :, :, i:i + tile])[0] for i in range(0, w, tile)], axis=2)
    bounds = list(range(tile, w, tile))
    assert seam_ratio(naive, bounds) > 3.0  # the metric sees a seam when there is one
    ours = run_tiled(x, fn, tile=tile, halo=4, blend=24)
    starts = tile_starts(w, tile, 2 * 4 + 24)
    edges = sorted({s + tile - 4 for s in starts[:-1]} | {s + 4 for s in starts[1:]})
    assert seam_ratio(ours, edges) < 1.5
    # and away from the image border ours stays close to the whole-image answer
    whole = fn(x[None])[0]
    assert np.abs(ours - whole)[:, 24:-24, 24:-24].mean() < 0.02


def test_bad_arguments():
    with pytest.raises(ValueError):
        run_tiled(np.zeros((8, 8), np.float32), lambda t: t)
    with pytest.raises(ValueError):
        run_tiled(image(300, 300), lambda t: t, tile=40, halo=16, blend=16)
    with pytest.raises(ValueError, match="returned shape"):
        run_tiled(image(300, 300), lambda t: t[:, :, :-1], tile=128, halo=8, blend=8)


def test_planes_round_trip_and_padding():
    u8 = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    assert np.array_equal(from_planes(to_planes(u8), np.uint8), u8)
    u16 = (np.arange(35, dtype=np.uint16) * 1800).reshape(5, 7)
    planes = to_planes(u16)
    assert planes.shape == (1, 5, 7) and planes.max() <= 1.0
    assert np.array_equal(from_planes(planes, np.uint16), u16)
    padded, size = pad_to_multiple(to_planes(u8), 2)
    assert padded.shape == (3, 6, 8) and size == (5, 7)
    assert np.array_equal(padded[:, :5, :7], to_planes(u8))
