"""Runtime image I/O: PNG, JPEG, TIFF and DICOM in, PNG/TIFF/JPEG out.

Only numpy and cv2 are needed; pydicom is imported lazily for DICOM files.
Every bad input raises :class:`InputError` with a one-line problem naming the
file and, where known, the detected format. Conventions:

* the format is detected from the file content (magic bytes), not the
  extension;
* colour is returned as RGB (cv2's BGR is converted); an alpha channel is
  dropped (the colour values are kept as stored, not composited);
* bit depth is kept: uint8 or uint16, nothing else is accepted;
* a multi-frame DICOM (OCT volume) or multi-page TIFF comes back as (N,H,W)
  (or (N,H,W,3) for colour frames); a single image as (H,W) or (H,W,3).
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from edgeret.errors import InputError, one_line
from edgeret.images.grey_exports import as_grey, coloured_fraction
from edgeret.images.limits import check_dims
from edgeret.link.atomic import write_bytes_atomic

DEFAULT_MAX_PIXELS = 16384 * 16384
ARRAY = "<array>"  # the "path" named in errors about in-memory arrays

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_EXT_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF",
               ".tiff": "TIFF", ".dcm": "DICOM", ".dicom": "DICOM"}
# Formats we recognise only to say clearly that they are not supported.
_OTHER_MAGIC = [(b"BM", "BMP"), (b"GIF8", "GIF"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
                (b"%PDF", "PDF"), (b"PK\x03\x04", "ZIP")]
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_TIFF_TAGS = {256, 257, 273, 279, 324, 325}  # width, height, strip/tile offsets+counts


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm")


def list_images(folder: str | Path) -> list[Path]:
    """Image files below `folder` by suffix, sorted; hidden files and folders are left out."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read_folder_8bit(folder: str | Path, *, gray: bool) -> list[tuple[Path, np.ndarray]]:
    """Every image below `folder` as uint8: (H, W) when `gray`, else (H, W, 3) (gray files repeated);
    16-bit files are scaled to 8 bits. Restoration tasks train and evaluate on these."""
    from edgeret.errors import EdgeretError

    paths = list_images(folder)
    if not paths:
        raise EdgeretError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    images = []
    for path in paths:
        img = read_image(path, expect="gray" if gray else None)
        if img.dtype == np.uint16:
            img = (img // 257).astype(np.uint8)
        if not gray and img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        images.append((path, img))
    return images


def detect_format(data: bytes) -> str | None:
    """Return "PNG", "JPEG", "TIFF" or "DICOM" from the leading bytes, else None."""
    if data.startswith(_PNG_SIG):
        return "PNG"
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if data[128:132] == b"DICM":
        return "DICOM"
    return None


def read_image(path: str | Path, *, expect: str | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image as uint8/uint16, RGB for colour; see the module docstring.

    ``expect="color"`` requires 3 channels; ``expect="gray"`` requires 1 (a
    colour image whose three channels are identical is reduced to one).
    """
    if expect not in (None, "color", "gray"):
        raise ValueError(f"expect must be None, 'color' or 'gray', not {expect!r}")
    p = Path(path)
    data = _read_bytes(p)
    fmt = detect_format(data)
    if fmt is None:
        raise InputError(p, _unknown_content(p, data))
    if fmt == "DICOM":
        from edgeret.images.dicom_read import read_dicom

        arr, volume = read_dicom(p, data, max_pixels)
    else:
        arr, volume = _read_raster(p, data, fmt, max_pixels)
    return _apply_expect(p, arr, expect, fmt, volume)


def _read_bytes(p: Path) -> bytes:
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(p, "file not found") from None
    except OSError as e:
        raise InputError(p, f"cannot access file ({e.strerror})") from None
    if p.is_dir():
        raise InputError(p, "is a folder, expected an image file")
    if st.st_size == 0:
        raise InputError(p, "file is empty (0 bytes)")
    try:
        return p.read_bytes()
    except OSError as e:
        raise InputError(p, f"cannot read file ({e.strerror})") from None


def _unknown_content(p: Path, data: bytes) -> str:
    head = data[:8]
    for magic, name in _OTHER_MAGIC:
        if data.startswith(magic):
            return f"{name} files are not supported (use PNG, JPEG, TIFF or DICOM)"
    claimed = _EXT_FORMAT.get(p.suffix.lower())
    if claimed == "DICOM":
        return "not a DICOM file (no 'DICM' marker at byte 128; preamble-less DICOM is unsupported)"
    if claimed:
        return f"extension says {claimed} but the content is not {claimed} (starts with {head!r})"
    return f"unrecognised file content (starts with {head!r}); supported: PNG, JPEG, TIFF, DICOM"


# --- PNG / JPEG / TIFF ------------------------------------------------------------------

def _png_header(p: Path, data: bytes) -> tuple[int, int, int]:
    """(width, height, colour type) from IHDR, after checking the file reaches IEND."""
    if len(data) < 33:
        raise InputError(p, "truncated PNG (file ends inside the header)")
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise InputError(p, "corrupt PNG (first chunk is not IHDR)")
    w, h, _depth, colour = struct.unpack(">IIBB", data[16:26])
    pos = 8
    while pos + 12 <= len(data):  # walk chunks: a cut-off file never reaches IEND
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        if ctype == b"IEND":
            return w, h, colour
        pos += 12 + length
    raise InputError(p, "truncated PNG (no IEND chunk; the file was cut short)")


def _jpeg_header(p: Path, data: bytes) -> tuple[int, int]:
    """(width, height) from the SOF segment, after checking the EOI marker."""
    pos, n, size = 2, len(data), None
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise InputError(p, f"corrupt JPEG (expected a marker at byte {pos})")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker in _SOF_MARKERS and pos + 9 <= n:
            h, w = struct.unpack(">HH", data[pos + 5:pos + 9])
            size = (w, h)
            break
        if marker == 0xDA:
            break
        pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
    if size is None:
        raise InputError(p, "truncated or corrupt JPEG (no frame header)")
    # cv2 may return a partial image for a cut-off JPEG: the end-of-image
    # marker FFD9 must follow the last start-of-scan (it cannot occur inside
    # entropy-coded data).
    sos = data.rfind(b"\xff\xda")
    if sos < 0 or data.rfind(b"\xff\xd9") < sos:
        raise InputError(p, "truncated JPEG (no end-of-image marker FFD9; the file was cut short)")
    return size


def _tiff_pages(p: Path, data: bytes) -> list[dict[int, list[int]]]:
    """Width/height/data-offset tags of every page (classic TIFF; BigTIFF -> [])."""
    bo = "<" if data[:2] == b"II" else ">"
    if data[2:4] in (b"+\x00", b"\x00+"):
        return []
    off, pages, seen, n = struct.unpack(bo + "I", data[4:8])[0], [], set(), len(data)
    while off:
        if off in seen:
            raise InputError(p, "corrupt TIFF (directory chain loops)")
        seen.add(off)
        if off + 2 > n:
            raise InputError(p, "truncated TIFF (directory lies past the end of the file)")
        count = struct.unpack(bo + "H", data[off:off + 2])[0]
        end = off + 2 + 12 * count + 4
        if end > n:
            raise InputError(p, "truncated TIFF (directory runs past the end of the file)")
        tags: dict[int, list[int]] = {}
        for e in range(off + 2, end - 4, 12):
            tag, typ, cnt = struct.unpack(bo + "HHI", data[e:e + 8])
            if tag not in _TIFF_TAGS or typ not in (3, 4):
                continue
            item = "H" if typ == 3 else "I"
            nbytes = cnt * struct.calcsize(item)
            voff = e + 8 if nbytes <= 4 else struct.unpack(bo + "I", data[e + 8:e + 12])[0]
            if voff + nbytes > n:
                raise InputError(p, "truncated TIFF (tag values lie past the end of the file)")
            tags[tag] = list(struct.unpack(bo + item * cnt, data[voff:voff + nbytes]))
        pages.append(tags)
        off = struct.unpack(bo + "I", data[end - 4:end])[0]
    return pages


def _read_raster(p: Path, data: bytes, fmt: str, max_pixels: int) -> tuple[np.ndarray, bool]:
    gray_png, pages = False, []
    if fmt == "PNG":
        w, h, colour = _png_header(p, data)
        gray_png = colour in (0, 4)  # cv2 expands gray+alpha to BGRA
        check_dims(p, w, h, max_pixels)
    elif fmt == "JPEG":
        w, h = _jpeg_header(p, data)
        if h:  # height 0 means "defined later" (DNL): checked after decoding
            check_dims(p, w, h, max_pixels)
    else:
        pages = _tiff_pages(p, data)
        for tags in pages:
            if 256 in tags and 257 in tags:
                check_dims(p, tags[256][0], tags[257][0], max_pixels, len(pages))
            offsets, counts = tags.get(273, tags.get(324, [])), tags.get(279, tags.get(325, []))
            if any(o + c > len(data) for o, c in zip(offsets, counts, strict=False)):
                raise InputError(p, "truncated TIFF (image data runs past the end of the file)")
    buf = np.frombuffer(data, np.uint8)
    detail = ""
    try:
        if len(pages) > 1:
            ok, mats = cv2.imdecodemulti(buf, cv2.IMREAD_UNCHANGED)
            frames = list(mats) if ok and len(mats) == len(pages) else None
        else:
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
            frames = None if img is None else [img]
    except cv2.error as e:
        frames, detail = None, f": {str(e).strip().splitlines()[-1]}"
    if not frames:
        raise InputError(p, f"corrupt or unreadable {fmt} (OpenCV could not decode it){detail}")
    frames = [_to_rgb(p, fmt, f, gray_png) for f in frames]
    if len(frames) == 1:
        arr = frames[0]
        check_dims(p, arr.shape[1], arr.shape[0], max_pixels)
        return arr, False
    shapes = {(f.shape, f.dtype.str) for f in frames}
    if len(shapes) > 1:
        raise InputError(p, f"multi-page TIFF with {len(frames)} pages of different sizes or "
                            "types; expected one image or a stack of equal frames")
    return np.stack(frames), True


def _to_rgb(p: Path, fmt: str, arr: np.ndarray, gray_png: bool) -> np.ndarray:
    """Check dtype/size/channels of one decoded frame and convert BGR(A) to RGB."""
    if arr.dtype not in (np.uint8, np.uint16):
        raise InputError(p, f"{fmt} has {arr.dtype} pixels; only 8- and 16-bit unsigned "
                            "integer images are supported")
    if arr.size == 0:
        raise InputError(p, f"image is {arr.shape[1] if arr.ndim > 1 else 0}x{arr.shape[0]}")
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if channels == 1:
        return arr.reshape(arr.shape[:2])
    if channels == 3:
        rgb = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    elif channels == 4:  # alpha dropped, colour kept as stored
        rgb = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    else:
        raise InputError(p, f"{8 * arr.itemsize}-bit {fmt} has {channels} channels, "
                            "expected 1, 3 or 4 (RGBA)")
    return np.ascontiguousarray(rgb[..., 0]) if gray_png else rgb


def _apply_expect(p: Path, arr: np.ndarray, expect: str | None, fmt: str,
                  volume: bool) -> np.ndarray:
    color = arr.ndim == (4 if volume else 3)
    what = f"a {arr.shape[0]}-frame grayscale volume" if volume else "grayscale"
    if expect == "color" and not color:
        raise InputError(p, f"expected a colour image (3 channels), got {what} ({fmt})")
    if expect == "gray" and color and not volume:
        grey = as_grey(arr, p)
        if grey is not None:
            return grey
        raise InputError(p, f"expected a grayscale image (1 channel), got a colour {fmt} image "
                            f"({100 * coloured_fraction(arr):.0f} % of its pixels are coloured)")
    if expect == "gray" and color:
        raise InputError(p, f"expected a grayscale image (1 channel), got a colour {fmt} volume")
    return arr


# --- writing ---------------------------------------------------------------------------

_WRITE_EXT = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".jpg": "JPEG", ".jpeg": "JPEG"}


def write_image(path: str | Path, array: np.ndarray, *, jpeg_quality: int = 95) -> Path:
    """Write an RGB or grayscale uint8/uint16 array atomically; format from the extension.

    The bytes are encoded in memory, written to a temporary file in the target
    folder and moved into place with os.replace, so a crash never leaves a
    half-written image. Parent folders are created. JPEG is 8-bit only.
    """
    p = Path(path)
    fmt = _WRITE_EXT.get(p.suffix.lower())
    if fmt is None:
        raise InputError(p, f"cannot write '{p.suffix or 'no extension'}' files; "
                            "use .png, .tif/.tiff or .jpg/.jpeg")
    arr = np.asarray(array)
    _require_int_dtype(p, arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] != 3:
        raise InputError(p, f"{8 * arr.itemsize}-bit image has {arr.shape[2]} channels, "
                            "expected 1 or 3")
    if arr.ndim not in (2, 3):
        raise InputError(p, f"array has shape {arr.shape}, expected HxW or HxWx3")
    if arr.size == 0:
        raise InputError(p, f"image is {arr.shape[1]}x{arr.shape[0]}")
    if fmt == "JPEG" and arr.dtype == np.uint16:
        raise InputError(p, "JPEG cannot store 16-bit images; write .png or .tif instead")
    bgr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else np.ascontiguousarray(arr)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if fmt == "JPEG" else []
    try:
        ok, encoded = cv2.imencode(p.suffix.lower(), bgr, params)
    except cv2.error as e:
        raise InputError(p, f"cannot encode {fmt}: {one_line(e)}") from None
    if not ok:
        raise InputError(p, f"cannot encode {fmt} (OpenCV refused the array)")
    return write_bytes_atomic(p, encoded.tobytes())


# --- float conversion ------------------------------------------------------------------

def _require_int_dtype(where: str | Path, arr: np.ndarray) -> None:
    if arr.dtype not in (np.uint8, np.uint16):
        raise InputError(where, f"unsupported pixel type {arr.dtype}; expected uint8 or uint16")


def to_float01(array: np.ndarray) -> np.ndarray:
    """uint8 / uint16 -> float32 in [0, 1] (divided by 255 or 65535)."""
    arr = np.asarray(array)
    _require_int_dtype(ARRAY, arr)
    scale = np.float32(255.0 if arr.dtype == np.uint8 else 65535.0)
    return arr.astype(np.float32) / scale


def from_float01(array: np.ndarray, dtype: type | str | np.dtype = np.uint8) -> np.ndarray:
    """float in [0, 1] -> uint8 / uint16 (clipped, rounded to nearest)."""
    dt = np.dtype(dtype)
    if dt not in (np.uint8, np.uint16):
        raise InputError(ARRAY, f"unsupported output pixel type {dt}; expected uint8 or uint16")
    arr = np.asarray(array, dtype=np.float32)
    if np.isnan(arr).any():
        raise InputError(ARRAY, "float image contains NaN values")
    top = 255.0 if dt == np.uint8 else 65535.0
    return np.rint(np.clip(arr, 0.0, 1.0) * top).astype(dt)
