"""Image preprocessing for fundus photographs and OCT B-scans.

Pure numpy/cv2 functions. Sizes are always parameters (they come from a
task's input spec), given numpy-style as ``(height, width)``. Everything
accepts uint8 and uint16 input; model-ready outputs are float32 in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgeret.errors import InputError
from edgeret.images.grey_exports import as_grey
from edgeret.images.read_write import ARRAY, to_float01

_WORK_SIDE = 1024  # FOV search runs on at most this many pixels per side (speed)


@dataclass(frozen=True)
class FieldOfView:
    """Circular field of view of a fundus photograph, in pixel coordinates.

    ``bbox`` is ``(x0, y0, x1, y1)`` (end-exclusive) of the circle clipped to
    the image. ``found=False`` means no FOV was detected: the record then
    covers the whole image (centre of the frame, radius half the longer side)
    and :func:`fov_mask` is all True.
    """

    cx: float
    cy: float
    radius: float
    bbox: tuple[int, int, int, int]
    found: bool = True

    @property
    def center(self) -> tuple[float, float]:
        return (self.cx, self.cy)


def _check_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype not in (np.uint8, np.uint16):
        raise InputError(ARRAY, f"unsupported pixel type {arr.dtype}; expected uint8 or uint16")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise InputError(ARRAY, f"array has shape {arr.shape}, expected HxW or HxWx3")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(ARRAY, f"image is {arr.shape[1]}x{arr.shape[0]}")
    return arr


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be a positive (height, width), not {size!r}")
    return h, w


def _whole_image(h: int, w: int) -> FieldOfView:
    return FieldOfView((w - 1) / 2, (h - 1) / 2, (max(h, w) - 1) / 2, (0, 0, w, h), found=False)


def _fit_circle(pts: np.ndarray) -> tuple[float, float, float]:
    """Least-squares (Kasa) circle fit, refitted twice without outliers.

    Outliers are boundary points that are not on the circle (a notch or tab
    in the mask, a text overlay touching the FOV).
    """
    keep = np.ones(len(pts), bool)
    cx = cy = r = 0.0
    for _ in range(3):
        x, y = pts[keep, 0], pts[keep, 1]
        a = np.column_stack([x, y, np.ones_like(x)])
        sol, *_ = np.linalg.lstsq(a, x * x + y * y, rcond=None)
        cx, cy = sol[0] / 2, sol[1] / 2
        r = float(np.sqrt(max(sol[2] + cx * cx + cy * cy, 0.0)))
        resid = np.abs(np.hypot(pts[:, 0] - cx, pts[:, 1] - cy) - r)
        new = resid <= max(1.5, 3.0 * float(np.median(resid[keep])))
        if new.sum() < 10 or np.array_equal(new, keep):
            break
        keep = new
    return float(cx), float(cy), r


def find_fov(image_rgb: np.ndarray) -> FieldOfView:
    """Find the circular field of view of a colour fundus photograph.

    The red channel (the brightest one in a fundus image; a grayscale image
    is used as is) is thresholded against the black surround at 10 % of its
    range above the darkest level, so dim photographs work too. The largest
    bright component's outline is fitted with a circle, ignoring points on
    the image border (an FOV cut off at the top and bottom still gives the
    full circle). Returns ``found=False`` (whole image) when there is no
    dark surround or no plausible disc, e.g. an all-black frame.
    """
    arr = _check_image(image_rgb)
    h, w = arr.shape[:2]
    chan = to_float01(arr[..., 0] if arr.ndim == 3 else arr)
    scale = min(1.0, _WORK_SIDE / max(h, w))
    if scale < 1.0:
        chan = cv2.resize(chan, (max(1, round(w * scale)), max(1, round(h * scale))),
                          interpolation=cv2.INTER_AREA)
    wh, ww = chan.shape
    chan = cv2.medianBlur(chan, 5) if min(wh, ww) >= 5 else chan
    lo, hi = np.percentile(chan, [0.5, 99.5])
    if hi - lo < 2.0 / 255:  # flat image (e.g. all black): nothing to find
        return _whole_image(h, w)
    mask = (chan > lo + 0.1 * (hi - lo)).astype(np.uint8)
    k = max(3, (min(wh, ww) // 100) | 1)  # remove thin text/noise attached to the disc
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (k, k)))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return _whole_image(h, w)
    contour = max(contours, key=cv2.contourArea)
    area = cv2.contourArea(contour)
    if area < 0.05 * wh * ww or area > 0.995 * wh * ww:  # tiny blob, or no surround at all
        return _whole_image(h, w)
    pts = contour.reshape(-1, 2).astype(np.float64)
    inner = (pts[:, 0] > 0) & (pts[:, 0] < ww - 1) & (pts[:, 1] > 0) & (pts[:, 1] < wh - 1)
    if inner.sum() < 10:
        return _whole_image(h, w)
    cx, cy, r = _fit_circle(pts[inner])
    r += 0.5  # contour runs through the centres of the outermost FOV pixels
    # A real FOV has a dark surround: what lies outside the fitted circle must be
    # almost all below the threshold (texture filling the frame fails this).
    yy, xx = np.ogrid[:wh, :ww]
    outside = (xx - cx) ** 2 + (yy - cy) ** 2 > (r + 2) ** 2
    if outside.sum() < 0.005 * wh * ww or mask[outside].mean() > 0.1:
        return _whole_image(h, w)
    # Map back from the working resolution (pixel centres: (i + 0.5) / s - 0.5).
    cx, cy, r = (cx + 0.5) / scale - 0.5, (cy + 0.5) / scale - 0.5, r / scale
    plausible = (0.1 * min(h, w) <= r <= max(h, w)) and (0 <= cx < w) and (0 <= cy < h)
    if not plausible:
        return _whole_image(h, w)
    bbox = (max(0, int(np.floor(cx - r))), max(0, int(np.floor(cy - r))),
            min(w, int(np.ceil(cx + r)) + 1), min(h, int(np.ceil(cy + r)) + 1))
    return FieldOfView(cx, cy, r, bbox, found=True)


def fov_mask(shape: tuple[int, ...], fov: FieldOfView) -> np.ndarray:
    """Bool mask (H, W) of pixels inside the FOV circle; all True if not found."""
    h, w = int(shape[0]), int(shape[1])
    if not fov.found:
        return np.ones((h, w), bool)
    yy, xx = np.ogrid[:h, :w]
    return (xx - fov.cx) ** 2 + (yy - fov.cy) ** 2 <= fov.radius ** 2


def _square_window(fov: FieldOfView, margin: float) -> tuple[int, int, int]:
    half = fov.radius * (1.0 + margin)
    side = max(1, int(np.floor(2 * half + 0.5)) + 1)
    x0 = int(np.floor(fov.cx - (side - 1) / 2 + 0.5))
    y0 = int(np.floor(fov.cy - (side - 1) / 2 + 0.5))
    return x0, y0, side


def crop_to_fov(image: np.ndarray, fov: FieldOfView, margin: float = 0.0) -> np.ndarray:
    """Square crop centred on the FOV, side 2*radius*(1+margin)+1 pixels.

    Where the square leaves the frame (an FOV cut off at the top/bottom) it is
    padded with black, so the disc stays centred. Keeps dtype and channels.
    """
    arr = np.asarray(image)
    h, w = arr.shape[:2]
    x0, y0, side = _square_window(fov, margin)
    out = np.zeros((side, side) + arr.shape[2:], arr.dtype)
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(w, x0 + side), min(h, y0 + side)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = arr[sy0:sy1, sx0:sx1]
    return out


def resize_to_spec(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to exactly (height, width): INTER_AREA to shrink, INTER_LINEAR to enlarge."""
    h, w = _check_size(size)
    arr = np.asarray(image)
    if arr.shape[:2] == (h, w):
        return arr.copy()
    shrink = h * w < arr.shape[0] * arr.shape[1]
    return cv2.resize(arr, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def preprocess_fundus(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Colour fundus photo -> (float32 HxWx3 in [0,1], bool HxW FOV mask) at ``size``.

    Finds the FOV, crops a square around it, resizes with INTER_AREA, and
    zeroes everything outside the mask (the circle and the part of the crop
    that lies inside the original frame) so the surround is exactly black.
    """
    arr = _check_image(image)
    if arr.ndim != 3:
        raise InputError(ARRAY, "expected a colour image (3 channels), got grayscale")
    h, w = _check_size(size)
    fov = find_fov(arr)
    crop = crop_to_fov(to_float01(arr), fov)
    inside = crop_to_fov(fov_mask(arr.shape, fov).astype(np.uint8), fov)
    out = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(inside, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    out[~mask] = 0.0
    return np.clip(out, 0.0, 1.0, out=out), mask


def pad_to_size(image: np.ndarray, size: tuple[int, int], *, vertical: str = "top") -> np.ndarray:
    """Zero-pad to (height, width); content centred horizontally.

    ``vertical="top"`` keeps the content at the top (padding at the bottom);
    ``"center"`` centres it. Raises InputError if the image is larger.
    """
    h, w = _check_size(size)
    arr = np.asarray(image)
    ih, iw = arr.shape[:2]
    if ih > h or iw > w:
        raise InputError(ARRAY, f"image {iw}x{ih} does not fit in the {w}x{h} input")
    if vertical not in ("top", "center"):
        raise ValueError(f"vertical must be 'top' or 'center', not {vertical!r}")
    y0 = 0 if vertical == "top" else (h - ih) // 2
    x0 = (w - iw) // 2
    out = np.zeros((h, w) + arr.shape[2:], arr.dtype)
    out[y0:y0 + ih, x0:x0 + iw] = arr
    return out


def preprocess_oct(bscan: np.ndarray, size: tuple[int, int] = (512, 512),
                   scale: float | None = 0.5) -> np.ndarray:
    """OCT B-scan -> float32 (height, width) in [0, 1], as in "resize 1024x640 ->
    512x320 and pad to 512x512".

    The scan is resized by ``scale`` (aspect kept, INTER_AREA); ``scale=None``
    instead fits it to the target width (or height, if that is the tighter
    limit). It is then zero-padded at the BOTTOM and centred horizontally:
    the retina stays at the top rows, where it was acquired. A 640x1024 (HxW)
    scan with scale 0.5 becomes rows 0-319 of a 512x512 input. A scan that
    does not fit after scaling raises InputError (no silent cropping).
    A 3-channel scan is accepted when it is grey stored as colour (:mod:`edgeret.images.grey_exports`).
    """
    arr = _check_image(bscan)
    if arr.ndim == 3:
        grey = as_grey(arr, ARRAY)
        if grey is None:
            raise InputError(ARRAY, "expected a grayscale B-scan (1 channel), got colour")
        arr = grey
    th, tw = _check_size(size)
    ih, iw = arr.shape
    s = min(tw / iw, th / ih) if scale is None else float(scale)
    if s <= 0:
        raise ValueError(f"scale must be positive, not {scale!r}")
    nh, nw = max(1, round(ih * s)), max(1, round(iw * s))
    if nh > th or nw > tw:
        raise InputError(ARRAY, f"B-scan {iw}x{ih} scaled by {s:g} is {nw}x{nh}, larger "
                                f"than the {tw}x{th} model input")
    img = to_float01(arr)
    if (nh, nw) != (ih, iw):
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        img = cv2.resize(img, (nw, nh), interpolation=interp)
    return pad_to_size(np.clip(img, 0.0, 1.0), (th, tw), vertical="top")
