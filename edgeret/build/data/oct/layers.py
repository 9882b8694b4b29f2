"""Macular B-scan anatomy: layer geometry and layer reflectivity.

Geometry is built in micrometres and converted to pixels: the Bruch's
membrane (BM) line is a tilted, gently bowed curve; every other surface is
stacked on it with thickness profiles that depend on the distance to the
foveal centre, so the foveal pit (inner layers thinning to almost nothing,
ONL and photoreceptor outer segments thickening) emerges from the profiles.

Reflectivity is expressed in dB above the noise floor (0 dB). The renderer
turns the boundaries into a dB map with sub-pixel edges by integrating
per-column jumps down each A-scan; vessels, their shadows, choroidal vessel
lumina and depth attenuation are added on top. All randomness is drawn in
:func:`make_geometry`; :func:`render_levels` is a pure function.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

#: Surfaces, top to bottom. Band *i* lies between surface *i* and *i + 1*.
BOUNDARY_NAMES: tuple[str, ...] = (
    "ILM", "RNFL_GCL", "GCL_IPL", "IPL_INL", "INL_OPL", "OPL_ONL", "ONL_ELM",
    "ELM_MZ", "MZ_EZ", "EZ_OS", "OS_IZ", "IZ_RPE", "BM", "CSI",
)
#: Bands between consecutive surfaces (MZ = myoid zone, OS = outer segments,
#: IZ = interdigitation zone).
BAND_NAMES: tuple[str, ...] = (
    "RNFL", "GCL", "IPL", "INL", "OPL", "ONL", "ELM", "MZ", "EZ", "OS", "IZ", "RPE", "choroid",
)
#: band -> (top surface, bottom surface); includes the clinical groupings
#: "GCL+IPL" and "retina" (ILM to BM).
LAYER_BANDS: dict[str, tuple[str, str]] = {
    b: (BOUNDARY_NAMES[i], BOUNDARY_NAMES[i + 1]) for i, b in enumerate(BAND_NAMES)
}
LAYER_BANDS["GCL+IPL"] = ("RNFL_GCL", "IPL_INL")
LAYER_BANDS["retina"] = ("ILM", "BM")

# Mean reflectivity of each band in dB above the noise floor (before speckle).
BAND_LEVELS_DB: dict[str, float] = {
    "RNFL": 29.5, "GCL": 19.0, "IPL": 23.5, "INL": 14.0, "OPL": 23.0, "ONL": 10.5,
    "ELM": 21.0, "MZ": 14.5, "EZ": 31.5, "OS": 18.5, "IZ": 26.5, "RPE": 36.0,
    "choroid": 24.0,
}
SCLERA_DB = 16.0
VITREOUS_DB = -25.0
_MIN_PX = 0.06  # every band keeps a sliver so surfaces stay strictly ordered


@dataclass
class Geometry:
    """Everything random about one eye and one scan position (pixels)."""

    height: int
    width: int
    dx_um: float  # lateral pixel pitch
    dz_um: float  # axial pixel pitch
    fovea_x: float
    boundaries: dict[str, np.ndarray]  # float32 (W,), may leave the frame
    band_db: dict[str, np.ndarray]  # float32 (W,) band level per column (+ "sclera")
    vessels: np.ndarray  # (n, 6): x, y, rx, ry, level_db, shadow_db
    choroid_vessels: np.ndarray  # (m, 5): x, y, rx, ry, contrast_db
    texture: np.ndarray  # low-res float32 field, ~N(0,1)
    texture_db: float
    ilm_reflex_db: float
    rolloff_db: float
    choroid_att_db_per_px: float
    hyaloid: np.ndarray | None = None  # (2, W): y and level (dB) of a posterior hyaloid
    extras: dict = field(default_factory=dict)

    def shifted(self, dy: np.ndarray) -> Geometry:
        """The same eye moved vertically by ``dy`` pixels per column."""
        dy = np.asarray(dy, dtype=np.float32)
        if not np.any(dy):
            return self
        xs = np.arange(self.width)

        def shift_pts(arr: np.ndarray) -> np.ndarray:
            out = arr.copy()
            if len(out):
                out[:, 1] += np.interp(out[:, 0], xs, dy)
            return out

        return replace(
            self,
            boundaries={k: v + dy for k, v in self.boundaries.items()},
            vessels=shift_pts(self.vessels),
            choroid_vessels=shift_pts(self.choroid_vessels),
            hyaloid=None if self.hyaloid is None else self.hyaloid + np.stack([dy, 0 * dy]),
        )


def _smooth_noise(rng: np.random.Generator, n: int, width: int, scale: float) -> np.ndarray:
    """A smooth random curve of length ``width`` (``n`` control points)."""
    ctrl = rng.normal(0.0, 1.0, (1, n + 2)).astype(np.float32)
    return cv2.resize(ctrl, (width, 1), interpolation=cv2.INTER_CUBIC)[0].astype(np.float64) * scale


def _fall(r: np.ndarray, radius: float) -> np.ndarray:
    """0 at the foveal centre rising to 1 outside ``radius`` (um)."""
    return 1.0 - np.exp(-((r / radius) ** 2.4))


def make_geometry(rng: np.random.Generator, height: int, width: int) -> Geometry:
    H, W = height, width
    dz = rng.uniform(1.4, 2.0) * 1000.0 / H  # axial range 1.4-2.0 mm
    dx = rng.uniform(6.0, 9.0) * 1000.0 / W  # scan length 6-9 mm
    xf = W * rng.uniform(0.36, 0.64)
    nasal = 1.0 if rng.random() < 0.5 else -1.0  # which side points to the disc
    x = np.arange(W, dtype=np.float64)
    s = (x - xf) * dx * nasal  # signed distance, nasal positive (um)
    r = np.abs(s)
    rp = rng.uniform(480.0, 720.0)  # pit radius

    def j(lo: float = 0.88, hi: float = 1.12) -> float:  # per-eye thickness jitter
        return rng.uniform(lo, hi)

    def wob(amp: float) -> np.ndarray:  # slow lateral thickness variation
        return 1.0 + _smooth_noise(rng, 6, W, amp)


    nas = np.clip(s / 3000.0, 0.0, 1.4)
    t_um = {
        "RNFL": _fall(r, 1.3 * rp) * 13.0 * j() * (1.0 + rng.uniform(1.5, 2.5) * nas) * wob(0.08),
        "GCL": _fall(r, rp) * 50.0 * j() * np.exp(-np.maximum(r - 1100.0, 0) / 3800.0),
        "IPL": _fall(r, 0.92 * rp) * 37.0 * j() * np.exp(-np.maximum(r - 1300.0, 0) / 6500.0),
        "INL": 1.5 + _fall(r, 0.78 * rp) * 35.0 * j() * np.exp(-np.maximum(r - 1500.0, 0) / 8000.0),
        "OPL": 3.0 + _fall(r, 0.62 * rp) * 23.0 * j(),
        "ONL": (62.0 * j() + 52.0 * j(0.8, 1.2) * np.exp(-((r / (0.9 * rp)) ** 2))) * wob(0.03),
        "ELM": np.full(W, max(4.0, 1.3 * dz)),
        "MZ": 21.0 * j() + 6.0 * np.exp(-((r / 500.0) ** 2)),
        "EZ": np.full(W, max(11.0 * j(), 2.6 * dz)),
        "OS": 19.0 * j() + 15.0 * j(0.7, 1.3) * np.exp(-((r / 450.0) ** 2)),
        "IZ": np.full(W, max(9.0 * j(), 2.2 * dz)),
        "RPE": np.full(W, max(19.0 * j(), 4.5 * dz)) * wob(0.04),
        "choroid": rng.uniform(200.0, 340.0) * (1.0 - 0.3 * np.clip(s / 3500.0, 0, 1)) * wob(0.1)
        * (1.0 + _smooth_noise(rng, W // 40, W, 0.05)),
    }
    t_px = {k: np.maximum(v / dz, _MIN_PX) for k, v in t_um.items()}

    # Bruch's membrane: tilt + bowl (edges higher) + slow undulation.
    u = (x - xf) / (W / 2.0)
    tilt = rng.uniform(-0.07, 0.07) * H
    bowl = rng.uniform(-0.01, 0.06) * H
    bm = tilt * u - bowl * u**2 + _smooth_noise(rng, 5, W, 0.004 * H)
    above = sum(t_px[b] for b in BAND_NAMES[:-1])  # ILM..BM thickness
    ilm_rel = bm - above
    # Place the eye: BM under the fovea at 55-68 % of the height, then keep the
    # whole retina comfortably inside the frame.
    y0 = rng.uniform(0.55, 0.68) * H - bm[int(xf)]
    for _ in range(8):
        top, bot = float((ilm_rel + y0).min()), float((bm + y0).max())
        if top >= 0.07 * H and bot <= 0.86 * H:
            break
        if bot - top > 0.79 * H:  # too steep: flatten
            bm = bm * 0.7
            ilm_rel = bm - above
            continue
        y0 += 0.07 * H - top if top < 0.07 * H else 0.86 * H - bot

    # Surfaces from BM upwards, CSI downwards.
    b: dict[str, np.ndarray] = {}
    cur = bm + y0
    b["BM"] = cur
    for i in range(len(BAND_NAMES) - 2, -1, -1):  # RPE ... RNFL
        cur = cur - t_px[BAND_NAMES[i]]
        b[BOUNDARY_NAMES[i]] = cur
    b["CSI"] = b["BM"] + t_px["choroid"]
    boundaries = {k: b[k].astype(np.float32) for k in BOUNDARY_NAMES}

    # Band reflectivity with per-eye and slow lateral variation.
    band_db = {
        k: (v + rng.normal(0.0, 0.7) + _smooth_noise(rng, 7, W, 0.6)).astype(np.float32)
        for k, v in BAND_LEVELS_DB.items()
    }
    band_db["sclera"] = np.full(W, SCLERA_DB + rng.normal(0, 1.0), np.float32)
    # The RNFL reflex weakens where the layer is thin (near the fovea).
    band_db["RNFL"] -= (3.0 * np.exp(-t_um["RNFL"] / 12.0)).astype(np.float32)

    vessels = _retinal_vessels(rng, boundaries, t_px, r, dx, dz, W)
    chv = _choroid_vessels(rng, boundaries, dx, dz, W)
    hyaloid = None
    if rng.random() < 0.3:  # faint, partly detached posterior hyaloid
        gap = rng.uniform(0.03, 0.12) * H + _smooth_noise(rng, 4, W, 0.02 * H)
        y = boundaries["ILM"].min() - np.abs(gap) + (boundaries["ILM"] - boundaries["ILM"].min()) * 0.5
        hyaloid = np.stack([y, 13.0 + _smooth_noise(rng, 5, W, 5.0)]).astype(np.float32)
    return Geometry(
        height=H, width=W, dx_um=dx, dz_um=dz, fovea_x=float(xf), boundaries=boundaries,
        band_db=band_db, vessels=vessels, choroid_vessels=chv,
        texture=rng.normal(0.0, 1.0, (max(H // 24, 4), max(W // 24, 4))).astype(np.float32),
        texture_db=rng.uniform(0.6, 1.1), ilm_reflex_db=rng.uniform(3.0, 7.0),
        rolloff_db=rng.uniform(2.0, 5.0), choroid_att_db_per_px=rng.uniform(0.006, 0.012) * dz,
        hyaloid=hyaloid, extras={"nasal_sign": nasal, "pit_radius_um": rp},
    )


def _retinal_vessels(rng, bnd, t_px, r, dx, dz, W) -> np.ndarray:
    n = int(rng.poisson(W / 260.0)) + 1
    rows = []
    for _ in range(n):
        xv = rng.uniform(0.02, 0.98) * W
        xi = int(xv)
        if r[xi] < 450.0:  # foveal avascular zone
            continue
        diam = rng.uniform(20.0, 50.0) if r[xi] < 1500 else rng.uniform(30.0, 100.0)
        rx, ry = max(diam / 2 / dx, 1.5), max(0.8 * diam / 2 / dz, 2.0)
        # centre near the RNFL/GCL junction, below the ILM
        yv = bnd["RNFL_GCL"][xi] + rng.uniform(-0.2, 0.5) * t_px["GCL"][xi]
        yv = max(yv, bnd["ILM"][xi] + ry + 1.5)
        rows.append((xv, yv, rx, ry, rng.uniform(28.0, 32.0), rng.uniform(3.5, 7.0) * diam / 70))
    return np.array(rows, dtype=np.float32).reshape(-1, 6)


def _choroid_vessels(rng, bnd, dx, dz, W) -> np.ndarray:
    bm, csi = bnd["BM"], bnd["CSI"]
    n = int(W * rng.uniform(0.10, 0.15))
    xv = rng.uniform(0, W, n)
    xi = np.minimum(xv.astype(np.int64), W - 1)
    th = csi[xi] - bm[xi]
    depth = rng.uniform(0.08, 1.0, n) ** 0.7  # fraction of the choroid, skewed deep
    diam = (15.0 + 170.0 * depth**1.3) * rng.uniform(0.6, 1.3, n)  # Sattler -> Haller
    rx = diam / 2 / dx * rng.uniform(1.2, 2.6, n)
    ry = np.minimum(diam / 2 / dz * rng.uniform(0.6, 1.0, n), 0.3 * th)
    yv = np.clip(bm[xi] + depth * th, bm[xi] + ry + 2.5, csi[xi] - 0.3 * ry)
    yv = np.maximum(yv, bm[xi] + ry + 2.5)
    return np.stack([xv, yv, rx, ry, rng.uniform(7.0, 11.0, n)], axis=1).astype(np.float32)


def _add_jump(acc: np.ndarray, y: np.ndarray, delta: np.ndarray, H: int, W: int) -> None:
    """Add a step of ``delta`` starting at sub-pixel depth ``y`` in every column."""
    yc = np.clip(y, 0.0, float(H))
    r = np.floor(yc).astype(np.int64)
    f = yc - r
    cols = np.arange(W)
    acc[r, cols] += delta * (1.0 - f)
    acc[r + 1, cols] += delta * f


def render_levels(g: Geometry) -> np.ndarray:
    """Reflectivity in dB above the noise floor, float32 (H, W), before speckle."""
    H, W = g.height, g.width
    steps = np.zeros((H + 2, W), np.float32)
    prev = np.full(W, VITREOUS_DB, np.float32)
    for i, name in enumerate(BOUNDARY_NAMES):
        new = g.band_db[BAND_NAMES[i]] if i < len(BAND_NAMES) else g.band_db["sclera"]
        _add_jump(steps, g.boundaries[name], new - prev, H, W)
        prev = new
    # thin bright ILM reflex (visible even in the foveal pit)
    ilm = g.boundaries["ILM"]
    spike = np.full(W, g.ilm_reflex_db, np.float32)
    _add_jump(steps, ilm, spike, H, W)
    _add_jump(steps, ilm + 1.2, -spike, H, W)
    if g.hyaloid is not None:
        lvl = np.maximum(g.hyaloid[1], VITREOUS_DB) - VITREOUS_DB
        _add_jump(steps, g.hyaloid[0], lvl, H, W)
        _add_jump(steps, g.hyaloid[0] + 1.8, -lvl, H, W)
    # vessel shadows: everything below a vessel loses signal
    xs = np.arange(W, dtype=np.float32)
    for xv, yv, rx, ry, _lvl, sh in g.vessels:
        prof = np.clip(1.15 - np.abs(xs - xv) / (rx * 1.15), 0.0, 1.0) ** 0.7
        _add_jump(steps, np.full(W, yv + 0.3 * ry, np.float32), -sh * prof, H, W)

    out = np.empty((H, W), np.float32)
    acc = np.full(W, VITREOUS_DB, np.float32)
    for i in range(H):  # integrate the steps down each A-scan
        acc += steps[i]
        out[i] = acc

    # depth: spectrometer roll-off and attenuation below the RPE
    out -= (np.arange(H, dtype=np.float32) * (g.rolloff_db / H))[:, None]
    bm, csi = g.boundaries["BM"], g.boundaries["CSI"]
    r0 = int(np.clip(np.floor(bm.min()), 0, H))
    if r0 < H:
        yy = np.arange(r0, H, dtype=np.float32)[:, None]
        below = out[r0:]
        below -= np.maximum(yy - bm[None, :], 0.0) * g.choroid_att_db_per_px
        below -= np.maximum(yy - csi[None, :], 0.0) * (2.5 * g.choroid_att_db_per_px)
        # choroidal vessel lumina (dark), confined to the choroid
        r1 = int(np.clip(np.ceil(csi.max()) + 2, r0, H))
        if r1 > r0 and len(g.choroid_vessels):
            lum = np.zeros((r1 - r0, W), np.float32)
            for xv, yv, rx, ry, c in g.choroid_vessels:
                cv2.ellipse(lum, (int(xv * 16), int((yv - r0) * 16)),
                            (int(rx * 16), int(ry * 16)), 0, 0, 360, -float(c), -1, cv2.LINE_8, 4)
            lum = cv2.GaussianBlur(lum, (0, 0), 2.0)
            yy = yy[: r1 - r0]
            inside = (yy >= bm[None, :] + 2.5) & (yy < csi[None, :])
            below[: r1 - r0] += lum * inside
    # retinal vessel walls/lumen (hyper-reflective cross-sections)
    for xv, yv, rx, ry, lvl, _sh in g.vessels:
        cv2.ellipse(out, (int(xv * 16), int(yv * 16)), (int(rx * 16), int(ry * 16)),
                    0, 0, 360, float(lvl), -1, cv2.LINE_8, 4)
        # lumen: the lower part is darker (the bright top is the vessel wall/blood column)
        cv2.ellipse(out, (int(xv * 16), int((yv + 0.45 * ry) * 16)),
                    (int(rx * 0.75 * 16), int(ry * 0.5 * 16)), 0, 0, 360, float(lvl) - 5.0, -1,
                    cv2.LINE_8, 4)
    return out


def texture_db(g: Geometry, height: int, width: int) -> np.ndarray:
    """Mild tissue heterogeneity beyond speckle (dB), at the requested size.

    Applied by the caller together with the speckle (both multiply the
    tissue signal), at half resolution to save time.
    """
    tex = cv2.resize(g.texture, (width, height), interpolation=cv2.INTER_LINEAR)
    tex *= np.float32(g.texture_db)
    return tex
