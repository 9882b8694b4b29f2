"""Reading DICOM pixel data for :func:`edgeret.images.read_write.read_image` (needs the ``dicom`` extra).

Sizes are checked against the header before pydicom decodes anything; every
failure is one :class:`InputError` line naming the file.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from edgeret.errors import InputError, one_line
from edgeret.images.limits import check_dims


def read_dicom(p: Path, data: bytes, max_pixels: int) -> tuple[np.ndarray, bool]:
    """(pixels, is a multi-frame volume) of a DICOM file's bytes; InputError naming ``p`` if unusable."""
    try:
        import pydicom
        from pydicom.uid import UID
    except ImportError:
        raise InputError(p, "reading DICOM needs the 'dicom' extra: "
                            "pip install 'edgeret[dicom]'") from None
    try:
        with warnings.catch_warnings():  # pydicom warns about every oddity it repairs
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data))
        if len(ds) == 0:
            raise InputError(p, "truncated DICOM (nothing after the file meta header)")
        sop = UID(str(ds.get("SOPClassUID", "")))
        kind = sop.name if sop else "no SOP class"
        if "PixelData" not in ds:
            floaty = "FloatPixelData" in ds or "DoubleFloatPixelData" in ds
            raise InputError(p, f"DICOM ({kind}) has floating-point pixel data; only 8- and "
                                "16-bit integer images are supported" if floaty
                                else f"DICOM ({kind}) has no pixel data")
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        spp, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsAllocated", 0) or 0)
        photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    except InputError:
        raise
    except Exception as e:  # pydicom raises many types for damaged headers
        raise InputError(p, f"corrupt DICOM ({one_line(e)})") from None
    check_dims(p, cols, rows, max_pixels, frames)
    if bits not in (8, 16):
        raise InputError(p, f"DICOM ({kind}) has {bits}-bit pixels; only 8 and 16 are supported")
    if spp not in (1, 3):
        raise InputError(p, f"{bits}-bit DICOM has {spp} channels, expected 1 or 3")
    if photometric.startswith("YBR") and int(pydicom.__version__.split(".")[0]) < 3:
        raise InputError(p, f"DICOM colour space {photometric} needs pydicom>=3 to convert to RGB")
    ts = ds.file_meta.get("TransferSyntaxUID", None)
    expected = rows * cols * frames * spp * bits // 8
    if ts is not None and not ts.is_compressed and len(ds.PixelData) < expected:
        raise InputError(p, f"truncated DICOM (pixel data has {len(ds.PixelData)} of "
                            f"{expected} bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array  # pydicom>=3 converts YBR to RGB
        if photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut
            arr = apply_color_lut(arr, ds)
    except Exception as e:
        name = getattr(ts, "name", "unknown transfer syntax")
        raise InputError(p, f"cannot decode DICOM pixel data ({name}): {one_line(e)}") from None
    arr = np.asarray(arr)
    if arr.dtype.kind == "i":  # signed storage of non-negative values is lossless to keep
        if arr.size and arr.min() < 0:
            raise InputError(p, "DICOM has negative (signed) pixel values; unsupported")
        arr = arr.astype(np.uint8 if arr.itemsize == 1 else np.uint16)
    if arr.dtype not in (np.uint8, np.uint16):
        raise InputError(p, f"DICOM has {arr.dtype} pixels; only 8- and 16-bit are supported")
    if photometric == "MONOCHROME1":  # 0 = white: invert to the usual convention
        arr = (2 ** int(ds.get("BitsStored", bits)) - 1 - arr).astype(arr.dtype)
    colour = arr.shape[-1] == 3 and arr.ndim == (4 if frames > 1 else 3)
    want = (frames,) * (frames > 1) + (rows, cols) + (3,) * colour
    if arr.shape != want:
        raise InputError(p, f"DICOM pixel data has shape {arr.shape}, header says {want}")
    return np.ascontiguousarray(arr), frames > 1
