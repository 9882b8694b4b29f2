"""Figures for evaluation and benchmark reports, as PNG (the JSON and Markdown are `edgeret.reports`).

Drawn with OpenCV so reporting needs nothing beyond the runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def confusion_png(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str) -> Path:
    """A confusion matrix as a PNG: rows truth, columns prediction, row-normalised shading."""
    n = len(labels)
    cell, left, top = 90, 130, 80
    image = np.full((top + n * cell + 40, left + n * cell + 20, 3), 255, np.uint8)
    rows = matrix.sum(axis=1, keepdims=True).clip(min=1)
    share = matrix / rows
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, title, (10, 28), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "predicted ->", (left, 60), font, 0.45, (80, 80, 80), 1, cv2.LINE_AA)
    for i in range(n):
        y = top + i * cell
        cv2.putText(image, labels[i][:12], (8, y + cell // 2), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(image, labels[i][:10], (left + i * cell + 6, top - 6), font, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
        for j in range(n):
            x = left + j * cell
            shade = int(255 - 200 * share[i, j])
            cv2.rectangle(image, (x, y), (x + cell - 2, y + cell - 2), (255, shade, shade), -1)
            colour = (255, 255, 255) if share[i, j] > 0.6 else (0, 0, 0)
            cv2.putText(image, str(int(matrix[i, j])), (x + 20, y + cell // 2 + 6), font, 0.6,
                        colour, 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path
