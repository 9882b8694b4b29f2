"""Rate-distortion plots for the codec benchmark, drawn with OpenCV (no matplotlib needed).

One PNG per image set: bits per pixel (log scale) against MS-SSIM (dB) and PSNR,
one line per codec.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from edgeret.build.rd_metrics import msssim_db

FONT = cv2.FONT_HERSHEY_SIMPLEX
COLORS = {"ours factorized": (40, 40, 220), "ours paper": (180, 40, 200), "JPEG": (60, 60, 60),
          "JPEG 2000": (40, 150, 40), "WebP": (200, 120, 0), "AVIF": (0, 140, 230), "JPEG XL": (150, 150, 0)}


def _panel(curves: dict, key: str, title: str, w=760, h=480) -> np.ndarray:
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 70, 140, 40, 50  # the legend sits right of the axes
    curves = {k: {"points": [p for p in c["points"] if math.isfinite(p["psnr"]) and p["ms_ssim"] < 1]}
              for k, c in curves.items()}
    xs = [p["bpp"] for c in curves.values() for p in c["points"]]
    ys = [(msssim_db(p["ms_ssim"]) if key == "ms_ssim" else p["psnr"]) for c in curves.values()
          for p in c["points"]]
    x0, x1 = math.log10(max(min(xs), 1e-3)), math.log10(max(xs))
    y0, y1 = min(ys), max(ys)
    x0, x1 = x0 - 0.05, x1 + 0.05
    y0, y1 = y0 - 0.5, y1 + 0.5

    def px(b, q):
        return (int(left + (math.log10(max(b, 1e-3)) - x0) / (x1 - x0) * (w - left - right)),
                int(h - bottom - (q - y0) / (y1 - y0) * (h - top - bottom)))

    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    for e in range(math.floor(x0), math.ceil(x1) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**e
            if x0 <= math.log10(v) <= x1:
                x, _ = px(v, y0)
                cv2.line(img, (x, h - bottom), (x, h - bottom + 5), (0, 0, 0), 1)
                cv2.putText(img, f"{v:g}", (x - 12, h - bottom + 20), FONT, 0.4, (0, 0, 0), 1)
    step = max(1, round((y1 - y0) / 8))
    for v in range(math.ceil(y0), math.floor(y1) + 1, step):
        _, y = px(10**x0, v)
        cv2.line(img, (left - 5, y), (left, y), (0, 0, 0), 1)
        cv2.putText(img, f"{v}", (left - 35, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(img, title, (left, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1)
    cv2.putText(img, "bits per pixel (log)", (w // 2 - 60, h - 12), FONT, 0.45, (0, 0, 0), 1)
    for i, (name, curve) in enumerate(curves.items()):
        color = COLORS.get(name, (100, 100, 100))
        pts = sorted(curve["points"], key=lambda p: p["bpp"])
        xy = [px(p["bpp"], msssim_db(p["ms_ssim"]) if key == "ms_ssim" else p["psnr"]) for p in pts]
        for a, b in zip(xy, xy[1:], strict=False):
            cv2.line(img, a, b, color, 2, cv2.LINE_AA)
        for p in xy:
            cv2.circle(img, p, 3, color, -1, cv2.LINE_AA)
        cv2.putText(img, name, (w - right + 10, top + 12 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    color, 1, cv2.LINE_AA)
    return img


def plot(curves: dict, title: str, path: Path) -> None:
    a = _panel(curves, "ms_ssim", f"{title}: MS-SSIM (dB) vs bpp")
    b = _panel(curves, "psnr", f"{title}: PSNR (dB) vs bpp")
    rgb = np.concatenate([a, b], axis=1)
    cv2.imwrite(str(path), rgb)
