"""Real colour fundus photographs, read once into field-of-view crops with their labels (build host).

Reads any mix of the real sets' layouts (``labels.csv`` with ``file``; see
``../shared/data/real/README.md``) and edgeret phantom folders, and maps each set's labels to what
the fundus tasks learn:

* quality: DRIMDB ``good`` -> good; ``bad`` and ``outlier`` -> poor; EyeQ/phantom codes as they are;
  a clinical photograph with a DR or DME grade but no quality label is *weakly* gradable (a
  specialist graded it, so it was gradable for them; some are dark or hazy), marked ``weak``;
* DR: coarse ``0`` / ``NPDR`` / ``PDR`` (-1 when not graded), ICDR 0-4 for phantoms (``dr_grade``);
* DME 0/1 (-1 when absent);
* group: the ``patient`` column, else the file itself (one photograph, one patient).

Crops are uint8 at ``size`` (FOV found, square crop, black outside), cached by the CSVs' content.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeret.build.data.datasets import is_real_layout, load_dataset
from edgeret.build.progress import progress_bar
from edgeret.images.preprocess import preprocess_fundus
from edgeret.images.read_write import read_image

_QUALITY = {"good": 0, "usable": 1, "poor": 2, "reject": 2, "bad": 2, "outlier": 2}
_COARSE_DR = {"0": 0, "NPDR": 1, "PDR": 2}
CACHE_VERSION = "2"


@dataclass
class FundusSet:
    images: np.ndarray  # N x size x size x 3 uint8, FOV crops
    quality: np.ndarray  # 0 good, 1 usable, 2 poor, -1 unknown
    weak: np.ndarray  # bool: quality is weakly "gradable" (clinical photograph, no quality label)
    dr_coarse: np.ndarray  # 0 no DR, 1 NPDR (ICDR 1-3), 2 PDR (ICDR 4), -1 not graded
    dr_icdr: np.ndarray  # ICDR 0-4 where known exactly (phantoms), else -1
    dme: np.ndarray  # 0/1, -1 unknown
    groups: np.ndarray  # str: patient (prefixed by the set's folder name)
    source: np.ndarray  # str: the set's folder name
    files: np.ndarray  # str: file path
    phantom: np.ndarray  # bool: from an `edgeret data synth` folder (labels.csv's first column 'image')

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> FundusSet:
        return FundusSet(**{k: v[index] for k, v in vars(self).items()})


def quality_labels(labels: dict) -> tuple[int, bool]:
    """(quality code 0/1/2 or -1, weakly gradable) of one sample's labels (see the module docstring)."""
    quality = _QUALITY.get(str(labels["quality"]), -1) if "quality" in labels else -1
    if quality < 0 and "gradable" in labels:
        quality = 0 if int(labels["gradable"]) == 1 else 2
    weak = quality < 0 and ("dr" in labels or "dme" in labels or "dr_grade" in labels)
    return (0 if weak else quality), weak


def _labels(labels: dict) -> tuple[int, bool, int, int, int]:
    quality, weak = quality_labels(labels)
    dr_coarse, dr_icdr = -1, -1
    if "dr_grade" in labels:  # phantoms: exact ICDR
        dr_icdr = int(labels["dr_grade"])
        dr_coarse = 0 if dr_icdr == 0 else (2 if dr_icdr == 4 else 1)
    elif "dr" in labels:
        dr_coarse = _COARSE_DR.get(str(labels["dr"]), -1)
        dr_icdr = 0 if dr_coarse == 0 else -1
    dme = int(labels["dme"]) if "dme" in labels else -1
    return quality, weak, dr_coarse, dr_icdr, dme


def _key(folder: Path, size: int) -> str:
    digest = hashlib.sha256(f"{CACHE_VERSION}|{size}|{folder.resolve()}".encode())
    for csv_file in sorted(folder.glob("*.csv")):
        digest.update(csv_file.read_bytes())
    return digest.hexdigest()[:16]


def load_fundus_set(folder: str | Path, size: int = 320, cache_dir: Path | None = None,
                    progress: bool = True) -> FundusSet:
    folder = Path(folder)
    cache = Path(cache_dir) / f"fundus-{folder.name}-{_key(folder, size)}.npz" if cache_dir else None
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return FundusSet(**{k: z[k] for k in z.files})
    dataset = load_dataset(folder)
    phantom = not is_real_layout(folder)
    rows: dict[str, list] = {k: [] for k in FundusSet.__dataclass_fields__}
    for sample in progress_bar(dataset.samples, f"read {folder.name}", enabled=progress):
        rgb, _ = preprocess_fundus(read_image(sample.path, expect="color"), (size, size))
        quality, weak, dr_coarse, dr_icdr, dme = _labels(sample.labels)
        patient = sample.labels.get("patient", sample.path.name)
        for key, value in (("images", np.round(rgb * 255).astype(np.uint8)), ("quality", quality),
                           ("weak", weak), ("dr_coarse", dr_coarse), ("dr_icdr", dr_icdr), ("dme", dme),
                           ("groups", f"{folder.name}/{patient}"), ("source", folder.name),
                           ("files", str(sample.path)), ("phantom", phantom)):
            rows[key].append(value)
    result = FundusSet(**{k: np.asarray(v) for k, v in rows.items()})
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **vars(result))
        tmp.replace(cache)
    return result


def load_fundus_sets(folders: list[Path], size: int = 320, cache_dir: Path | None = None,
                     progress: bool = True) -> FundusSet:
    parts = [load_fundus_set(f, size, cache_dir, progress) for f in folders]
    fields = FundusSet.__dataclass_fields__
    return FundusSet(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in fields})
