"""Diabetic retinopathy lesions placed by ICDR grade (small and subtle, as on real photos).

International Clinical DR (ICDR) severity scale, as generated here:

| grade | ICDR            | what is drawn                                                        |
|-------|-----------------|----------------------------------------------------------------------|
| 0     | no apparent DR  | nothing                                                              |
| 1     | mild NPDR       | microaneurysms only (1-6 tiny red dots, radius 0.4-0.85 px at 512)    |
| 2     | moderate NPDR   | 3-15 MAs + at least one of: dot/blot/flame haemorrhages (1-12, in at  |
|       |                 | most 3 quadrants), hard exudates (clustered or circinate yellow dots),|
|       |                 | cotton-wool spots; nothing of grade 3/4                               |
| 3     | severe NPDR     | 4-2-1 rule: >20 intraretinal haemorrhages in *each* of the 4          |
|       |                 | quadrants (21-26 each), plus sometimes venous beading in >=2 quadrants|
|       |                 | and/or IRMA; exudates/CWS often; never neovascularisation             |
| 4     | PDR             | neovascularisation at the disc (NVD) and/or elsewhere (NVE): fine     |
|       |                 | tangled vessel loops; sometimes a boat-shaped pre-retinal haemorrhage;|
|       |                 | on top of moderate or severe NPDR lesions                             |

Quadrants are centred on the fovea and split by the horizontal and vertical
lines through it (image orientation); "nasal" is the disc side.
``lesion_quadrants[type]`` lists counts in :data:`QUADRANTS` order. Venous
beading counts beaded vein segments; NV counts NV complexes (one NVD, or one
per NVE site).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .anatomy import EyeGeometry
from .vessels import VesselPiece

LESION_TYPES = ("microaneurysm", "haemorrhage", "hard_exudate", "cotton_wool_spot",
                "venous_beading", "irma", "neovascularisation", "preretinal_haemorrhage")
QUADRANTS = ("superotemporal", "superonasal", "inferotemporal", "inferonasal")

EXUDATE_RGB = np.array([1.25, 1.02, 0.45], np.float32)
CWS_RGB = np.array([1.10, 0.88, 0.70], np.float32)
BLOOD_RGB = np.array([0.42, 0.08, 0.07], np.float32)


@dataclass
class LesionPlan:
    red: list = field(default_factory=list)  # ("c", x, y, r, a) | ("e", x, y, ax, ay, ang, a) | ("l", pts, a)
    exudates: list = field(default_factory=list)  # (x, y, r)
    cws: list = field(default_factory=list)  # (x, y, ax, ay, ang, a)
    beading: list = field(default_factory=list)  # (pts, w)
    preretinal: list = field(default_factory=list)  # (x, y, half_w, depth)
    counts: dict = field(default_factory=lambda: dict.fromkeys(LESION_TYPES, 0))
    quadrants: dict = field(default_factory=lambda: {t: [0, 0, 0, 0] for t in LESION_TYPES})

    def add(self, kind: str, q: int, n: int = 1) -> None:
        self.counts[kind] += n
        self.quadrants[kind][q] += n


def quadrant_of(geom: EyeGeometry, x: float, y: float) -> int:
    temporal = x >= geom.fovea[0]
    superior = y < geom.fovea[1]
    return (0 if temporal else 1) if superior else (2 if temporal else 3)


def _inside(geom: EyeGeometry, x: float, y: float) -> bool:
    return ((x - geom.cx) ** 2 + (y - geom.cy) ** 2 < (0.95 * geom.radius) ** 2
            and (x - geom.disc[0]) ** 2 + (y - geom.disc[1]) ** 2 > (0.85 * geom.dd) ** 2)


def _points(geom: EyeGeometry, rng: np.random.Generator, n: int, quadrant: int | None,
            rmin_dd: float, rmax_dd: float) -> np.ndarray:
    """n points around the fovea (radius in disc diameters), inside the FOV, off the disc."""
    if n <= 0:
        return np.zeros((0, 2))
    fx, fy = geom.fovea
    out = []
    got = 0
    while got < n:
        m = 4 * (n - got) + 16
        r = geom.dd * np.sqrt(rng.uniform(rmin_dd ** 2, rmax_dd ** 2, m))
        if quadrant is None:
            a = rng.uniform(0, 2 * np.pi, m)
        else:  # quadrant q: superior = up (y-up angle 0..pi), temporal = +x
            lo = {0: 0.0, 1: np.pi / 2, 2: 1.5 * np.pi, 3: np.pi}[quadrant]
            a = rng.uniform(lo, lo + np.pi / 2, m)
        x, y = fx + r * np.cos(a), fy - r * np.sin(a)
        ok = (x - geom.cx) ** 2 + (y - geom.cy) ** 2 < (0.95 * geom.radius) ** 2
        ok &= (x - geom.disc[0]) ** 2 + (y - geom.disc[1]) ** 2 > (0.85 * geom.dd) ** 2
        pts = np.stack([x[ok], y[ok]], 1)[: n - got]
        out.append(pts)
        got += len(pts)
        rmax_dd *= 1.05  # small quadrants near the rim: widen a little until it fits
    return np.concatenate(out)


def plan_lesions(geom: EyeGeometry, pieces: list[VesselPiece], grade: int,
                 rng: np.random.Generator) -> LesionPlan:
    """Which lesions go where for an ICDR `grade` (0-4); draws nothing yet."""
    plan = LesionPlan()
    if grade == 0:
        return plan
    s = geom.scale
    severe_haem = grade == 3 or (grade == 4 and rng.random() < 0.5)
    n_ma = {1: rng.integers(1, 7), 2: rng.integers(3, 16)}.get(grade, rng.integers(10, 31))
    for x, y in _points(geom, rng, int(n_ma), None, 0.35, 3.0):
        plan.red.append(("c", x, y, rng.uniform(0.4, 0.85) * s, rng.uniform(0.85, 1.0)))
        plan.add("microaneurysm", quadrant_of(geom, x, y))
    if grade == 1:
        return plan

    if severe_haem:  # 4-2-1 rule: more than 20 in each quadrant
        haem = [(q, int(rng.integers(21, 27))) for q in range(4)]
    elif grade == 2:
        qs = rng.choice(4, int(rng.integers(1, 4)), replace=False)
        total = int(rng.integers(1, 13)) if rng.random() < 0.85 else 0
        split = np.bincount(rng.integers(0, len(qs), total), minlength=len(qs))
        haem = [(int(q), int(c)) for q, c in zip(qs, split, strict=True)]
    else:  # PDR on moderate background
        haem = [(q, int(rng.integers(2, 10))) for q in range(4)]
    for q, c in haem:
        # haemorrhages come in loose clusters (a few centres per quadrant) plus strays
        centres = _points(geom, rng, int(rng.integers(1, 4)), q, 0.6, 3.2)
        pts = _points(geom, rng, c, q, 0.4, 3.6)
        near = rng.random(c) < 0.6
        pick = centres[rng.integers(0, len(centres), c)]
        pts[near] = pick[near] + rng.normal(0, 0.45 * geom.dd, (int(near.sum()), 2))
        for x, y in pts:
            if quadrant_of(geom, x, y) != q or not _inside(geom, x, y):
                x, y = _points(geom, rng, 1, q, 0.4, 3.6)[0]
            _haemorrhage(plan, geom, rng, x, y)
            plan.add("haemorrhage", q)

    want_he = rng.random() < 0.6 or plan.counts["haemorrhage"] == 0
    if want_he:
        for cx, cy in _points(geom, rng, int(rng.integers(1, 3)), None, 0.8, 2.2):
            _exudate_cluster(plan, geom, rng, cx, cy)
    if rng.random() < (0.4 if grade == 2 else 0.6):
        for x, y in _points(geom, rng, int(rng.integers(1, 4 if grade == 2 else 7)), None, 1.0, 3.0):
            plan.cws.append((x, y, rng.uniform(3.5, 7.0) * s, rng.uniform(2.5, 4.5) * s,
                             rng.uniform(0, 180), rng.uniform(0.35, 0.6)))
            plan.add("cotton_wool_spot", quadrant_of(geom, x, y))
    if grade == 2:
        if plan.counts["haemorrhage"] + plan.counts["hard_exudate"] + plan.counts["cotton_wool_spot"] == 0:
            x, y = _points(geom, rng, 1, None, 0.6, 2.5)[0]  # moderate means more than MAs
            _haemorrhage(plan, geom, rng, x, y)
            plan.add("haemorrhage", quadrant_of(geom, x, y))
        return plan

    if rng.random() < (0.4 if grade == 3 else 0.3):
        _venous_beading(plan, geom, pieces, rng)
    if rng.random() < (0.5 if grade == 3 else 0.3):
        for x, y in _points(geom, rng, int(rng.integers(1, 5)), None, 1.0, 3.2):
            plan.red.append(("l", _tortuous(rng, x, y, rng.uniform(14, 30) * s, 0.55, s), 0.7))
            plan.add("irma", quadrant_of(geom, x, y))
    if grade == 3:
        return plan

    nvd, nve = rng.random() < 0.6, rng.random() < 0.6
    if not (nvd or nve):
        nvd = True
    if nvd:
        _nv_complex(plan, geom, rng, *geom.disc, geom.dd * rng.uniform(0.35, 0.7))
    if nve:
        veins = [p for p in pieces if p.vein and p.width >= 1.8 * s and len(p.pts) > 4]
        for _ in range(int(rng.integers(1, 4))):
            p = veins[int(rng.integers(len(veins)))] if veins else None
            x, y = p.pts[len(p.pts) // 2] if p is not None else _points(geom, rng, 1, None, 1.5, 3)[0]
            if math.hypot(x - geom.disc[0], y - geom.disc[1]) > 1.5 * geom.dd:
                _nv_complex(plan, geom, rng, x, y, geom.dd * rng.uniform(0.25, 0.5))
    if rng.random() < 0.35:
        x, y = _points(geom, rng, 1, None, 1.0, 2.6)[0]
        half = geom.dd * rng.uniform(0.25, 0.6)
        plan.preretinal.append((x, y, half, half * rng.uniform(0.6, 1.0)))
        plan.add("preretinal_haemorrhage", quadrant_of(geom, x, y))
    return plan


def _haemorrhage(plan: LesionPlan, geom: EyeGeometry, rng, x: float, y: float) -> None:
    s = geom.scale
    u = rng.random()
    if u < 0.55:  # dot, with a soft rim
        r = rng.uniform(1.1, 2.0) * s
        plan.red.append(("c", x, y, 1.5 * r, 0.3))
        plan.red.append(("c", x, y, r, rng.uniform(0.75, 0.95)))
    elif u < 0.88:  # blot: a few overlapping ellipses in a faint halo
        plan.red.append(("c", x, y, rng.uniform(3.0, 4.5) * s, 0.25))
        for _ in range(int(rng.integers(2, 4))):
            plan.red.append(("e", x + rng.normal(0, 1.0 * s), y + rng.normal(0, 1.0 * s),
                             rng.uniform(1.5, 3.2) * s, rng.uniform(1.2, 2.6) * s,
                             rng.uniform(0, 180), rng.uniform(0.7, 0.95)))
    else:  # flame: elongated along the nerve fibres (radial from the disc)
        ang = math.degrees(math.atan2(y - geom.disc[1], x - geom.disc[0]))
        plan.red.append(("e", x, y, rng.uniform(3.0, 5.5) * s, rng.uniform(1.0, 1.7) * s,
                         ang, rng.uniform(0.6, 0.85)))


def _exudate_cluster(plan: LesionPlan, geom: EyeGeometry, rng, cx: float, cy: float) -> None:
    s = geom.scale
    n = int(rng.integers(6, 22))
    if rng.random() < 0.5:  # circinate ring around a leaking centre
        rad = geom.dd * rng.uniform(0.2, 0.5)
        a = rng.uniform(0, 2 * np.pi) + np.sort(rng.uniform(0, rng.uniform(3.5, 2 * np.pi), n))
        xs = cx + rad * np.cos(a) * rng.uniform(0.85, 1.15, n)
        ys = cy + rad * np.sin(a) * rng.uniform(0.85, 1.15, n)
    else:
        xs = cx + rng.normal(0, 0.18 * geom.dd, n)
        ys = cy + rng.normal(0, 0.12 * geom.dd, n)
    for x, y in zip(xs, ys, strict=True):
        if (x - geom.cx) ** 2 + (y - geom.cy) ** 2 < (0.95 * geom.radius) ** 2:
            plan.exudates.append((x, y, rng.uniform(0.5, 1.6) * s))
            plan.add("hard_exudate", quadrant_of(geom, x, y))


def _tortuous(rng, x: float, y: float, length: float, tort: float, s: float) -> np.ndarray:
    step = 1.5 * max(s, 0.5)
    n = max(3, int(length / step))
    th = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, tort, n))
    return np.stack([x + step * np.cumsum(np.cos(th)), y + step * np.cumsum(np.sin(th))], 1)


def _nv_complex(plan: LesionPlan, geom: EyeGeometry, rng, x: float, y: float, size: float) -> None:
    """Fine tangled loops (new vessels), radiating as a small fan/net around (x, y)."""
    s = geom.scale
    for _ in range(int(rng.integers(8, 18))):
        a = rng.uniform(0, 2 * np.pi)
        r0 = size * rng.uniform(0.0, 0.8)
        x0, y0 = x + r0 * math.cos(a), y + r0 * math.sin(a)
        plan.red.append(("l", _tortuous(rng, x0, y0, size * rng.uniform(0.5, 1.2), 0.3, s),
                         rng.uniform(0.5, 0.85)))
    plan.add("neovascularisation", quadrant_of(geom, x, y))


def _venous_beading(plan: LesionPlan, geom: EyeGeometry, pieces, rng) -> None:
    s = geom.scale
    by_q: dict[int, list[VesselPiece]] = {}
    for p in pieces:
        if p.vein and 2.0 * s <= p.width <= 5.5 * s and len(p.pts) >= 8:
            mx, my = p.pts[len(p.pts) // 2]
            if math.hypot(mx - geom.disc[0], my - geom.disc[1]) > geom.dd:
                by_q.setdefault(quadrant_of(geom, mx, my), []).append(p)
    qs = sorted(by_q)
    if len(qs) < 2:
        return
    for q in rng.choice(qs, min(len(qs), int(rng.integers(2, 4))), replace=False):
        cand = by_q[int(q)]
        for i in rng.choice(len(cand), min(len(cand), int(rng.integers(1, 3))), replace=False):
            p = cand[int(i)]
            plan.beading.append((p.pts, p.width))
            plan.add("venous_beading", int(q))


def draw_beading(plan: LesionPlan, vein_canvas: np.ndarray) -> None:
    """Sausage-like bulges along the chosen vein segments, into the vein opacity canvas."""
    for pts, w in plan.beading:
        period = max(2, int(round(2.2 * w / max(np.hypot(*(pts[1] - pts[0])), 1e-3))))
        for k in range(0, len(pts), period):
            r = 0.5 * w * (1.55 if (k // period) % 2 == 0 else 0.9)
            cv2.circle(vein_canvas, (int(pts[k][0] * 8), int(pts[k][1] * 8)), int(r * 8), 255, -1,
                       cv2.LINE_AA, 3)


def draw_red(plan: LesionPlan, size: int) -> np.ndarray | None:
    """Opacity canvas (uint8) of the red lesions: MAs, haemorrhages, IRMA, new vessels.
    Shaded with the vessels (:func:`.vessels.vessel_transmission`)."""
    if not plan.red:
        return None
    red = np.zeros((size, size), np.uint8)
    for item in plan.red:
        if item[0] == "c":
            _, x, y, r, a = item
            cv2.circle(red, (int(x * 8), int(y * 8)), max(1, int(r * 8)), int(255 * a), -1,
                       cv2.LINE_AA, 3)
        elif item[0] == "e":
            _, x, y, ax, ay, ang, a = item
            cv2.ellipse(red, (int(x * 8), int(y * 8)), (max(1, int(ax * 8)), max(1, int(ay * 8))),
                        float(ang), 0, 360, int(255 * a), -1, cv2.LINE_AA, 3)
        else:
            _, pts, a = item
            cv2.polylines(red, [np.round(pts * 8).astype(np.int32)], False, int(255 * a), 1,
                          cv2.LINE_AA, 3)
    return red


def _blend(img: np.ndarray, canvas: np.ndarray, sigma: float, colour, light: np.ndarray) -> None:
    """img += (colour * light - img) * blur(canvas), only inside the canvas's bounding box."""
    x, y, w, h = cv2.boundingRect(canvas)
    if w == 0 or h == 0:
        return
    pad = int(3 * sigma) + 2
    x0, y0 = max(0, x - pad), max(0, y - pad)
    x1, y1 = min(canvas.shape[1], x + w + pad), min(canvas.shape[0], y + h + pad)
    a = cv2.GaussianBlur(canvas[y0:y1, x0:x1], (0, 0), sigma).astype(np.float32)
    a = a[..., None] * np.float32(1 / 255)
    roi = img[y0:y1, x0:x1]
    roi += (colour * light[y0:y1, x0:x1, None] - roi) * a


