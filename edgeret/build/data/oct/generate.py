"""Deterministic synthetic macular OCT B-scans with quality labels.

One seed gives one eye: :func:`generate_oct` draws from
``numpy.random.Generator(PCG64(seed))`` three independent sub-streams
(anatomy, speckle, quality), so forcing different labels on the same seed
changes only the degradation -- the anatomy and the speckle grain stay the
same, which makes clean/degraded pairs directly comparable.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .artifacts import plan_artifacts
from .layers import BOUNDARY_NAMES, make_geometry, render_levels, texture_db
from .quality import GRADES, grade_from_labels, normalize_labels, sample_labels
from .speckle import base_speckle, compose_db, floor_field, speckle_db, to_display

_NO_SIGNAL_DB = -40.0


@dataclass
class OctSample:
    """One synthetic B-scan.

    ``image``            uint8 or uint16 (H, W), log-compressed display
    ``labels``           noise / deficiency / blur / slight_deficiency -> bool
    ``grade``            "good" / "usable" / "poor" (:func:`grade_from_labels`)
    ``layer_boundaries`` surface name -> float32 (W,) y position (pixels, top
                         of the pixel grid = 0); NaN where the surface lies
                         outside the frame. Order: :data:`BOUNDARY_NAMES`.
    ``retina_mask``      bool (H, W): retina (ILM..BM) inside the frame and
                         not lost to signal loss
    ``meta``             generation parameters: pixel pitch, fovea position,
                         display window (``lo_db``/``hi_db``), artefacts
    """

    image: np.ndarray
    labels: dict[str, bool]
    grade: str
    layer_boundaries: dict[str, np.ndarray]
    retina_mask: np.ndarray
    meta: dict = field(default_factory=dict)


def _resolve_labels(rng, quality: str | None, labels: Mapping[str, bool] | None) -> dict:
    if quality is not None and quality not in GRADES:
        raise ValueError(f"quality must be one of {GRADES} or None, got {quality!r}")
    if labels is not None:
        lab = normalize_labels(labels)
        if quality is not None and grade_from_labels(lab) != quality:
            raise ValueError(f"labels {lab} grade as {grade_from_labels(lab)!r}, not {quality!r}")
        return lab
    return sample_labels(rng, quality)


def _add_mirror_ghost(level: np.ndarray, g, atten_db: float) -> None:
    """Fold tissue lying above the frame back in, upside down and dimmer."""
    H, W = g.height, g.width
    m = int(min(np.ceil(-float(np.min(g.boundaries["ILM"]))) + 4, H))
    if m <= 4:
        return
    up = render_levels(replace(g.shifted(np.full(W, m, np.float32)), height=m))
    ghost = up[::-1] - np.float32(atten_db)
    k = np.float32(np.log(10.0) / 10.0)
    level[:m] = np.logaddexp(level[:m] * k, ghost * k) / k


def generate_oct(
    seed: int,
    height: int = 640,
    width: int = 1024,
    quality: str | None = None,
    labels: Mapping[str, bool] | None = None,
    bit_depth: int = 8,
) -> OctSample:
    """A synthetic macular OCT B-scan, byte-identical for the same arguments.

    ``quality=None`` draws the label combination with the frequencies of the
    paper's Table 1 (good 0.322, usable 0.256, poor 0.423; see
    :data:`~edgeret.build.data.oct.quality.LABEL_COMBINATIONS`); ``quality="good"|
    "usable"|"poor"`` draws within that grade; ``labels`` forces an exact
    combination (missing keys are False; must agree with ``quality`` if both
    are given). ``bit_depth`` is 8 (uint8) or 16 (uint16).
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    if height < 64 or width < 64:
        raise ValueError(f"image must be at least 64x64, got {height}x{width}")
    root = np.random.Generator(np.random.PCG64(seed))
    s_anat, s_spk, s_q = (int(v) for v in root.integers(0, 2**63 - 1, size=3))
    rng_anat = np.random.Generator(np.random.PCG64(s_anat))
    rng_spk = np.random.Generator(np.random.PCG64(s_spk))
    rng_q = np.random.Generator(np.random.PCG64(s_q))

    lab = _resolve_labels(rng_q, quality, labels)
    H, W = height, width
    geom = make_geometry(rng_anat, H, W)
    spk_base = base_speckle(rng_spk, H, W)
    disp = {"lo_db": rng_spk.uniform(0.5, 3.5), "range_db": rng_spk.uniform(34.0, 39.0),
            "speckle_std_db": rng_spk.uniform(2.8, 3.8), "psf_x": rng_spk.uniform(0.5, 0.8),
            "psf_y": rng_spk.uniform(0.6, 0.9)}
    gain = np.interp(np.arange(W), np.linspace(0, W - 1, 9), rng_spk.normal(0, 0.8, 9))

    plan = plan_artifacts(rng_q, lab, geom)
    g = geom.shifted(plan.dy)

    level = render_levels(g)
    if plan.mirror_db is not None:
        _add_mirror_ghost(level, g, plan.mirror_db)
    level += gain.astype(np.float32)[None, :]
    if np.any(plan.loss_db):
        level -= plan.loss_db[None, :]
    if plan.blink.any():
        level[:, plan.blink] = _NO_SIGNAL_DB

    sx, sy = disp["psf_x"], disp["psf_y"]
    spk_sx, spk_sy, std = 0.7, 0.45, disp["speckle_std_db"]
    if plan.blur is not None:
        b = plan.blur
        sx, sy = float(np.hypot(sx, b["sigma_x"])), float(np.hypot(sy, b["sigma_y"]))
        spk_sx, spk_sy = b["speckle_sigma_x"], b["speckle_sigma_y"]
        std *= 0.8
        level -= np.float32(b["signal_drop_db"])
    level = cv2.GaussianBlur(level, (0, 0), sx, sigmaY=sy)

    lo, rng_db = disp["lo_db"], disp["range_db"]
    if plan.noise is not None:
        nz = plan.noise
        level -= np.float32(nz["snr_drop_db"])
        std = nz["speckle_std_db"]
        spk_sx, spk_sy = 0.4, 0.35
        lo, rng_db = nz["lo_db"], nz["range_db"]
    tex = texture_db(geom, *spk_base.shape)
    spk = speckle_db(spk_base, H, W, std, spk_sx, spk_sy, add_db=tex)
    total = compose_db(level, spk, floor_field(spk_base, H, W))
    image = to_display(total, lo, lo + rng_db, bit_depth)

    bnd = {}
    for name in BOUNDARY_NAMES:
        v = g.boundaries[name].astype(np.float32)
        bnd[name] = np.where((v >= 0) & (v < H), v, np.nan).astype(np.float32)
    yy = np.arange(H, dtype=np.float32)[:, None] + 0.5
    mask = (yy >= g.boundaries["ILM"][None, :]) & (yy < g.boundaries["BM"][None, :])
    mask &= plan.column_visible()[None, :]

    meta = {
        "seed": seed, "dx_um": geom.dx_um, "dz_um": geom.dz_um, "fovea_x": geom.fovea_x,
        "lo_db": float(lo), "hi_db": float(lo + rng_db), "bit_depth": bit_depth,
        "visible_fraction": plan.visible_fraction, "events": plan.events,
        "blur": plan.blur, "noise": plan.noise, "nasal_sign": geom.extras["nasal_sign"],
    }
    return OctSample(image=image, labels=lab, grade=grade_from_labels(lab),
                     layer_boundaries=bnd, retina_mask=mask, meta=meta)


def calibration_bscans(
    n: int, seed: int = 0, height: int = 640, width: int = 1024
) -> Iterator[np.ndarray]:
    """``n`` uint8 B-scans for quantisation calibration.

    Grades follow ``quality=None`` (the paper's mix), so calibration covers
    clean, blurred, noisy and partly missing scans. Per-image seeds come from
    ``Generator(PCG64(seed))``; the sequence is deterministic.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    for s in rng.integers(0, 2**31 - 1, size=n):
        yield generate_oct(int(s), height=height, width=width).image
