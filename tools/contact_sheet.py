"""Contact sheet: fundus phantoms (DR grades 0-4 x quality) and OCT good/usable/poor
beside the real scikit-image fundus photograph, so realism can be judged at a glance.

    python tools/contact_sheet.py docs/img/phantoms.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from edgeret.build.data.fundus import generate_fundus
from edgeret.build.data.oct import generate_oct

TILE = 200
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _tile(image: np.ndarray, caption: str, width: int = TILE, height: int = TILE) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    scale = min(width / image.shape[1], (height - 18) / image.shape[0])
    small = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                       interpolation=cv2.INTER_AREA)
    canvas = np.full((height, width, 3), 255, np.uint8)
    y0, x0 = 0, (width - small.shape[1]) // 2
    canvas[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    cv2.putText(canvas, caption, (4, height - 5), FONT, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def build() -> np.ndarray:
    from skimage.data import retina

    rows = []
    real = _tile(retina(), "REAL: skimage retina")
    grades = [_tile(generate_fundus(10 + g, dr_grade=g, quality="good").image, f"DR {g}, good")
              for g in range(5)]
    rows.append(np.hstack([real, *grades]))
    quality = [_tile(generate_fundus(20 + i, dr_grade=2, quality=q).image, f"DR 2, {q}")
               for i, q in enumerate(["good", "usable", "usable", "poor", "poor"])]
    rows.append(np.hstack([_tile(generate_fundus(5, dr_grade=4, quality="good").image,
                                 "DR 4 (neovasc.)"), *quality]))
    octs = []
    for i, grade in enumerate(["good", "good", "usable", "usable", "poor", "poor"]):
        sample = generate_oct(30 + i, quality=grade)
        flags = "+".join(k for k, v in sample.labels.items() if v) or "clean"
        octs.append(_tile(sample.image, f"OCT {grade}: {flags}"[:30], TILE, 150))
    rows.append(np.hstack(octs))
    return np.vstack(rows)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/phantoms.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(build(), cv2.COLOR_RGB2BGR))
    print(f"wrote {out}")
