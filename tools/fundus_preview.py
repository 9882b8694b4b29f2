"""Save a contact sheet of synthetic fundus phantoms: DR grade 0-4 x quality, plus non-retinal.

    python tools/fundus_preview.py out.png [size] [seed]

Rows: ICDR grade 0..4; columns: good, usable, poor (retinal captures); a last
row holds non-retinal captures (white frame, dark frame, scene) and two more
good-quality eyes. Each tile is labelled with grade, quality, laterality and
the degradations applied.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

from edgeret.build.data.fundus import generate_fundus


def _label(img: np.ndarray, text: str) -> np.ndarray:
    """The tile with a caption strip above it (so nothing of the image is hidden)."""
    scale = max(0.35, img.shape[0] / 900)
    step = int(26 * scale / 0.5)
    lines = text.split("\n")
    strip = np.zeros((6 + step * len(lines), img.shape[1], 3), np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(strip, line, (6, step * (i + 1) - 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([strip, img], axis=0)


def contact_sheet(size: int = 384, seed: int = 0) -> np.ndarray:
    rows = []
    for grade in range(5):
        tiles = []
        for j, quality in enumerate(("good", "usable", "poor")):
            s = generate_fundus(seed + 10 * grade + j, size=size, dr_grade=grade, quality=quality,
                                kind="retina")
            degr = ",".join(f"{k}:{v:.2f}" for k, v in s.degradations.items() if v >= 0.1)
            tiles.append(_label(s.image, f"DR{grade} {quality} {s.laterality}\n{degr}"))
        rows.append(np.concatenate(tiles, axis=1))
    last = []
    for i, kind in enumerate(("white", "scene", "dark")):
        s = generate_fundus(seed + 100 + i, size=size, kind=kind)
        last.append(_label(s.image, f"non-retinal: {s.kind}\npoor, gradable={s.gradable}"))
    rows.append(np.concatenate(last, axis=1))
    return np.concatenate(rows, axis=0)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    size = int(argv[1]) if len(argv) > 1 else 384
    seed = int(argv[2]) if len(argv) > 2 else 0
    sheet = contact_sheet(size, seed)
    cv2.imwrite(argv[0], cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {argv[0]} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
