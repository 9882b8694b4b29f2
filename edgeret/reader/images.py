"""A capture's decoded image for the browser: read from the hub's DICOM, scaled to a few fixed widths and
sent as PNG (a viewer asks for the larger width only when it zooms in). Never the original object."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

WIDTHS = (320, 1024, 2048)  # thumbnail, the view, zoomed in
CACHE_BYTES = 64 * 1024 * 1024


class ImageSource:
    """Scaled PNGs of the captures under ``store`` (the hub's store folder), with a small LRU cache."""

    def __init__(self, store: str | Path) -> None:
        self.store = Path(store).resolve()
        self._cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def png(self, capture_id: str, dicom_path: str | None, width: int) -> bytes | None:
        """The image at most ``width`` pixels wide (never enlarged), as PNG; None without a DICOM file."""
        width = min((w for w in WIDTHS if w >= width), default=WIDTHS[-1])
        with self._lock:
            if (capture_id, width) in self._cache:
                self._cache.move_to_end((capture_id, width))
                return self._cache[(capture_id, width)]
        path = self._path(dicom_path)
        if path is None:
            return None
        data = encode_png(scaled(read_pixels(path), width))
        with self._lock:
            self._cache[(capture_id, width)] = data
            self._size += len(data)
            while self._size > CACHE_BYTES and self._cache:
                self._size -= len(self._cache.popitem(last=False)[1])
        return data

    def _path(self, dicom_path: str | None) -> Path | None:
        if not dicom_path:
            return None
        path = (self.store / dicom_path).resolve()
        if not path.is_relative_to(self.store) or not path.is_file():  # a row never points outside the store
            return None
        return path


def read_pixels(path: Path) -> np.ndarray:
    """The DICOM's pixels as 8-bit (grey, or RGB)."""
    import pydicom

    pixels = pydicom.dcmread(path).pixel_array
    if pixels.dtype != np.uint8:  # a 16-bit OCT: stretched to 8 bits for the screen
        top = float(pixels.max()) or 1.0
        pixels = np.clip(pixels.astype(np.float32) * (255.0 / top), 0, 255).astype(np.uint8)
    return pixels


def scaled(image: np.ndarray, width: int) -> np.ndarray:
    height, now = image.shape[:2]
    if now <= width:
        return image
    return cv2.resize(image, (width, max(1, round(height * width / now))), interpolation=cv2.INTER_AREA)


def encode_png(image: np.ndarray) -> bytes:
    if image.ndim == 3:
        image = np.ascontiguousarray(image[:, :, ::-1])  # OpenCV writes BGR
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()
