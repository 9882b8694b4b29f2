"""Patient-level k-fold splits and the figures reported over them (build host, pure numpy).

Several photographs of one patient must never sit on both sides of a split, or the held-out
figure measures memory of that patient. Samples without a patient id are their own group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def group_folds(groups: Sequence[str], k: int, seed: int = 0) -> list[np.ndarray]:
    """k disjoint index arrays covering every sample; all samples of a group in the same fold.

    Groups are shuffled with ``seed`` and dealt largest first to the currently smallest fold, so
    folds are within one group's size of each other."""
    if k < 2:
        raise ValueError(f"need at least 2 folds, not {k}")
    groups = np.asarray(groups)
    names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(names) < k:
        raise ValueError(f"{len(names)} patients cannot make {k} folds")
    order = np.random.default_rng(seed).permutation(len(names))
    order = order[np.argsort(-counts[order], kind="stable")]
    sizes = np.zeros(k, int)
    fold_of_group = np.empty(len(names), int)
    for g in order:
        f = int(np.argmin(sizes))
        fold_of_group[g] = f
        sizes[f] += counts[g]
    return [np.flatnonzero(fold_of_group[inverse] == f) for f in range(k)]


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (sensible at 0 % and 100 %, unlike +- 2 SE)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(hits: np.ndarray) -> dict[str, float | int]:
    """A proportion over boolean outcomes with its Wilson interval."""
    hits = np.asarray(hits, bool)
    lo, hi = wilson(int(hits.sum()), hits.size)
    return {"rate": round(float(hits.mean()), 4) if hits.size else math.nan, "n": int(hits.size),
            "ci95": [round(lo, 4), round(hi, 4)]}


def mean_spread(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray([x for x in values if not math.isnan(x)], float)
    if not v.size:
        return {"mean": math.nan, "sd": math.nan}
    return {"mean": round(float(v.mean()), 4), "sd": round(float(v.std(ddof=1)), 4) if v.size > 1 else 0.0}


def scored_epochs(planned: Sequence[int], epochs: int) -> tuple[int, ...]:
    """When a fold's held-out patients are scored: the planned epochs up to ``epochs``, and ``epochs``."""
    return tuple(sorted({e for e in planned if e <= epochs} | {epochs}))
