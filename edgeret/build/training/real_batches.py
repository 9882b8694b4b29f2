"""Batches and losses shared by the fundus tasks' real-data recipes (build host; torch).

A batch is drawn from named pools of sample indices at stated shares (e.g. labelled real photos,
weakly labelled clinical photos, real photos degraded into poor ones, phantoms); every image gets
the same augmentation: the 8 flips/rotations, colour gain +-7 %, brightness +-15 %, and one in three
resampled at 0.35-0.8x and back (a lower-resolution camera), the FOV surround kept black.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from edgeret.build.training.degrade import degrade
from edgeret.build.training.real_fundus import FundusSet

DEGRADED = "degraded"  # the pool whose images are degraded into poor ones


def augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    inside = (img.max(axis=2) > 0)[..., None]
    if rng.random() < 1 / 3:
        side = max(32, int(img.shape[0] * rng.uniform(0.35, 0.8)))
        small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, img.shape[:2][::-1], interpolation=cv2.INTER_LINEAR)
    img = img * rng.uniform(0.85, 1.15) * rng.uniform(0.93, 1.07, 3).astype(np.float32)
    img = np.clip(img, 0, 1) * inside
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.5:
        img = img[::-1]
    if rng.random() < 0.5:
        img = img.transpose(1, 0, 2)
    return np.ascontiguousarray(img, dtype=np.float32)


def draw(fs: FundusSet, pools: Mapping[str, np.ndarray], shares: Mapping[str, float], n: int,
         rng: np.random.Generator) -> list[tuple[int, str, np.ndarray]]:
    """n (sample index, pool name, augmented float32 crop) draws; the DEGRADED pool's are degraded."""
    names = [k for k in pools if len(pools[k])]
    p = np.array([shares[k] for k in names])
    out = []
    for pick in rng.choice(len(names), size=n, p=p / p.sum()):
        pool = names[pick]
        i = int(rng.choice(pools[pool]))
        img = fs.images[i].astype(np.float32) / 255.0
        if pool == DEGRADED:
            img, _ = degrade(img, rng)
        out.append((i, pool, augment(img, rng)))
    return out


def binary_quality_loss(logits: torch.Tensor, poor: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Gradable-or-not likelihood on three-class quality logits (good, usable, poor), weighted mean:
    real labels never say good vs usable, so that split is left to what the model already knows."""
    log_p = F.log_softmax(logits, dim=1)
    nll = -(poor * log_p[:, 2] + (1 - poor) * torch.logsumexp(log_p[:, :2], dim=1))
    return (weight * nll).sum() / weight.sum().clamp(min=1e-6)
