"""Fundus FOV detection and OCT/fundus preprocessing on synthetic and real images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeret.errors import InputError
from edgeret.images.preprocess import (
    FieldOfView,
    crop_to_fov,
    find_fov,
    fov_mask,
    pad_to_size,
    preprocess_fundus,
    preprocess_oct,
    resize_to_spec,
)


def synthetic_fundus(h=400, w=500, center=(260, 190), radius=150, gain=1.0, seed=0):
    """Textured orange disc with dark vessels on black, like a fundus photo."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    cv2.circle(img, center, radius, (190, 95, 40), -1)
    for _ in range(12):  # vessels
        a = tuple(int(v) for v in rng.integers(0, [w, h]))
        b = tuple(int(v) for v in rng.integers(0, [w, h]))
        cv2.line(img, a, b, (120, 40, 20), 3)
    disc = np.zeros((h, w), np.uint8)
    cv2.circle(disc, center, radius, 1, -1)
    noise = rng.integers(-25, 25, img.shape)
    img = np.clip(img.astype(int) + noise * (img > 0), 0, 255) * disc[..., None]
    img = np.clip(img * gain + rng.integers(0, 4, img.shape), 0, 255)  # sensor noise everywhere
    return img.astype(np.uint8)


@pytest.mark.parametrize("gain", [1.0, 0.12])  # normal and very dark exposure
def test_find_fov_synthetic(gain):
    fov = find_fov(synthetic_fundus(gain=gain))
    assert fov.found
    assert abs(fov.cx - 260) <= 2 and abs(fov.cy - 190) <= 2
    assert abs(fov.radius - 150) <= 2
    assert fov.bbox == (109, 39, 412, 342)


def test_find_fov_uint16_same_as_uint8():
    img = synthetic_fundus()
    a, b = find_fov(img), find_fov(img.astype(np.uint16) * 257)
    assert abs(a.cx - b.cx) < 0.5 and abs(a.radius - b.radius) < 0.5


def test_find_fov_circle_cut_by_frame():
    # EyePACS-style: the disc is cropped at top and bottom; the circle must still be whole.
    img = synthetic_fundus()[80:300]
    fov = find_fov(img)
    assert fov.found
    assert abs(fov.cx - 260) <= 2 and abs(fov.cy - 110) <= 2 and abs(fov.radius - 150) <= 2
    assert fov.bbox[1] == 0 and fov.bbox[3] == img.shape[0]


def test_find_fov_real_retina():
    data = pytest.importorskip("skimage.data")
    img = data.retina()  # 1411x1411 RGB fundus photo, with a small tab at the top right
    # Measured by hand on the red channel (> 20): the disc spans x 8..1400 and y 5..1400,
    # i.e. centre ~(704, 702.5), radius ~697.
    fov = find_fov(img)
    assert fov.found
    assert abs(fov.cx - 704) <= 3 and abs(fov.cy - 702.5) <= 3
    assert abs(fov.radius - 697) <= 0.01 * 697
    out, mask = preprocess_fundus(img, (224, 224))
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert mask.shape == (224, 224) and mask.dtype == bool
    assert abs(mask.mean() - np.pi / 4) < 0.02  # the disc fills the square crop
    assert not out[~mask].any()


def test_find_fov_all_black_and_flat():
    for img in (np.zeros((100, 120, 3), np.uint8), np.full((50, 40, 3), 9000, np.uint16)):
        fov = find_fov(img)
        assert not fov.found
        h, w = img.shape[:2]
        assert fov.bbox == (0, 0, w, h)
        assert fov_mask(img.shape, fov).all()


def test_find_fov_no_surround():
    # Texture filling the whole frame: no black surround, no circle to find.
    img = np.random.default_rng(3).integers(100, 200, (80, 90, 3)).astype(np.uint8)
    assert not find_fov(img).found


