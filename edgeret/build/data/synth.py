"""Write labelled phantom datasets in the `edgeret` layout (images/ + labels.csv).

The same readers (`edgeret.build.data.datasets`) then serve synthetic and real data,
so every training and evaluation path runs the same on both.

Seeds: image i of a set made with `seed` uses phantom seed `seed * SEED_STRIDE + i`,
so sets made with different seeds never share an image (training uses seeds
< 100, held-out test sets use seeds >= 100).
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.errors import EdgeretError, InputError
from edgeret.images.read_write import write_image
from edgeret.link.atomic import staging_folder

SEED_STRIDE = 1_000_000
QUALITY_CODES = {"good": 0, "usable": 1, "poor": 2}  # EyeQ's convention (2 = reject)


@dataclass(frozen=True)
class SynthRequest:
    modality: str  # "fundus" or "oct"
    n: int
    seed: int
    out: Path
    size: int = 512  # fundus
    height: int = 640  # oct
    width: int = 1024  # oct
    bit_depth: int = 8  # oct
    quality_mix: Mapping[str, float] | None = None  # None: the generator's own draw
    grade_mix: Mapping[int, float] | None = None  # fundus DR grades; None: generator's draw
    workers: int = 2


def parse_mix(text: str, keys: tuple, what: str) -> dict:
    """'good=0.9,usable=0.07,poor=0.03' -> {key: probability} (normalised)."""
    mix: dict = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        key = next((k for k in keys if str(k) == name), None)
        if key is None:
            raise EdgeretError(f"{what}: unknown class '{name}'; known: {', '.join(map(str, keys))}")
        try:
            mix[key] = float(value)
        except ValueError:
            raise EdgeretError(f"{what}: '{part}' is not NAME=WEIGHT") from None
        if mix[key] < 0:
            raise EdgeretError(f"{what}: weight for '{name}' is negative")
    total = sum(mix.values())
    if total <= 0:
        raise EdgeretError(f"{what}: weights sum to zero")
    return {k: v / total for k, v in mix.items()}


def _draw(rng: np.random.Generator, mix: Mapping | None) -> Any:
    if not mix:
        return None
    keys = list(mix)
    return keys[int(rng.choice(len(keys), p=[mix[k] for k in keys]))]


def _fundus_row(req: SynthRequest, i: int) -> tuple[np.ndarray, dict[str, Any]]:
    from edgeret.build.data.fundus import generate_fundus

    seed = req.seed * SEED_STRIDE + i
    rng = np.random.default_rng([seed, 7])
    sample = generate_fundus(seed, size=req.size, dr_grade=_draw(rng, req.grade_mix),
                             quality=_draw(rng, req.quality_mix))
    return sample.image, {
        "dr_grade": sample.dr_grade,
        "quality": QUALITY_CODES[sample.quality],
        "gradable": sample.gradable,
        "nonretinal": int(sample.nonretinal),
        "laterality": sample.laterality,
        "degradations": ";".join(f"{k}:{v:.2f}" for k, v in sorted(sample.degradations.items())) or "-",
        "seed": seed,
    }


def _oct_row(req: SynthRequest, i: int) -> tuple[np.ndarray, dict[str, Any]]:
    from edgeret.build.data.oct import generate_oct

    seed = req.seed * SEED_STRIDE + i
    rng = np.random.default_rng([seed, 7])
    sample = generate_oct(seed, height=req.height, width=req.width,
                          quality=_draw(rng, req.quality_mix), bit_depth=req.bit_depth)
    return sample.image, {
        "quality": QUALITY_CODES[sample.grade],
        **{name: int(flag) for name, flag in sample.labels.items()},
        "seed": seed,
    }


ROW_MAKERS: dict[str, Callable[[SynthRequest, int], tuple[np.ndarray, dict[str, Any]]]] = {
    "fundus": _fundus_row,
    "oct": _oct_row,
}


def _make_one(args: tuple[SynthRequest, int, Path]) -> dict[str, Any]:
    req, i, images_dir = args
    image, labels = ROW_MAKERS[req.modality](req, i)
    name = f"{req.modality}_{req.seed:03d}_{i:05d}.png"
    write_image(images_dir / name, image)
    return {"image": f"images/{name}", **labels}


def synthesize(req: SynthRequest, progress: Callable[[int], None] | None = None) -> Path:
    """Write the dataset to a temporary folder, then move it into place whole."""
    if req.modality not in ROW_MAKERS:
        raise EdgeretError(f"unknown modality '{req.modality}'; use fundus or oct")
    if req.n <= 0:
        raise EdgeretError(f"--n must be positive, got {req.n}")
    out = Path(req.out)
    if out.exists() and any(out.iterdir()):
        raise InputError(out, "output folder exists and is not empty; choose another")
    staging = staging_folder(out)
    (staging / "images").mkdir()
    try:
        jobs = [(req, i, staging / "images") for i in range(req.n)]
        rows: list[dict[str, Any]] = []
        if req.workers > 1 and req.n > 8:
            with ProcessPoolExecutor(req.workers) as pool:
                for row in pool.map(_make_one, jobs, chunksize=8):
                    rows.append(row)
                    if progress:
                        progress(len(rows))
        else:
            for job in jobs:
                rows.append(_make_one(job))
                if progress:
                    progress(len(rows))
        _write_csv(staging / "labels.csv", rows)
        if out.exists():
            out.rmdir()
        staging.replace(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
