"""Image-quality labels and grades for OCT B-scans.

The grading system follows the OCT image-quality paper shipped in the seeds
(DSFF-Net, "Good / Usable / Poor"): every B-scan carries four binary
sub-labels

* ``noise``             strong speckle / low SNR, structures barely visible
* ``deficiency``        a large part of the retina is cut off (out of the frame)
                        or lost to signal loss (media opacity, vignetting, blink)
* ``blur``              defocus: layers soft, speckle coarse
* ``slight_deficiency`` the same as deficiency but only a small part is lost

and the grade follows from them: ``poor`` if noise and/or deficiency,
``usable`` if blur and/or slight deficiency without noise or deficiency,
``good`` if none.

When the generator draws labels itself it uses the label combinations and
frequencies of Table 1 of that paper (12538 annotated Optovue iVue B-scans);
see :data:`LABEL_COMBINATIONS`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

LABEL_NAMES: tuple[str, ...] = ("noise", "deficiency", "blur", "slight_deficiency")
GRADES: tuple[str, ...] = ("good", "usable", "poor")

# (grade, active labels, count in Table 1 of the paper). Only these seven
# combinations occur in the annotated data set.
LABEL_COMBINATIONS: tuple[tuple[str, frozenset[str], int], ...] = (
    ("poor", frozenset({"noise"}), 1942),
    ("poor", frozenset({"deficiency"}), 2442),
    ("poor", frozenset({"noise", "deficiency"}), 914),
    ("usable", frozenset({"blur"}), 1562),
    ("usable", frozenset({"slight_deficiency"}), 999),
    ("usable", frozenset({"blur", "slight_deficiency"}), 645),
    ("good", frozenset(), 4034),
)

_TOTAL = sum(c for _, _, c in LABEL_COMBINATIONS)

#: Probability of each grade when ``quality=None`` (Table 1: 4034 / 3206 / 5298
#: of 12538 -> good 0.322, usable 0.256, poor 0.423).
GRADE_DISTRIBUTION: dict[str, float] = {
    g: sum(c for gg, _, c in LABEL_COMBINATIONS if gg == g) / _TOTAL for g in GRADES
}


def grade_from_labels(labels: Mapping[str, bool]) -> str:
    """The paper's rule: poor > usable > good.

    ``poor``   = noise or deficiency;
    ``usable`` = blur or slight_deficiency, and neither noise nor deficiency;
    ``good``   = no label set. Missing keys count as False.
    """
    _check_keys(labels)
    if labels.get("noise", False) or labels.get("deficiency", False):
        return "poor"
    if labels.get("blur", False) or labels.get("slight_deficiency", False):
        return "usable"
    return "good"


def normalize_labels(labels: Mapping[str, bool]) -> dict[str, bool]:
    """A full label dict (all four keys, plain bools); unknown keys raise."""
    _check_keys(labels)
    return {name: bool(labels.get(name, False)) for name in LABEL_NAMES}


def sample_labels(rng: np.random.Generator, quality: str | None = None) -> dict[str, bool]:
    """Draw a label combination from the Table-1 frequencies.

    ``quality=None`` draws over all seven combinations (grade probabilities in
    :data:`GRADE_DISTRIBUTION`); a grade restricts the draw to that grade's
    combinations with the same relative frequencies, e.g. ``"usable"`` gives
    blur 0.487, slight deficiency 0.312, both 0.201.
    """
    if quality is not None and quality not in GRADES:
        raise ValueError(f"quality must be one of {GRADES} or None, got {quality!r}")
    combos = [(a, c) for g, a, c in LABEL_COMBINATIONS if quality is None or g == quality]
    p = np.array([c for _, c in combos], dtype=np.float64)
    k = int(rng.choice(len(combos), p=p / p.sum()))
    active = combos[k][0]
    return {name: name in active for name in LABEL_NAMES}


def _check_keys(labels: Mapping[str, bool]) -> None:
    unknown = set(labels) - set(LABEL_NAMES)
    if unknown:
        raise ValueError(f"unknown quality labels {sorted(unknown)}; known: {LABEL_NAMES}")