def test_fov_mask_and_crop():
    fov = FieldOfView(cx=10, cy=5, radius=4, bbox=(6, 1, 15, 10))
    m = fov_mask((12, 20, 3), fov)
    assert m.shape == (12, 20) and m[5, 10] and m[5, 14] and not m[5, 15] and not m[0, 0]
    assert m.sum() == 49  # lattice points in a radius-4 disc
    img = np.arange(12 * 20, dtype=np.uint16).reshape(12, 20)
    crop = crop_to_fov(img, fov)
    assert crop.shape == (9, 9) and crop.dtype == np.uint16
    assert crop[4, 4] == img[5, 10]
    # Circle leaving the frame at the top: padded with black, centre stays centred.
    top = FieldOfView(cx=10, cy=1, radius=4, bbox=(6, 0, 15, 6))
    crop = crop_to_fov(img, top, margin=0.5)
    assert crop.shape == (13, 13) and crop[6, 6] == img[1, 10]
    assert not crop[:3].any()


def test_preprocess_fundus_synthetic_uint16_and_errors():
    img = synthetic_fundus().astype(np.uint16) * 257
    out, mask = preprocess_fundus(img, (64, 96))
    assert out.shape == (64, 96, 3) and mask.shape == (64, 96)
    assert out.dtype == np.float32 and out.max() <= 1.0
    with pytest.raises(InputError, match="expected a colour image"):
        preprocess_fundus(img[..., 0], (64, 64))
    with pytest.raises(InputError, match="float32"):
        preprocess_fundus(img.astype(np.float32), (64, 64))


def test_preprocess_fundus_not_found_keeps_whole_image():
    img = np.zeros((30, 60, 3), np.uint8)
    out, mask = preprocess_fundus(img, (60, 60))
    # The whole 30x60 frame is padded to a 60x60 square: only its rows are "inside".
    assert mask[15:45].all() and not mask[:14].any() and not mask[46:].any()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_preprocess_oct_paper_geometry(dtype):
    rng = np.random.default_rng(0)
    top = np.iinfo(dtype).max
    bscan = rng.integers(1, top, (640, 1024), dtype=dtype, endpoint=True)
    out = preprocess_oct(bscan, (512, 512), scale=0.5)
    assert out.shape == (512, 512) and out.dtype == np.float32
    assert (out[:320] > 0).all()  # content in the top 320 rows
    assert not out[320:].any()  # zero padding at the bottom
    assert abs(out[:320].mean() - 0.5) < 0.01
    assert out.max() <= 1.0


def test_preprocess_oct_fit_width_and_centering():
    bscan = np.full((496, 768), 255, np.uint8)
    out = preprocess_oct(bscan, (512, 512), scale=None)  # fit width: 768 -> 512
    assert out.shape == (512, 512)
    rows = np.nonzero(out.any(axis=1))[0]
    assert rows[0] == 0 and rows[-1] == round(496 * 512 / 768) - 1
    narrow = preprocess_oct(np.full((100, 100), 255, np.uint8), (512, 512), scale=2.0)
    cols = np.nonzero(narrow.any(axis=0))[0]
    assert cols[0] == 156 and cols[-1] == 355  # centred horizontally


def test_preprocess_oct_errors():
    with pytest.raises(InputError, match="larger than the 512x512"):
        preprocess_oct(np.zeros((640, 2048), np.uint8), (512, 512), scale=0.5)
    with pytest.raises(InputError, match="grayscale B-scan"):
        preprocess_oct(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8))
    gray3 = np.dstack([np.full((8, 8), 7, np.uint8)] * 3)
    assert preprocess_oct(gray3, (8, 8), scale=1.0).max() == pytest.approx(7 / 255)
    with pytest.raises(InputError, match="image is 0x0"):
        preprocess_oct(np.zeros((0, 0), np.uint8))
    with pytest.raises(InputError, match="bool"):
        preprocess_oct(np.zeros((4, 4), bool))


def test_resize_and_pad_helpers():
    img = np.arange(16, dtype=np.uint16).reshape(4, 4)
    assert resize_to_spec(img, (2, 2)).shape == (2, 2)
    assert resize_to_spec(img, (8, 6)).dtype == np.uint16
    padded = pad_to_size(np.ones((2, 2), np.uint8), (4, 6), vertical="center")
    assert padded.shape == (4, 6) and padded[1:3, 2:4].all() and padded.sum() == 4
    with pytest.raises(InputError, match="does not fit"):
        pad_to_size(np.ones((5, 2), np.uint8), (4, 6))