def paint_bright(plan: LesionPlan, img: np.ndarray, light: np.ndarray, scale: float) -> None:
    """Composite exudates, cotton-wool spots and pre-retinal blood into the lit image
    `img` (reflectance x `light`) in place."""
    size = img.shape[0]
    sig = max(0.4, 0.5 * scale)
    if plan.exudates:
        ex = np.zeros((size, size), np.uint8)
        for x, y, r in plan.exudates:
            cv2.circle(ex, (int(x * 8), int(y * 8)), max(1, int(r * 8)), 230, -1, cv2.LINE_AA, 3)
        _blend(img, ex, sig, EXUDATE_RGB, light)
    if plan.cws:
        cw = np.zeros((size, size), np.uint8)
        for x, y, ax, ay, ang, a in plan.cws:
            for k in range(3):  # fluffy: a few offset lobes
                t = math.radians(ang + 120 * k)
                cx, cy = x + 0.45 * ax * math.cos(t), y + 0.45 * ay * math.sin(t)
                cv2.ellipse(cw, (int(cx * 8), int(cy * 8)), (max(1, int(ax * 8)), max(1, int(ay * 8))),
                            float(ang + 40 * k), 0, 360, int(255 * a), -1, cv2.LINE_AA, 3)
        _blend(img, cw, 2.0 * max(scale, 0.5), CWS_RGB, light)
    for x, y, half, depth in plan.preretinal:
        # boat shape: a flat fluid level on top, a rounded bottom where blood settles
        pr = np.zeros((size, size), np.uint8)
        pts = cv2.ellipse2Poly((int(x), int(y)), (max(1, int(half)), max(1, int(depth))), 0, 0, 180, 10)
        wob = 1.0 + 0.06 * np.sin(np.linspace(0, 9, len(pts)))
        poly = np.stack([np.round((x + (pts[:, 0] - x) * wob) * 8),
                         np.round((y + (pts[:, 1] - y) * wob) * 8)], 1).astype(np.int32)
        cv2.fillPoly(pr, [poly], 235, cv2.LINE_AA, 3)
        _blend(img, pr, 1.2 * max(scale, 0.5), BLOOD_RGB * 1.2, light)
        settled = np.zeros((size, size), np.uint8)  # darker where the cells have settled
        cv2.ellipse(settled, (int(x * 8), int((y + 0.35 * depth) * 8)),
                    (max(1, int(0.8 * half * 8)), max(1, int(0.55 * depth * 8))), 0, 0, 180, 150, -1,
                    cv2.LINE_AA, 3)
        _blend(img, settled, 3.0 * max(scale, 0.5), BLOOD_RGB * 0.7, light)
