"""Eye geometry and the retinal background: field of view, choroid, macula, optic disc.

Everything is laid out in the *canonical* orientation, a left eye (OS) as the
camera sees it: optic disc on the left (nasal), fovea near the image centre,
superior retina at the top. Right eyes (OD) are the horizontal mirror image,
applied once at the end (:mod:`.generate`).

Images are float32 reflectance in roughly [0, 1.3] (RGB); the illumination
field multiplies it at the end, so structures darken toward the rim like a
real flash photograph. Pixel sizes are given at 512 x 512 and scale with the
image (``geom.scale``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

REF_SIZE = 512

#: Background (choroid seen through the RPE) colour for a fair and a heavily
#: pigmented fundus; a sample interpolates by its ``pigment``.
FAIR_RGB = np.array([1.05, 0.47, 0.34], np.float32)
DARK_RGB = np.array([0.85, 0.31, 0.19], np.float32)


@dataclass(frozen=True)
class EyeGeometry:
    size: int
    scale: float  # size / 512
    cx: float
    cy: float
    radius: float  # FOV radius (px)
    fovea: tuple[float, float]  # (x, y), canonical layout
    disc: tuple[float, float]
    disc_rx: float  # horizontal disc radius (px)
    disc_ry: float
    cup_ratio: float  # vertical cup-to-disc ratio
    faz_radius: float  # vessels stop this far from the fovea
    pigment: float  # 0 fair .. 1 heavily pigmented

    @property
    def dd(self) -> float:
        """Disc diameter in pixels (the clinical unit of distance on the fundus)."""
        return 2.0 * self.disc_rx


def _gauss_lut() -> np.ndarray:
    """Centres of 256 equiprobable bins of N(0, 1) (by bisection on erf), unit variance."""
    out = []
    for i in range(256):
        p, lo, hi = (i + 0.5) / 256, -6.0, 6.0
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p else (lo, mid)
        out.append(0.5 * (lo + hi))
    lut = np.array(out, np.float64)
    return (lut / lut.std()).astype(np.float32)


_GAUSS_LUT = _gauss_lut()


def gauss_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard-normal float32 noise, 256-level quantised: random bytes through a lookup
    table, ~8x faster than Generator.standard_normal (plenty for image noise)."""
    n = int(np.prod(shape))
    b = np.frombuffer(rng.bytes(n), np.uint8).reshape(n, 1)
    return cv2.LUT(b, _GAUSS_LUT).reshape(shape)


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def sample_geometry(rng: np.random.Generator, size: int) -> EyeGeometry:
    """Draw a plausible macula-centred field: FOV, disc ~1/6.5 FOV, fovea 2.5 DD temporal."""
    s = size / REF_SIZE
    cx = cy = (size - 1) / 2.0
    radius = size * rng.uniform(0.46, 0.49)
    dd = 2.0 * radius / rng.uniform(6.0, 7.0)
    rx = dd / 2.0
    ry = rx * rng.uniform(1.0, 1.12)  # discs are slightly vertically oval
    fx = cx + rng.uniform(-0.02, 0.10) * radius  # + = temporal (right in OS layout)
    fy = cy + rng.uniform(-0.05, 0.05) * radius
    dist = dd * rng.uniform(2.3, 2.7)
    # the fovea lies a little below the disc; the whole eye may be tilted a few degrees
    angle = math.pi - math.atan2(rng.uniform(0.05, 0.35) * dd, dist) + rng.normal(0, 0.05)
    dx, dy = fx + dist * math.cos(angle), fy - dist * math.sin(angle)
    excess = math.hypot(dx - cx, dy - cy) - (radius - 0.75 * dd)
    if excess > 0:  # keep the disc inside the field: slide the eye temporally
        fx, dx = fx + excess, dx + excess
    return EyeGeometry(
        size=size, scale=s, cx=cx, cy=cy, radius=radius, fovea=(fx, fy), disc=(dx, dy),
        disc_rx=rx, disc_ry=ry, cup_ratio=float(rng.uniform(0.2, 0.55)),
        faz_radius=dd * rng.uniform(0.3, 0.42), pigment=float(rng.beta(2.0, 2.0)),
    )


