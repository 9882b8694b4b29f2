"""Real files on disk, written with cv2/pydicom, read back through edgeret.images.read_write."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeret.errors import InputError
from edgeret.images.read_write import from_float01, read_image, to_float01, write_image

RNG = np.random.default_rng(1234)


def rand(shape, dtype=np.uint8) -> np.ndarray:
    return RNG.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


def raises_input(path: Path, *fragments: str):
    """pytest.raises for InputError whose message names the file and every fragment."""

    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(InputError)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.ctx.__exit__(*exc)
            msg = str(self.info.value)
            assert msg.startswith(f"{path}: "), msg
            assert "\n" not in msg
            for frag in fragments:
                assert frag in msg, (frag, msg)
            return handled

    return _Check()


# --- round trips -----------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(37, 53), (37, 53, 3)])
def test_lossless_round_trip(tmp_path, ext, dtype, shape):
    img = rand(shape, dtype)
    out = write_image(tmp_path / "sub" / f"x{ext}", img)
    back = read_image(out)
    assert back.dtype == dtype and back.shape == shape
    np.testing.assert_array_equal(back, img)


def test_colour_is_rgb_not_bgr(tmp_path):
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[..., 2] = 200  # red in cv2's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    rgb = read_image(tmp_path / "red.png")
    assert rgb[0, 0].tolist() == [200, 0, 0]
    write_image(tmp_path / "red2.png", rgb)
    assert cv2.imread(str(tmp_path / "red2.png"))[0, 0].tolist() == [0, 0, 200]


def test_jpeg_round_trip_close(tmp_path):
    img = np.full((40, 60, 3), (200, 100, 50), np.uint8)
    write_image(tmp_path / "a.jpg", img)
    back = read_image(tmp_path / "a.jpg", expect="color")
    assert back.shape == img.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - img).max() <= 3


def test_alpha_is_dropped(tmp_path):
    bgra = rand((10, 12, 4), np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    back = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(back, bgra[..., [2, 1, 0]])


def test_extension_lies_content_wins(tmp_path):
    img = rand((9, 7), np.uint8)
    cv2.imwrite(str(tmp_path / "real.png"), img)
    (tmp_path / "fake.jpg").write_bytes((tmp_path / "real.png").read_bytes())
    np.testing.assert_array_equal(read_image(tmp_path / "fake.jpg"), img)


def test_multipage_tiff_is_a_stack(tmp_path):
    frames = [rand((20, 30), np.uint16) for _ in range(3)]
    ok, buf = cv2.imencodemulti(".tif", frames)
    assert ok
    (tmp_path / "stack.tif").write_bytes(buf.tobytes())
    vol = read_image(tmp_path / "stack.tif", expect="gray")
    assert vol.shape == (3, 20, 30) and vol.dtype == np.uint16
    np.testing.assert_array_equal(vol, np.stack(frames))


# --- expect= ------------------------------------------------------------------------------

def test_expect_color_rejects_grayscale(tmp_path):
    p = write_image(tmp_path / "g.png", rand((10, 10)))
    with raises_input(p, "expected a colour image (3 channels), got grayscale", "PNG"):
        read_image(p, expect="color")


def test_expect_gray(tmp_path):
    g = rand((10, 11))
    p = write_image(tmp_path / "g3.png", np.dstack([g, g, g]))
    np.testing.assert_array_equal(read_image(p, expect="gray"), g)
    c = write_image(tmp_path / "c.png", rand((10, 11, 3)))
    with raises_input(c, "expected a grayscale image (1 channel)", "colour"):
        read_image(c, expect="gray")


# --- bad files ----------------------------------------------------------------------------

def test_missing_and_empty_and_folder(tmp_path):
    with raises_input(tmp_path / "nope.png", "file not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with raises_input(tmp_path / "empty.png", "empty (0 bytes)"):
        read_image(tmp_path / "empty.png")
    with raises_input(tmp_path, "folder"):
        read_image(tmp_path)


def test_text_file_named_png(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("hello, this is not an image\n")
    with raises_input(p, "extension says PNG", "not PNG"):
        read_image(p)
    q = tmp_path / "notes.bin"
    q.write_text("hello")
    with raises_input(q, "unrecognised file content", "PNG, JPEG, TIFF, DICOM"):
        read_image(q)


def test_unsupported_known_format_is_named(tmp_path):
    p = tmp_path / "x.bmp"
    cv2.imwrite(str(p), rand((4, 4)))
    with raises_input(p, "BMP files are not supported"):
        read_image(p)


def test_truncated_png(tmp_path):
    p = write_image(tmp_path / "t.png", rand((64, 64, 3)))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 30])
    with raises_input(p, "truncated PNG"):
        read_image(p)
    p.write_bytes(data[:20])
    with raises_input(p, "truncated PNG"):
        read_image(p)


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_jpeg(tmp_path, keep):
    # A smooth image whose JPEG cv2 can partly decode when cut short.
    yy, xx = np.mgrid[:256, :256]
    img = np.dstack([xx, yy, (xx + yy) // 2]).astype(np.uint8)
    p = write_image(tmp_path / "t.jpg", img)
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * keep)])
    with raises_input(p, "truncated JPEG"):
        read_image(p)


def test_truncated_tiff(tmp_path):
    p = write_image(tmp_path / "t.tif", rand((64, 64), np.uint16))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with raises_input(p, "TIFF"):
        read_image(p)


def test_float_tiff_rejected(tmp_path):
    p = tmp_path / "f.tif"
    assert cv2.imwrite(str(p), RNG.random((8, 8), dtype=np.float32))
    with raises_input(p, "TIFF has float32 pixels", "8- and 16-bit"):
        read_image(p)


def test_signed_tiff_rejected(tmp_path):
    p = tmp_path / "i.tif"
    assert cv2.imwrite(str(p), np.ones((8, 8), np.int32))
    with raises_input(p, "int32"):
        read_image(p)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def test_huge_png_rejected_from_header(tmp_path):
    p = tmp_path / "huge.png"
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    # Valid signature, IHDR with correct CRC, an empty IDAT and IEND: no pixel data at all,
    # so only a header check can report the size.
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                  + _png_chunk(b"IDAT", zlib.compress(b"")) + _png_chunk(b"IEND", b""))
    with raises_input(p, "image 100000x100000 exceeds the 16384x16384 limit"):
        read_image(p)


def test_zero_size_png_header(tmp_path):
    p = tmp_path / "zero.png"
    ihdr = struct.pack(">IIBBBBB", 0, 0, 8, 0, 0, 0, 0)
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b""))
    with raises_input(p, "image is 0x0"):
        read_image(p)


def test_max_pixels_after_decode(tmp_path):
    p = write_image(tmp_path / "a.tif", rand((30, 40)))
    with raises_input(p, "image 40x30 exceeds the 1000-pixel limit"):
        read_image(p, max_pixels=1000)
    j = write_image(tmp_path / "a.jpg", rand((30, 40)))
    with raises_input(j, "image 40x30 exceeds the 20x20 limit"):
        read_image(j, max_pixels=400)


def test_corrupt_png_body(tmp_path):
    p = write_image(tmp_path / "c.png", rand((32, 32, 3)))
    data = bytearray(p.read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 10: idat + 40] = bytes(30)  # damage the compressed stream, keep the layout
    p.write_bytes(bytes(data))
    with raises_input(p, "PNG"):
        read_image(p)


# --- DICOM ----------------------------------------------------------------------------------

OP_8BIT = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
OPT = "1.2.840.10008.5.1.4.1.1.77.1.5.4"


def _write_dicom(path: Path, pixels: np.ndarray, sop_class: str, frames: int = 1) -> Path:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OP" if sop_class == OP_8BIT else "OPT"
    colour = pixels.ndim == (4 if frames > 1 else 3)
    ds.Rows, ds.Columns = pixels.shape[(1 if frames > 1 else 0):][:2]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    bits = 8 * pixels.itemsize
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    try:
        ds.save_as(path, enforce_file_format=True)
    except TypeError:  # pydicom 2.x
        pydicom.dcmwrite(path, ds, write_like_original=False)
    return path


def test_dicom_op_rgb(tmp_path):
    img = rand((24, 32, 3))
    p = _write_dicom(tmp_path / "fundus.dcm", img, OP_8BIT)
    back = read_image(p, expect="color")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, img)


def test_dicom_opt_volume(tmp_path):
    vol = rand((5, 16, 20), np.uint16)
    p = _write_dicom(tmp_path / "oct.dcm", vol, OPT, frames=5)
    back = read_image(p)
    assert back.shape == (5, 16, 20) and back.dtype == np.uint16
    np.testing.assert_array_equal(back, vol)
    assert read_image(p, expect="gray").shape == (5, 16, 20)
    with raises_input(p, "expected a colour image", "5-frame grayscale volume"):
        read_image(p, expect="color")
    with raises_input(p, "volume of 5 frames 20x16 exceeds"):
        read_image(p, max_pixels=1000)


def test_dicom_truncated_and_no_pixels(tmp_path):
    p = _write_dicom(tmp_path / "t.dcm", rand((5, 16, 20), np.uint16), OPT, frames=5)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 500])
    with raises_input(p, "truncated DICOM (pixel data has 2700 of 3200 bytes)"):
        read_image(p)
    p.write_bytes(data[:200])
    with raises_input(p, "DICOM"):
        read_image(p)

    import pydicom

    q = _write_dicom(tmp_path / "n.dcm", rand((4, 4)), OPT)
    ds = pydicom.dcmread(q)
    del ds.PixelData
    ds.save_as(q)
    with raises_input(q, "has no pixel data", "Ophthalmic Tomography"):
        read_image(q)


# --- write_image / float conversion ---------------------------------------------------------

def test_write_rejections(tmp_path):
    p = tmp_path / "a.png"
    with raises_input(p, "16-bit image has 4 channels, expected 1 or 3"):
        write_image(p, np.zeros((4, 4, 4), np.uint16))
    with raises_input(p, "unsupported pixel type float32"):
        write_image(p, np.zeros((4, 4), np.float32))
    with raises_input(p, "unsupported pixel type bool"):
        write_image(p, np.zeros((4, 4), bool))
    with raises_input(p, "image is 0x0"):
        write_image(p, np.zeros((0, 0), np.uint8))
    with raises_input(tmp_path / "a.jpg", "JPEG cannot store 16-bit"):
        write_image(tmp_path / "a.jpg", np.zeros((4, 4), np.uint16))
    with raises_input(tmp_path / "a.bmp", "cannot write '.bmp'"):
        write_image(tmp_path / "a.bmp", np.zeros((4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_write_is_atomic_replace(tmp_path):
    p = tmp_path / "a.png"
    write_image(p, np.zeros((4, 4), np.uint8))
    write_image(p, np.full((4, 4), 7, np.uint8))
    assert read_image(p).max() == 7
    assert [f.name for f in tmp_path.iterdir()] == ["a.png"]  # no temp files left


def test_float_conversion():
    u8 = np.arange(256, dtype=np.uint8)
    f = to_float01(u8)
    assert f.dtype == np.float32 and f.min() == 0.0 and f.max() == 1.0
    np.testing.assert_array_equal(from_float01(f, np.uint8), u8)
    u16 = np.arange(0, 65536, dtype=np.uint16)
    np.testing.assert_array_equal(from_float01(to_float01(u16), "uint16"), u16)
    assert from_float01(np.array([-1.0, 2.0]), np.uint8).tolist() == [0, 255]
    with pytest.raises(InputError, match="float64"):
        to_float01(np.zeros(3))
    with pytest.raises(InputError, match="NaN"):
        from_float01(np.array([np.nan]), np.uint8)
    with pytest.raises(InputError, match="int32"):
        from_float01(np.zeros(3), np.int32)
