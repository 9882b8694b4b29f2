"""Retinal vessel tree: arteries and veins branching from the optic disc.

Four arcade/nasal trunks per vessel kind leave the disc. The temporal trunks
follow arcades curving around the macula (a smooth guide curve in polar
coordinates about the fovea, with a random wobble); every other vessel is a
persistent random walk. Side branches split off at intervals that shrink with
calibre; the parent narrows by Murray's law (w^3 = w1^3 + w2^3), so vessels
taper from ~6-8 px (veins) / ~5 px (arteries) at the disc down to 1 px twigs
at 512 x 512. Branches heading into the macula stop at the foveal avascular
zone. Arteries are lighter and thinner than veins, and the two trees cross
freely.

Geometry is produced as :class:`VesselPiece` polylines (constant width between
branch points), drawn with cv2 anti-aliased polylines into opacity canvases
that :func:`shade_vessels` turns into colour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .anatomy import EyeGeometry

#: Per-channel transmission at full opacity (fraction of background kept).
ARTERY_T = np.array([0.88, 0.66, 0.78], np.float32)
VEIN_T = np.array([0.76, 0.47, 0.60], np.float32)
RED_T = np.array([0.68, 0.36, 0.48], np.float32)  # intraretinal blood (haemorrhages, MAs, NV)
MAX_ORDER = 7


@dataclass
class VesselPiece:
    pts: np.ndarray  # (k, 2) float32 x, y (canonical layout)
    width: float  # px
    vein: bool
    order: int  # 0 = trunk


class _Pool:
    """Pre-drawn random numbers: one generator call per tree instead of thousands."""

    def __init__(self, rng: np.random.Generator, n: int = 16384):
        self.rng = rng
        self.n = n
        self._u = rng.random(n).tolist()  # Python floats: the fastest to index one by one
        self._z = rng.standard_normal(n)
        self.iu = self.iz = 0

    def uniform(self, lo: float, hi: float) -> float:
        if self.iu >= self.n:
            self._u, self.iu = self.rng.random(self.n).tolist(), 0
        self.iu += 1
        return lo + (hi - lo) * self._u[self.iu - 1]

    def normals(self, k: int) -> np.ndarray:
        if self.iz + k > self.n:
            self._z, self.iz = self.rng.standard_normal(max(self.n, k)), 0
        self.iz += k
        return self._z[self.iz - k: self.iz]


_POWERS: dict[float, tuple[np.ndarray, np.ndarray]] = {}


def _powers(pull: float) -> tuple[np.ndarray, np.ndarray]:
    if pull not in _POWERS:
        k = np.arange(1, 4097, dtype=np.float64)
        _POWERS[pull] = ((1.0 - pull) ** k, (1.0 - pull) ** -np.minimum(k, 600.0))
    return _POWERS[pull]


class _Grower:
    def __init__(self, geom: EyeGeometry, rng: np.random.Generator):
        self.g = geom
        self.rng = rng
        self.r = _Pool(rng)
        self.s = geom.scale
        self.step = max(1.5, 3.0 * geom.scale)
        self.wmin = 0.5 * geom.scale
        self.pieces: list[VesselPiece] = []
        self.queue: list[tuple] = []
        self.budget = int(6000 * max(1.0, geom.scale))  # total steps, a safety net

    # -- paths -------------------------------------------------------------------------
    def arcade_path(self, sign: int, offset: tuple[float, float], rho_top: float,
                    rho_end: float) -> np.ndarray:
        """Guide curve of a temporal arcade; sign +1 superior, -1 inferior."""
        g, r = self.g, self.r
        fx, fy = g.fovea
        dx, dy = g.disc
        d0 = math.hypot(dx - fx, dy - fy)
        phi_d = math.atan2(-(dy - fy), dx - fx)
        psi_e = math.pi - r.uniform(0.35, 0.6)
        psi = np.linspace(0.0, psi_e, 480, dtype=np.float64)
        # cosine interpolation through (0, d0), (pi/2, rho_top), (psi_e, rho_end)
        t1 = np.clip(psi / (math.pi / 2), 0, 1)
        t2 = np.clip((psi - math.pi / 2) / (psi_e - math.pi / 2), 0, 1)
        e1, e2 = (1 - np.cos(np.pi * t1)) / 2, (1 - np.cos(np.pi * t2)) / 2
        rho = np.where(psi <= math.pi / 2, d0 + (rho_top - d0) * e1,
                       rho_top + (rho_end - rho_top) * e2)
        ramp = np.clip(psi / 0.5, 0, 1)
        for _ in range(3):
            rho += g.dd * r.uniform(0.02, 0.08) * ramp * np.sin(
                r.uniform(2, 9) * psi + r.uniform(0, 2 * np.pi))
        phi = phi_d - sign * psi
        x = fx + rho * np.cos(phi)
        y = fy - rho * np.sin(phi)
        fade = 1 - np.clip(psi / 0.6, 0, 1)
        x += offset[0] * fade
        y += offset[1] * fade
        return self._resample(np.stack([x, y], 1))

    def _resample(self, pts: np.ndarray) -> np.ndarray:
        seg = np.hypot(*np.diff(pts, axis=0).T)
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        at = np.arange(0.0, arc[-1], self.step)
        out = np.stack([np.interp(at, arc, pts[:, 0]), np.interp(at, arc, pts[:, 1])], 1)
        rr = np.hypot(out[:, 0] - self.g.cx, out[:, 1] - self.g.cy)
        outside = np.nonzero(rr > self.g.radius + 2)[0]
        return out[: outside[0] + 1] if len(outside) else out

    def walk(self, x: float, y: float, theta: float, length: float, tort: float,
             target: float | None, pull: float) -> np.ndarray:
        """Persistent random walk (angles y-up), ending at the FOV rim or the FAZ.

        The heading is an AR(1) process relaxing toward `target`, driven by white
        noise plus a slow undulation; it is solved in closed form, so a whole path
        is a handful of numpy operations.
        """
        g, r = self.g, self.r
        n = max(1, min(int(length / self.step), self.budget, 4096))
        self.budget -= n
        k = np.arange(n, dtype=np.float64)
        drive = r.normals(n) * tort + r.uniform(-0.006, 0.006)
        drive += r.uniform(0.4, 1.6) * tort * np.sin(k * r.uniform(0.15, 0.5) + r.uniform(0, 6.3))
        if target is None:
            theta_k = theta + np.cumsum(drive)
        else:
            ak, inv = _powers(pull)
            ak, inv = ak[:n], inv[:n]
            e0 = math.remainder(theta - target, 2 * math.pi)
            # e_k = a^k e0 + sum_{j<=k} a^(k-j+1) drive_j
            theta_k = target + ak * (e0 + (1.0 - pull) * np.cumsum(drive * inv))
        z = complex(x, y) + self.step * np.cumsum(np.exp(-1j * theta_k))  # y grows downward
        fx, fy = g.fovea
        dx, dy = g.disc
        stop = np.abs(z - complex(g.cx, g.cy)) > g.radius + 2
        stop |= np.abs(z - complex(fx, fy)) < g.faz_radius
        d_disc = np.abs(z - complex(dx, dy))
        # never wander back onto the disc
        stop[1:] |= (d_disc[1:] < d_disc[:-1]) & (d_disc[1:] < 0.8 * g.dd)
        stop |= (z.real > fx) & ((z.imag < fy) != (y < fy))  # temporal vessels respect the raphe
        hit = np.flatnonzero(stop)
        m = int(hit[0]) + 1 if len(hit) else n
        self.budget += n - m
        out = np.empty((m + 1, 2))
        out[0] = x, y
        out[1:, 0] = z.real[:m]
        out[1:, 1] = z.imag[:m]
        return out

    # -- branching -----------------------------------------------------------------------
    def spacing(self, w: float) -> float:
        return self.g.dd * self.r.uniform(0.45, 1.0) * (0.5 + 0.15 * w / self.s)

    def follow(self, path: np.ndarray, w: float, vein: bool, order: int, arcade: bool) -> None:
        """Cut `path` into constant-width pieces, spawning side branches as it goes."""
        g, r = self.g, self.r
        n = len(path)
        if n < 2:
            return
        fx, fy = g.fovea
        dx, dy = g.disc
        taper = 1.0 - 0.04 * self.step / g.dd  # slow taper along the vessel
        start = i_prev = 0
        end = n - 1
        pos = self.spacing(w) * (0.5 if order == 0 else 1.0)
        side = 1 if r.uniform(0, 1) < 0.5 else -1
        while order < MAX_ORDER:
            i = int(pos / self.step) + 1
            if i >= n - 2:
                break
            w *= taper ** (i - i_prev)
            i_prev = i
            if w < self.wmin:
                end = i
                break
            hx, hy = path[i + 1] - path[i - 1]
            theta = math.atan2(-hy, hx)
            px, py = path[i]
            inner = hx * -(fy - py) - (-hy) * (fx - px)  # cross(heading, to-fovea), y-up
            to_fovea = 1 if inner > 0 else -1
            if arcade:
                side = to_fovea if r.uniform(0, 1) < 0.45 else -to_fovea
            else:
                side = -side if r.uniform(0, 1) < 0.8 else side
            near_disc = math.hypot(px - dx, py - dy) < 1.2 * g.dd
            macular = side == to_fovea and math.hypot(px - fx, py - fy) < 3.0 * g.dd \
                and not near_disc
            ratio = r.uniform(0.2, 0.4) if macular else r.uniform(0.3, 0.65)
            if r.uniform(0, 1) < 0.1 and not arcade:
                ratio = r.uniform(0.75, 0.85)  # occasional near-symmetric bifurcation
            wc = w * ratio
            if wc >= self.wmin:
                self.emit(path[start: i + 1], w, vein, order)
                start = i
                w = (w ** 3 - wc ** 3) ** (1 / 3)
                ang = theta + side * r.uniform(0.55, 1.1)
                if macular:  # fan toward the fovea, roughly straight (no looping)
                    to_f = math.atan2(-(fy - py), fx - px)
                    ang = to_f + max(-0.6, min(0.6, math.remainder(ang - to_f, 2 * math.pi)))
                    target = ang
                else:  # drift back to radiating away from the disc
                    radial = math.atan2(-(py - dy), px - dx)
                    target = ang + 0.5 * math.remainder(radial - ang, 2 * math.pi)
                self.queue.append((px, py, ang, wc, vein, order + 1, target, macular))
            pos += self.spacing(w)
        # the last stretch thins out instead of ending bluntly
        tail = min(end - start, max(2, int(0.25 * g.dd / self.step)))
        if order > 0 and tail >= 4:
            cut = end - tail
            self.emit(path[start: cut + 1], w, vein, order)
            mid = cut + tail // 2
            self.emit(path[cut: mid + 1], w * 0.7, vein, order)
            self.emit(path[mid: end + 1], w * 0.45, vein, order)
        else:
            self.emit(path[start: end + 1], w, vein, order)

    def emit(self, pts: np.ndarray, w: float, vein: bool, order: int) -> None:
        if len(pts) >= 2:
            self.pieces.append(VesselPiece(pts.astype(np.float32), float(w), vein, order))

    def grow(self) -> list[VesselPiece]:
        g, r, s = self.g, self.r, self.s
        dx, dy = g.disc
        fx, fy = g.fovea
        phi_d = math.atan2(-(dy - fy), dx - fx)
        for vein in (True, False):
            wk = (r.uniform(6.0, 7.5) if vein else r.uniform(4.5, 5.5)) * s
            for sign in (1, -1):
                off = ((r.uniform(-0.1, 0.3) if vein else r.uniform(-0.35, 0.05)) * g.disc_rx,
                       -sign * r.uniform(0.0, 0.25) * g.disc_ry)
                top = g.dd * (r.uniform(1.8, 2.3) + (0.12 if vein else 0.0))
                end = g.dd * r.uniform(3.4, 4.4)
                arc = self.arcade_path(sign, off, top, end)
                # nasal trunk: splits off the arcade trunk near the disc margin and runs
                # up/down-nasally to the rim
                k = min(len(arc) - 1, int(g.dd * r.uniform(0.25, 0.6) / self.step))
                wn = (r.uniform(4.0, 5.0) if vein else r.uniform(3.2, 4.0)) * s
                th = phi_d - sign * r.uniform(0.5, 1.0)
                path = self.walk(arc[k, 0], arc[k, 1], th, 3 * g.dd, 0.02, th, 0.02)
                self.follow(path, wn, vein, 0, False)
                wa = wk * r.uniform(0.9, 1.05)
                self.follow(arc, (max(wa ** 3 - 0.5 * wn ** 3, wa ** 3 * 0.5)) ** (1 / 3),
                            vein, 0, True)
            # a small direct nasal vessel and a papillomacular twig toward the fovea,
            # both leaving from the cup
            for th, w in ((phi_d + r.uniform(-0.4, 0.4), r.uniform(2.0, 3.0) * s),
                          (math.atan2(-(fy - dy), fx - dx) + r.uniform(-0.5, 0.5),
                           r.uniform(1.3, 2.0) * s)):
                x0 = dx + 0.3 * g.disc_rx * math.cos(th)
                y0 = dy - 0.3 * g.disc_ry * math.sin(th)
                self.follow(self.walk(x0, y0, th, 3 * g.dd, 0.03, th, 0.02), w, vein, 1, False)
        while self.queue and self.budget > 0:
            px, py, ang, w, vein, order, target, macular = self.queue.pop(0)
            length = g.dd * (1.0 + 0.8 * w / s) * r.uniform(0.7, 1.3)
            tort = 0.02 + 0.045 / max(w / s, 1.0)
            path = self.walk(px, py, ang, length, tort, target, 0.03)
            self.follow(path, w, vein, order + (2 if macular else 0), False)
        return self.pieces


def grow_vessels(geom: EyeGeometry, rng: np.random.Generator) -> list[VesselPiece]:
    """The vessel tree of one eye as constant-width polyline pieces (canonical layout)."""
    return _Grower(geom, rng).grow()


def draw_vessel_canvases(geom: EyeGeometry, pieces: list[VesselPiece]):
    """(artery, vein, reflex) uint8 opacity canvases and the uint8 vessel mask."""
    size = geom.size
    art = np.zeros((size, size), np.uint8)
    vein = np.zeros((size, size), np.uint8)
    reflex = np.zeros((size, size), np.uint8)
    mask = np.zeros((size, size), np.uint8)
    groups: dict[tuple[bool, int, int], list[np.ndarray]] = {}
    mask_groups: dict[int, list[np.ndarray]] = {}
    refl_pts = []
    for p in pieces:
        thick = max(1, round(p.width))
        opacity = min(1.0, 0.1 + 0.42 * p.width / geom.scale)
        level = min(255, int(round(opacity * 16)) * 16)
        # every other point is plenty for drawing (paths bend over >= 4 steps)
        pts = np.round(np.concatenate([p.pts[:-1:2], p.pts[-1:]]) * 8).astype(np.int32)
        groups.setdefault((p.vein, thick, level), []).append(pts)
        mask_groups.setdefault(thick, []).append(pts)
        if not p.vein and p.width >= 3.2 * geom.scale:
            refl_pts.append(pts)
    for (is_vein, thick, level), lst in sorted(groups.items()):
        cv2.polylines(vein if is_vein else art, lst, False, level, thick, cv2.LINE_AA, 3)
    for thick, lst in sorted(mask_groups.items()):
        cv2.polylines(mask, lst, False, 1, thick, cv2.LINE_8, 3)
    if refl_pts:
        cv2.polylines(reflex, refl_pts, False, 255, 1, cv2.LINE_AA, 3)
        centre = (round(geom.disc[0]), round(geom.disc[1]))
        axes = (round(geom.disc_rx * 1.2), round(geom.disc_ry * 1.2))
        cv2.ellipse(reflex, centre, axes, 0, 0, 360, 0, -1)  # no reflex on the disc
    return art, vein, reflex, mask


def vessel_transmission(art: np.ndarray, vein: np.ndarray, reflex: np.ndarray,
                        red: np.ndarray | None, scale: float,
                        light: np.ndarray | None = None) -> np.ndarray:
    """Per-channel transmission (H x W x 3 float32) of vessels, arterial reflex and
    intraretinal blood (`red`, from the lesions), times `light` if given. Optical
    densities add (Beer-Lambert, linearised), so crossings and haemorrhages over
    vessels are darker still."""
    sig = max(0.45, 0.6 * scale)
    a = cv2.GaussianBlur(art, (0, 0), sig)
    v = cv2.GaussianBlur(vein, (0, 0), sig)
    d = None if red is None else cv2.GaussianBlur(red, (0, 0), max(0.3, 0.35 * scale))
    glint = cv2.GaussianBlur(reflex, (0, 0), sig)
    inv = 1.0 / 255.0
    planes = []
    for ch in range(3):
        # 1 - a*(1-Ta) - v*(1-Tv) - d*(1-Tr) + 0.22*glint, all canvases in 0..255
        k = cv2.addWeighted(a, -(1 - float(ARTERY_T[ch])) * inv, v, -(1 - float(VEIN_T[ch])) * inv,
                            1.0, dtype=cv2.CV_32F)
        if d is not None:
            k = cv2.scaleAdd(d.astype(np.float32), -(1 - float(RED_T[ch])) * inv, k)
        k = cv2.scaleAdd(glint.astype(np.float32), 0.22 * inv, k)
        np.maximum(k, 0.04, out=k)
        if light is not None:
            k *= light
        planes.append(k)
    return cv2.merge(planes)
