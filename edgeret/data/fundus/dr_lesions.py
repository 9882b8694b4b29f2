"""Diabetic retinopathy lesions by ICDR grade, small and subtle.

Counts follow the ICDR definitions:
  0 none; 1 mild: microaneurysms only; 2 moderate: more than MAs but less than
  severe (MAs, dot/blot haemorrhages, hard exudates, cotton-wool spots, in at most
  three quadrants with < 20 haemorrhages); 3 severe: > 20 intraretinal haemorrhages
  in each of four quadrants' worth (here: >= 6 per quadrant, > 20 in total) and/or
  venous beading in >= 2 quadrants and/or IRMA, no neovascularisation;
  4 proliferative: neovascularisation (at the disc and/or elsewhere), optionally
  pre-retinal haemorrhage.
Sizes at 512 px: MAs 1-3 px across, dot haemorrhages 3-5 px, blots up to ~12 px.
"""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np

from .phantom import Anatomy

RED_DARK = np.array([0.45, 0.12, 0.1], np.float32)
EXUDATE = np.array([0.93, 0.82, 0.38], np.float32)
COTTON = np.array([0.9, 0.84, 0.72], np.float32)
LESION_TYPES = ("microaneurysm", "haemorrhage", "hard_exudate", "cotton_wool_spot",
                "venous_beading", "irma", "neovascularisation", "preretinal_haemorrhage")


def quadrant(anatomy: Anatomy, x: float, y: float) -> int:
    """0 superior-left, 1 superior-right, 2 inferior-left, 3 inferior-right (around the FOV centre)."""
    return (0 if x < anatomy.center[0] else 1) + (0 if y < anatomy.center[1] else 2)


def _spot(rng, anatomy: Anatomy, quad: int | None = None, margin: float = 0.9) -> tuple[float, float]:
    """A random point inside the FOV (optionally in one quadrant), away from the disc."""
    for _ in range(200):
        r = anatomy.radius * margin * np.sqrt(rng.random())
        a = rng.uniform(0, 2 * np.pi)
        x, y = anatomy.center[0] + r * np.cos(a), anatomy.center[1] + r * np.sin(a)
        if quad is not None and quadrant(anatomy, x, y) != quad:
            continue
        if np.hypot(x - anatomy.disc[0], y - anatomy.disc[1]) > anatomy.disc_radius * 1.6:
            return x, y
    return anatomy.center


def _blend(rgb, mask, colour, strength):
    if not mask.any():
        return
    alpha = (mask * strength)[..., None]
    rgb *= 1 - alpha
    rgb += alpha * colour


