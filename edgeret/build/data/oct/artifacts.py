"""Quality degradations behind the four sub-labels.

* deficiency / slight deficiency: part of the retina is lost, either cut off
  at the top or bottom of the frame (the eye was mis-positioned in depth and
  re-tilted so one side usually leaves first; half of the top cut-offs also
  show the SD-OCT fold-over ghost of the tissue beyond the zero-delay line)
  or lost to signal loss across a band of A-scans
  (media-opacity shadow, pupil vignetting at one side, a blink). The lost
  part is set by area: deficiency removes 30-60 % of the retina area
  (ILM..BM) seen in the clean scan, slight deficiency 3-12 %. A column
  counts as lost when its signal drops by >= :data:`LOSS_VISIBLE_DB`.
* blur: defocus; the reflectivity is smoothed laterally (and a little
  axially), the speckle grain grows and its contrast drops a little.
* noise: low SNR; the tissue signal sinks 22-27 dB towards the noise floor,
  speckle is fully developed, and fine detector noise fills the frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .layers import Geometry

LOSS_VISIBLE_DB = 15.0
DEFICIENCY_RANGE = (0.30, 0.60)  # fraction of retina area lost
SLIGHT_RANGE = (0.03, 0.12)
_DEF_MODES = (("cut_top", 0.30), ("cut_bottom", 0.15), ("shadow", 0.25),
              ("vignette", 0.15), ("blink", 0.15))
_SLIGHT_MODES = (("cut_top", 0.30), ("cut_bottom", 0.10), ("shadow", 0.30),
                 ("vignette", 0.15), ("blink", 0.15))


@dataclass
class ArtifactPlan:
    dy: np.ndarray  # (W,) vertical displacement of the eye (px)
    loss_db: np.ndarray  # (W,) signal loss per A-scan (dB, >= 0)
    blink: np.ndarray  # (W,) bool, A-scans with no signal at all
    blur: dict | None = None
    noise: dict | None = None
    mirror_db: float | None = None  # folded (complex-conjugate) ghost of tissue above row 0
    events: list[dict] = field(default_factory=list)
    visible_fraction: float = 1.0

    def column_visible(self) -> np.ndarray:
        return (self.loss_db < LOSS_VISIBLE_DB) & ~self.blink


def visible_fraction(g: Geometry, dy: np.ndarray, loss_db: np.ndarray, blink: np.ndarray) -> float:
    """Retina area (ILM..BM) still visible, relative to the clean scan."""
    ilm, bm = g.boundaries["ILM"], g.boundaries["BM"]
    full = float(np.sum(bm - ilm))
    H = float(g.height)
    vis = (np.clip(bm + dy, 0, H) - np.clip(ilm + dy, 0, H)) * ((loss_db < LOSS_VISIBLE_DB) & ~blink)
    return float(np.sum(vis)) / full


def _pick(rng: np.random.Generator, modes, exclude=()) -> str:
    names = [m for m, _ in modes if m not in exclude]
    p = np.array([w for m, w in modes if m not in exclude])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _bisect(fn, lo: float, hi: float, target: float, iters: int = 30) -> float:
    """x in [lo, hi] with fn(x) ~= target; fn decreasing in x."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if fn(mid) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _apply_loss(rng, g: Geometry, plan: ArtifactPlan, mode: str, lost: float, strong: bool) -> dict:
    W, H = g.width, g.height
    x = np.arange(W, dtype=np.float64)
    base_vis = visible_fraction(g, plan.dy, plan.loss_db, plan.blink)
    target = base_vis - lost
    ev: dict = {"mode": mode, "target_lost": round(lost, 4)}

    if mode in ("cut_top", "cut_bottom"):
        sign = -1.0 if mode == "cut_top" else 1.0
        # re-tilt the eye so the scan ends differ by 4-30 % of the height:
        # usually one side leaves the frame first
        tilt = rng.uniform(0.04, 0.30) * H * rng.choice([-1.0, 1.0])
        own = np.polyfit(x, g.boundaries["BM"] + plan.dy, 1)[0] * (W - 1)
        slope = (tilt - own) * (x / (W - 1) - 0.5)
        base_dy = plan.dy.copy()

        def f(shift: float) -> float:
            return visible_fraction(g, base_dy + slope + sign * shift, plan.loss_db, plan.blink)

        shift = _bisect(f, -0.25 * H, 1.5 * H, target)
        plan.dy = (base_dy + slope + sign * shift).astype(np.float32)
        ev.update(tilt_px=round(float(tilt), 1), shift_px=round(float(shift), 1))
        if mode == "cut_top" and rng.random() < 0.5:
            # SD-OCT folds tissue beyond the zero-delay line back into the frame
            plan.mirror_db = float(rng.uniform(4.0, 10.0))
            ev["mirror_db"] = round(plan.mirror_db, 1)
        return ev

    depth = rng.uniform(24.0, 34.0) if strong else rng.uniform(20.0, 30.0)
    if mode == "blink":
        centre = rng.uniform(0.0, W)

        def band(w: float) -> np.ndarray:
            return np.abs(x - centre) < w / 2

        w = _bisect(lambda w: visible_fraction(g, plan.dy, plan.loss_db, plan.blink | band(w)),
                    0.0, 2.0 * W, target)
        plan.blink = plan.blink | band(w)
        ev.update(centre=round(centre, 1), width=round(w, 1))
        return ev

    if mode == "shadow":
        centre = rng.uniform(0.1, 0.9) * W
        edge = rng.uniform(0.03, 0.08) * W

        def prof(w: float) -> np.ndarray:
            d = np.abs(x - centre) - w / 2
            return depth / (1.0 + np.exp(d / (edge / 3)))

    else:  # vignette from one side, fading over a ramp
        left = rng.random() < 0.5
        dist = x if left else (W - 1 - x)
        ramp = rng.uniform(0.3, 0.7)

        def prof(w: float) -> np.ndarray:
            return depth * np.clip(1.0 - dist / max(w, 1e-3), 0.0, 1.0) ** ramp

    w = _bisect(lambda w: visible_fraction(g, plan.dy, np.maximum(plan.loss_db, prof(w)),
                                           plan.blink), 0.0, 3.0 * W, target)
    plan.loss_db = np.maximum(plan.loss_db, prof(w)).astype(np.float32)
    ev.update(depth_db=round(depth, 1), width=round(w, 1))
    return ev


