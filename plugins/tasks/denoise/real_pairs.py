"""Real OCT denoising data: per subject noisy scans and, optionally, a clean average.

Layout (the Duke SD-OCT set in `../shared/data/real/oct-denoise/` has it; any
user's OCT can be put in it, with or without a clean reference):

    DIR/labels.csv          file,subject,role[,source]   role: noisy | neighbour | clean
    DIR/<any>/<file>.png    8- or 16-bit grayscale B-scans, all of a subject the same size

Without `labels.csv`, one sub-folder per subject whose files are named
`noisy*`, `neighbour*` (or `neighbor*`) and `clean*` is read the same way.

A subject needs at least two noisy scans (its `noisy` and `neighbour` scans:
repeated or adjacent B-scans, registered) for self-supervised Noise2Noise
pairs, or one noisy scan and a `clean` reference (a registered average) for
supervised pairs. Pairs are drawn per patch (`sample_pairs`): input = one of
the subject's noisy scans; target = its clean average with probability
`supervised` (when it has one), otherwise another of its noisy scans.

Pure numpy + OpenCV (no torch): the benchmark and tests use it too.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgeret.errors import InputError

ROLES = ("noisy", "neighbour", "clean")
_ALIASES = {"neighbor": "neighbour", "average": "clean", "avg": "clean"}
_EXTS = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"}


@dataclass
class Subject:
    name: str
    noisy: list[np.ndarray] = field(default_factory=list)  # `noisy` scan(s) first, then neighbours
    n_primary: int = 0  # how many of `noisy` had role `noisy` (the rest are neighbours)
    clean: np.ndarray | None = None
    files: dict[str, list[str]] = field(default_factory=dict)

    @property
    def primary(self) -> np.ndarray:
        """The subject's test scan (role `noisy`), else its first neighbour."""
        return self.noisy[0]


def read_gray8(path: Path) -> np.ndarray:
    """8-bit grayscale (16-bit scaled to 8; a colour file with equal channels reduced)."""
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError(path, "cannot read this image")
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr[..., :3], cv2.COLOR_BGR2GRAY)
    if arr.dtype == np.uint16:
        arr = np.round(arr.astype(np.float32) / 257.0).astype(np.uint8)
    if arr.dtype != np.uint8:
        raise InputError(path, f"expected an 8- or 16-bit image, got {arr.dtype}")
    return arr


def _role_of_name(name: str) -> str | None:
    stem = name.lower()
    for key in (*ROLES, *_ALIASES):
        if stem.startswith(key):
            return _ALIASES.get(key, key)
    return None


def _rows_from_labels(root: Path) -> list[tuple[str, str, str]] | None:
    path = root / "labels.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"file", "subject", "role"} <= set(reader.fieldnames):
            return None
        rows = [(r["file"], r["subject"], _ALIASES.get(r["role"].strip().lower(), r["role"].strip().lower()))
                for r in reader]
    if not rows or any(role not in ROLES for _, _, role in rows):
        return None
    return rows


def _rows_from_folders(root: Path) -> list[tuple[str, str, str]] | None:
    rows = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(sub.iterdir()):
            role = _role_of_name(f.name) if f.suffix.lower() in _EXTS else None
            if role:
                rows.append((f"{sub.name}/{f.name}", sub.name, role))
    subjects = {s for _, s, _ in rows}
    noisy = {s for _, s, r in rows if r != "clean"}
    return rows if subjects and subjects == noisy else None


def is_real_pairs_layout(root: Path) -> bool:
    """True if `root` holds per-subject noisy/neighbour/clean scans (see the module doc)."""
    root = Path(root)
    if not root.is_dir():
        return False
    return _rows_from_labels(root) is not None or _rows_from_folders(root) is not None


def read_real_pairs(root: Path, subjects: list[str] | None = None) -> list[Subject]:
    """Read the layout; `subjects`: only these (by name, as in labels.csv). Sorted by name."""
    root = Path(root)
    rows = _rows_from_labels(root) or _rows_from_folders(root)
    if rows is None:
        raise InputError(root, "not a real OCT pairs layout (labels.csv with file,subject,role "
                               "noisy/neighbour/clean, or subject folders with noisy*/neighbour*/clean* "
                               "files)")
    by_subject: dict[str, Subject] = {}
    order = {"noisy": 0, "neighbour": 1, "clean": 2}
    for file, subject, role in sorted(rows, key=lambda r: (r[1], order[r[2]], r[0])):
        if subjects is not None and subject not in subjects:
            continue
        s = by_subject.setdefault(subject, Subject(subject))
        img = read_gray8(root / file)
        s.files.setdefault(role, []).append(file)
        if role == "clean":
            if s.clean is not None:
                raise InputError(root / file, f"subject {subject} has more than one clean reference")
            s.clean = img
        else:
            s.noisy.append(img)
            s.n_primary += role == "noisy"
    out = []
    for name in sorted(by_subject, key=_natural_key):
        s = by_subject[name]
        shapes = {a.shape for a in s.noisy} | ({s.clean.shape} if s.clean is not None else set())
        if len(shapes) != 1:
            raise InputError(root, f"subject {name}: scans differ in size {sorted(shapes)}; "
                                   "register them first")
        if not s.noisy:
            raise InputError(root, f"subject {name} has a clean reference but no noisy scan")
        if len(s.noisy) < 2 and s.clean is None:
            raise InputError(root, f"subject {name} has one noisy scan and no clean reference: "
                                   "nothing to train against (add a neighbouring B-scan or the average)")
        out.append(s)
    if subjects is not None and len(out) != len(set(subjects)):
        missing = sorted(set(subjects) - {s.name for s in out})
        raise InputError(root, f"subjects not found: {', '.join(missing)}")
    return out


def _natural_key(name: str):
    return (0, int(name)) if name.isdigit() else (1, name)


def sample_pairs(subjects: list[Subject], n: int, patch: int, seed: int,
                 supervised: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """n aligned (input, target) crops, uint8 N×1×P×P each, and whether each target is clean (N bools).

    Subjects are drawn equally often; input = a random noisy scan of it; target = its clean
    average with probability `supervised` (if it has one), else another of its noisy scans
    (Noise2Noise: noisy↔neighbour and neighbour↔neighbour alike). Crops that are mostly
    black background are re-drawn 9 times in 10.
    """
    rng = np.random.default_rng(seed)
    usable = [s for s in subjects if min(s.noisy[0].shape) >= patch]
    if not usable:
        raise InputError(Path("."), f"no subject has scans of at least {patch} pixels per side")
    inputs, targets, is_clean = [], [], []
    while len(inputs) < n:
        s = usable[int(rng.integers(len(usable)))]
        i = int(rng.integers(len(s.noisy)))
        clean = s.clean is not None and (len(s.noisy) < 2 or rng.random() < supervised)
        if clean:
            target = s.clean
        else:
            j = int(rng.integers(len(s.noisy) - 1))
            target = s.noisy[j + (j >= i)]
        h, w = s.noisy[i].shape
        y, x = int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))
        crop = s.noisy[i][y:y + patch, x:x + patch]
        if (crop < 12).mean() > 0.5 and rng.random() < 0.9:
            continue
        inputs.append(crop)
        targets.append(target[y:y + patch, x:x + patch])
        is_clean.append(clean)
    return (np.stack(inputs)[:, None], np.stack(targets)[:, None], np.asarray(is_clean))