def fov_alpha(geom: EyeGeometry) -> np.ndarray:
    """Anti-aliased disc of the field of view, float32 in [0, 1]."""
    canvas = np.zeros((geom.size, geom.size), np.uint8)
    cv2.circle(canvas, (round(geom.cx * 16), round(geom.cy * 16)), round(geom.radius * 16), 255,
               -1, cv2.LINE_AA, 4)
    return canvas.astype(np.float32) * (1.0 / 255.0)


def _noise(rng: np.random.Generator, n: int, cells: int, interp=cv2.INTER_CUBIC) -> np.ndarray:
    grid = gauss_noise(rng, (cells, cells))
    return cv2.resize(grid, (n, n), interpolation=interp)


def render_background(geom: EyeGeometry, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance (H x W x 3) before disc and vessels, and the light (H x W).

    The light is the flash illumination times the single-channel fine texture
    (nerve-fibre sheen, grain); the image is reflectance x light.

    Smooth fields (mottling, tigroid choroid, macula, illumination) are built on a
    quarter-resolution grid and upsampled; only a fine grain is made at half size.
    """
    size = geom.size
    n = max(32, size // 4)
    f = size / n
    c = (np.arange(n, dtype=np.float32) + 0.5) * f - 0.5
    yy, xx = c[:, None], c[None, :]

    base = FAIR_RGB + (DARK_RGB - FAIR_RGB) * geom.pigment
    base = base * np.exp(rng.normal(0, [0.04, 0.08, 0.1])).astype(np.float32)  # camera balance
    refl = np.empty((n, n, 3), np.float32)
    refl[:] = base

    mottle = 0.05 * _noise(rng, n, 5) + 0.03 * _noise(rng, n, 11)
    refl *= (1.0 + mottle)[..., None]
    # tigroid choroid: ridged noise -> orange choroidal vessels with dark interstices,
    # visible in fair fundi, hidden by pigment in dark ones
    ridge = 1.0 - np.abs(_noise(rng, n, int(rng.integers(20, 32))))
    ridge = ridge - ridge.mean()
    tig = (1.0 - geom.pigment) ** 2 * rng.uniform(0.02, 0.08)
    refl *= (1.0 + tig * ridge[..., None] * np.array([0.6, 1.2, 1.0], np.float32))

    # macula: darker, browner (luteal pigment); fovea: a small dark centre
    fx, fy = geom.fovea
    d2 = (xx - fx) ** 2 + (yy - fy) ** 2
    sm = geom.dd * rng.uniform(0.75, 1.0)
    mac = np.exp(-d2 / (2 * sm * sm))
    mac_amp = np.array([0.12, 0.30, 0.30], np.float32) * rng.uniform(0.8, 1.2)
    sf = geom.dd * rng.uniform(0.12, 0.17)
    fov_c = np.exp(-d2 / (2 * sf * sf))
    fov_amp = np.array([0.12, 0.25, 0.22], np.float32) * rng.uniform(0.8, 1.2)
    refl *= 1.0 - mac[..., None] * mac_amp - fov_c[..., None] * fov_amp

    # illumination: bright centre (slightly off the optical axis), darker rim
    ix = geom.cx + rng.normal(0, 0.06) * geom.radius
    iy = geom.cy + rng.normal(0, 0.06) * geom.radius
    r = np.sqrt((xx - ix) ** 2 + (yy - iy) ** 2) / geom.radius
    illum = 1.0 - rng.uniform(0.15, 0.35) * r ** rng.uniform(1.8, 2.8)
    illum *= 1.0 - 0.25 * smoothstep(0.9, 1.02, r)
    illum *= rng.uniform(0.92, 1.05)

    refl = cv2.resize(refl, (size, size), interpolation=cv2.INTER_CUBIC)
    illum = cv2.resize(illum.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    texture = nerve_fibre_sheen(geom, rng)
    texture += gauss_noise(rng, texture.shape) * np.float32(0.012)
    texture += 1.0
    illum *= cv2.resize(texture, (size, size), interpolation=cv2.INTER_LINEAR)
    return refl, illum


def paint_disc(refl: np.ndarray, geom: EyeGeometry, rng: np.random.Generator) -> None:
    """Optic disc in place: yellow-orange rim, paler cup, soft edge, faint halo, maybe a crescent."""
    dx0, dy0 = geom.disc
    h = int(geom.disc_ry * 1.9) + 3
    x0, x1 = max(0, int(dx0) - h), min(geom.size, int(dx0) + h + 1)
    y0, y1 = max(0, int(dy0) - h), min(geom.size, int(dy0) + h + 1)
    if x0 >= x1 or y0 >= y1:
        return
    xs = np.arange(x0, x1, dtype=np.float32) - dx0
    ys = np.arange(y0, y1, dtype=np.float32) - dy0
    X, Y = xs[None, :], ys[:, None]
    rx, ry = geom.disc_rx, geom.disc_ry
    q = np.sqrt((X / rx) ** 2 + (Y / ry) ** 2)
    edge = rng.uniform(0.08, 0.18)
    a_disc = 1.0 - smoothstep(1.0 - edge, 1.0 + edge * 0.5, q)
    cr = geom.cup_ratio
    cox = rng.uniform(0.0, 0.2) * rx  # cups sit a little temporal
    coy = rng.normal(0, 0.05) * ry
    cq = np.sqrt(((X - cox) / (cr * rx * 1.05)) ** 2 + ((Y - coy) / (cr * ry)) ** 2)
    a_cup = 1.0 - smoothstep(0.55, 1.25, cq)
    warm = rng.uniform(-0.06, 0.06)
    rim = np.array([1.22, 0.66 + warm, 0.42 + warm], np.float32)
    cup = np.array([1.35, 1.05, 0.78], np.float32)
    tilt = (1.0 + 0.12 * (X / rx))[..., None]  # temporal rim paler than nasal
    colour = (rim + (cup - rim) * a_cup[..., None]) * tilt
    patch = refl[y0:y1, x0:x1]
    halo = 0.04 * (1.0 - smoothstep(0.9, 1.4, q))[..., None]
    patch *= 1.0 + halo
    if rng.random() < 0.35:  # peripapillary atrophy crescent on the temporal side
        ang = np.clip(X / np.maximum(q * rx, 1e-3), 0, 1)
        band = smoothstep(0.92, 1.0, q) * (1.0 - smoothstep(1.12, 1.3, q)) * ang ** 2
        pale = np.array([1.05, 0.75, 0.55], np.float32) if rng.random() < 0.6 else \
            np.array([0.45, 0.22, 0.12], np.float32)
        a = (band * rng.uniform(0.5, 0.9))[..., None]
        patch[:] = patch * (1 - a) + pale * a
    a = a_disc[..., None]
    patch[:] = patch * (1.0 - a) + colour * a


def nerve_fibre_sheen(geom: EyeGeometry, rng: np.random.Generator) -> np.ndarray:
    """Fine bright striations radiating from the disc, strongest in the arcuate bundles.

    Drawn in polar coordinates about the disc (streaks along the radius) and
    unwarped with cv2.remap; returned at half resolution. Young, fair fundi show
    it most.
    """
    half = max(32, geom.size // 2)
    k = half / geom.size
    n_theta, n_rho = 720, 128
    streaks = cv2.resize(gauss_noise(rng, (n_theta, 6)), (n_rho, n_theta),
                         interpolation=cv2.INTER_LINEAR)
    streaks = np.maximum(streaks, 0)
    theta = np.linspace(0, 2 * np.pi, n_theta, endpoint=False, dtype=np.float32)[:, None]
    rho = np.linspace(0, 1, n_rho, dtype=np.float32)[None, :]
    max_r = 4.0 * geom.dd
    # image-space angles (y down): superior/inferior bundles at 270 / 90 degrees
    arcuate = np.exp(-((np.abs(np.sin(theta)) - 0.85) ** 2) / 0.08)
    radial = smoothstep(0.1, 0.16, rho) * np.exp(-rho * max_r / (1.6 * geom.dd))
    amp = (1.0 - 0.7 * geom.pigment) * rng.uniform(0.03, 0.10)
    polar = (streaks * arcuate * radial * amp).astype(np.float32)
    c = (np.arange(half, dtype=np.float32) + 0.5) / k - 0.5
    gx = np.broadcast_to(c[None, :] - np.float32(geom.disc[0]), (half, half))
    gy = np.broadcast_to(c[:, None] - np.float32(geom.disc[1]), (half, half))
    mag, ang = cv2.cartToPolar(np.ascontiguousarray(gx), np.ascontiguousarray(gy))
    return cv2.remap(polar, mag * np.float32((n_rho - 1) / max_r),
                     ang * np.float32(n_theta / (2 * np.pi)), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