def plan_artifacts(rng: np.random.Generator, labels: dict[str, bool], g: Geometry) -> ArtifactPlan:
    """Random degradations realising ``labels`` for the clean eye ``g``."""
    W, H = g.width, g.height
    plan = ArtifactPlan(dy=np.zeros(W, np.float32), loss_db=np.zeros(W, np.float32),
                        blink=np.zeros(W, bool))
    used: list[str] = []
    if labels["deficiency"]:
        mode = _pick(rng, _DEF_MODES)
        lost = rng.uniform(*DEFICIENCY_RANGE)
        plan.events.append({"label": "deficiency", **_apply_loss(rng, g, plan, mode, lost, True)})
        used.append(mode)
    if labels["slight_deficiency"]:
        excl = ("cut_top", "cut_bottom") if any(m.startswith("cut") for m in used) else ()
        mode = _pick(rng, _SLIGHT_MODES, excl)
        lost = rng.uniform(*SLIGHT_RANGE)
        plan.events.append({"label": "slight_deficiency",
                            **_apply_loss(rng, g, plan, mode, lost, False)})
    if labels["blur"]:
        s = W / 1024.0
        plan.blur = {
            "sigma_x": rng.uniform(4.5, 8.0) * s,
            "sigma_y": rng.uniform(1.5, 2.8) * H / 640.0,
            "speckle_sigma_x": rng.uniform(1.6, 3.0),
            "speckle_sigma_y": rng.uniform(0.6, 1.1),
            "signal_drop_db": rng.uniform(1.0, 4.0),
        }
    if labels["noise"]:
        plan.noise = {
            "snr_drop_db": rng.uniform(22.0, 27.0),
            "speckle_std_db": rng.uniform(4.0, 5.0),
            "lo_db": rng.uniform(-4.0, -1.0),
            "range_db": rng.uniform(25.0, 31.0),
        }
    plan.visible_fraction = visible_fraction(g, plan.dy, plan.loss_db, plan.blink)
    return plan