class LesionPainter:
    def __init__(self, rng: np.random.Generator, anatomy: Anatomy) -> None:
        self.rng = rng
        self.a = anatomy
        self.s = anatomy.size / 512
        self.counts: Counter[str] = Counter()
        self.quadrants: dict[str, list[int]] = {t: [0, 0, 0, 0] for t in LESION_TYPES}
        self.dark = np.zeros((anatomy.size, anatomy.size), np.float32)
        self.bright = np.zeros_like(self.dark)
        self.fluffy = np.zeros_like(self.dark)
        self.vessels = np.zeros_like(self.dark)

    def _record(self, kind: str, x: float, y: float) -> None:
        self.counts[kind] += 1
        self.quadrants[kind][quadrant(self.a, x, y)] += 1

    def microaneurysms(self, n: int) -> None:
        for _ in range(n):
            x, y = _spot(self.rng, self.a, margin=0.7)
            cv2.circle(self.dark, (round(x * 16), round(y * 16)),
                       round(self.rng.uniform(0.7, 1.4) * self.s * 16), 1.0, -1, cv2.LINE_AA, 4)
            self._record("microaneurysm", x, y)

    def haemorrhages(self, n: int, quads: list[int]) -> None:
        for i in range(n):
            x, y = _spot(self.rng, self.a, quads[i % len(quads)])
            blot = self.rng.random() < 0.35
            r = self.rng.uniform(3, 6) if blot else self.rng.uniform(1.5, 2.5)
            axes = (round(r * self.s * 16), round(r * self.rng.uniform(0.6, 1.0) * self.s * 16))
            cv2.ellipse(self.dark, (round(x * 16), round(y * 16)), axes,
                        self.rng.uniform(0, 180), 0, 360, 0.9, -1, cv2.LINE_AA, 4)
            self._record("haemorrhage", x, y)

    def exudates(self, clusters: int) -> None:
        for _ in range(clusters):
            cx, cy = _spot(self.rng, self.a, margin=0.6)
            ring = self.rng.uniform(6, 16) * self.s
            for _ in range(self.rng.integers(3, 10)):
                a = self.rng.uniform(0, 2 * np.pi)
                x, y = cx + ring * np.cos(a), cy + ring * np.sin(a)
                cv2.circle(self.bright, (round(x * 16), round(y * 16)),
                           round(self.rng.uniform(0.8, 1.8) * self.s * 16), 1.0, -1, cv2.LINE_AA, 4)
                self._record("hard_exudate", x, y)

    def cotton_wool(self, n: int) -> None:
        for _ in range(n):
            x, y = _spot(self.rng, self.a, margin=0.6)
            axes = (round(self.rng.uniform(3, 6) * self.s), round(self.rng.uniform(2, 4) * self.s))
            cv2.ellipse(self.fluffy, (round(x), round(y)), axes, self.rng.uniform(0, 180), 0, 360,
                        1.0, -1, cv2.LINE_AA)
            self._record("cotton_wool_spot", x, y)

    def venous_beading(self, n_quadrants: int) -> None:
        for vein in self.a.veins[:n_quadrants]:
            start = int(self.rng.integers(15, 35))
            for p in vein[start : start + 14 : 2]:
                cv2.circle(self.vessels, (round(p[0] * 16), round(p[1] * 16)),
                           round(3.8 * self.s * 16), 0.8, -1, cv2.LINE_AA, 4)
            p = vein[start]
            self._record("venous_beading", p[0], p[1])

    def _squiggle(self, x, y, length, loops: bool) -> None:
        pts, angle = [(x, y)], self.rng.uniform(0, 2 * np.pi)
        for _ in range(int(length)):
            angle += self.rng.normal(0, 0.9 if loops else 0.5)
            pts.append((pts[-1][0] + 1.6 * self.s * np.cos(angle), pts[-1][1] + 1.6 * self.s * np.sin(angle)))
        arr = (np.array(pts) * 16).round().astype(np.int32)
        cv2.polylines(self.vessels, [arr], False, 0.7, 1, cv2.LINE_AA, 4)

    def irma(self, n: int) -> None:
        for _ in range(n):
            x, y = _spot(self.rng, self.a, margin=0.75)
            self._squiggle(x, y, 10, loops=False)
            self._record("irma", x, y)

    def neovascularisation(self, at_disc: bool, elsewhere: int) -> None:
        sites = [self.a.disc] if at_disc else []
        sites += [_spot(self.rng, self.a, margin=0.8) for _ in range(elsewhere)]
        for x, y in sites:
            for _ in range(self.rng.integers(4, 8)):
                ox, oy = self.rng.normal(0, self.a.disc_radius * 0.6, 2)
                self._squiggle(x + ox, y + oy, 14, loops=True)
            self._record("neovascularisation", x, y)

    def preretinal(self) -> None:
        x, y = _spot(self.rng, self.a, margin=0.6)
        r = round(self.rng.uniform(8, 14) * self.s)
        cv2.ellipse(self.dark, (round(x), round(y)), (r, round(r * 0.8)), 0, 0, 180, 1.0, -1, cv2.LINE_AA)
        self._record("preretinal_haemorrhage", x, y)

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        rgb = rgb.copy()
        if not self.counts:
            return rgb
        fov = self.a.fov_mask.astype(np.float32)
        _blend(rgb, np.clip(self.vessels, 0, 1) * fov, RED_DARK * 0.9, 0.6)
        _blend(rgb, np.clip(self.dark, 0, 1) * fov, RED_DARK, 0.8)
        _blend(rgb, np.clip(self.bright, 0, 1) * fov, EXUDATE, 0.75)
        if self.fluffy.any():
            fluffy = cv2.GaussianBlur(self.fluffy, (0, 0), 1.5 * self.s)
            _blend(rgb, np.clip(fluffy, 0, 1) * fov, COTTON, 0.55)
        return rgb


def paint_lesions(rng: np.random.Generator, anatomy: Anatomy, grade: int) -> tuple[np.ndarray, LesionPainter]:
    p = LesionPainter(rng, anatomy)
    if grade == 1:
        p.microaneurysms(int(rng.integers(1, 6)))
    elif grade == 2:
        p.microaneurysms(int(rng.integers(5, 15)))
        quads = list(rng.choice(4, size=int(rng.integers(1, 4)), replace=False))
        p.haemorrhages(int(rng.integers(2, 12)), quads)
        p.exudates(int(rng.integers(0, 3)))
        p.cotton_wool(int(rng.integers(0, 3)))
    elif grade >= 3:
        p.microaneurysms(int(rng.integers(10, 30)))
        per_quad = int(rng.integers(6, 10)) if grade == 3 else int(rng.integers(2, 7))
        p.haemorrhages(per_quad * 4, [0, 1, 2, 3])
        p.exudates(int(rng.integers(1, 4)))
        p.cotton_wool(int(rng.integers(1, 5)))
        if rng.random() < 0.6:
            p.venous_beading(int(rng.integers(2, 5)))
        p.irma(int(rng.integers(1, 4)))
        if grade == 4:
            at_disc = rng.random() < 0.7
            p.neovascularisation(at_disc, int(rng.integers(0 if at_disc else 1, 3)))
            if rng.random() < 0.4:
                p.preretinal()
    return p.apply(anatomy.rgb), p
