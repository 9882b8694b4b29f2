"""Captures that are not a retina: a blank white frame, a dark frame, some other scene.

Fundus cameras produce these when the flash fires before alignment, with the
lens cap on, or pointed at the room. They are labelled quality "poor",
gradable 0; their DR grade (0) is meaningless.
"""

from __future__ import annotations

import cv2
import numpy as np

NONRETINAL_KINDS = ("white", "dark", "scene")


def nonretinal_capture(rng: np.random.Generator, size: int,
                       kind: str | None = None) -> tuple[np.ndarray, str]:
    """(float32 RGB image in [0, 1], kind) for one of :data:`NONRETINAL_KINDS`."""
    kind = kind or NONRETINAL_KINDS[int(rng.integers(0, 3))]
    c = np.linspace(-1, 1, size, dtype=np.float32)
    if kind == "white":  # flash on a blank target or the closed lid: near-white, slight falloff
        level = rng.uniform(0.82, 1.0)
        tint = np.array([1.0, rng.uniform(0.93, 1.0), rng.uniform(0.85, 1.0)], np.float32)
        fall = 1.0 - rng.uniform(0.0, 0.25) * (c[None, :] ** 2 + c[:, None] ** 2)
        img = level * fall[..., None] * tint
        img = img + rng.normal(0, 0.015, img.shape).astype(np.float32)
    elif kind == "dark":  # lens cap / no flash: near-black with sensor noise, maybe a faint glow
        img = np.full((size, size, 3), rng.uniform(0.0, 0.03), np.float32)
        if rng.random() < 0.5:
            gx, gy = c[None, :] - rng.uniform(-0.5, 0.5), c[:, None] - rng.uniform(-0.5, 0.5)
            g = np.exp(-(gx ** 2 + gy ** 2) / rng.uniform(0.05, 0.3))
            img += (g[..., None] * np.array([0.08, 0.03, 0.02], np.float32)).astype(np.float32)
        img = img + rng.normal(0, rng.uniform(0.005, 0.02), img.shape).astype(np.float32)
    else:
        img = _room(rng, size, c)
    return np.clip(img, 0.0, 1.0).astype(np.float32), kind


def _room(rng: np.random.Generator, size: int, c: np.ndarray) -> np.ndarray:
    """A room seen through the camera: wall and floor, furniture, a window, a lamp, a sign."""
    canvas = np.zeros((size, size, 3), np.uint8)
    wall = rng.uniform(90, 220, 3)
    horizon = int(size * rng.uniform(0.55, 0.8))
    ramp = np.linspace(1.0, 0.75, horizon)[:, None, None]
    canvas[:horizon] = (wall * ramp).astype(np.uint8)
    floor = rng.uniform(40, 140, 3)
    canvas[horizon:] = (floor * np.linspace(0.8, 1.1, size - horizon)[:, None, None]).astype(np.uint8)
    for _ in range(int(rng.integers(2, 6))):  # furniture / frames
        x0, y0 = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(size // 12, size // 3, 2))
        col = tuple(int(v) for v in rng.integers(20, 235, 3))
        cv2.rectangle(canvas, (x0, y0), (x0 + w, y0 + h), col, -1 if rng.random() < 0.7 else
                      max(2, size // 80))
    if rng.random() < 0.7:  # a bright window
        x0, y0 = int(rng.integers(0, size // 2)), int(rng.integers(0, size // 3))
        cv2.rectangle(canvas, (x0, y0), (x0 + size // 4, y0 + size // 4), (235, 240, 250), -1)
        cv2.line(canvas, (x0 + size // 8, y0), (x0 + size // 8, y0 + size // 4), (90, 80, 70),
                 max(1, size // 100))
    for _ in range(int(rng.integers(0, 4))):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.circle(canvas, centre, int(rng.integers(size // 30, size // 8)),
                   tuple(int(v) for v in rng.integers(0, 255, 3)), -1, cv2.LINE_AA)
    text = "".join(chr(int(v)) for v in rng.integers(65, 91, int(rng.integers(3, 8))))
    cv2.putText(canvas, text, (int(size * rng.uniform(0.05, 0.5)), int(size * rng.uniform(0.2, 0.95))),
                cv2.FONT_HERSHEY_SIMPLEX, size / rng.uniform(250, 500),
                tuple(int(v) for v in rng.integers(0, 255, 3)), max(1, size // 200), cv2.LINE_AA)
    img = cv2.GaussianBlur(canvas, (0, 0), max(0.5, size / rng.uniform(150, 600)))  # out of focus
    img = img.astype(np.float32) * (1 / 255)
    img *= (1.0 - 0.3 * (c[None, :] ** 2 + c[:, None] ** 2))[..., None]
    return img + rng.normal(0, 0.01, img.shape).astype(np.float32)
