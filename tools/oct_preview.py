"""Save a PNG grid of synthetic OCT B-scans (good / usable / poor rows).

    python tools/oct_preview.py out.png [--cols 4] [--seed 0] [--height 640 --width 1024]

Each tile is labelled with its seed, grade and active sub-labels.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from edgeret.build.data.oct import generate_oct


def _tile(seed: int, quality: str, h: int, w: int, scale: float) -> np.ndarray:
    s = generate_oct(seed, height=h, width=w, quality=quality)
    img = cv2.cvtColor(s.image, cv2.COLOR_GRAY2BGR)
    if scale != 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    active = [k for k, v in s.labels.items() if v] or ["none"]
    text = f"#{seed} {s.grade}: {', '.join(active)}"
    cv2.rectangle(img, (0, 0), (img.shape[1], 22), (0, 0, 0), -1)
    color = {"good": (80, 220, 80), "usable": (60, 200, 240), "poor": (80, 80, 255)}[s.grade]
    cv2.putText(img, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    return img


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--cols", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--height", type=int, default=640)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--scale", type=float, default=0.5, help="tile scale in the grid")
    ap.add_argument("--grades", default="good,usable,poor")
    a = ap.parse_args(argv)
    rows = []
    for r, quality in enumerate(a.grades.split(",")):
        tiles = [_tile(a.seed + 100 * r + c, quality, a.height, a.width, a.scale)
                 for c in range(a.cols)]
        rows.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0))) for t in tiles], axis=1))
    grid = np.concatenate(rows, axis=0)
    if not cv2.imwrite(a.out, grid):
        raise SystemExit(f"could not write {a.out}")
    print(f"wrote {a.out} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
    main()
