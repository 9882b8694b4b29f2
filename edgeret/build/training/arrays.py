"""Load a dataset folder into preprocessed in-memory arrays, cached on disk.

The task's own numpy `preprocess` is used, so the model trains on exactly what
every runtime backend will feed it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.build.data.datasets import load_dataset
from edgeret.build.progress import progress_bar
from edgeret.images.read_write import read_image
from edgeret.plugin.registrations import TaskPlugin

LabelFn = Callable[[Mapping[str, Any]], dict[str, int | float]]


def _cache_key(data_dir: Path, task: TaskPlugin, extra: str) -> str:
    digest = hashlib.sha256()
    for csv_file in sorted(data_dir.glob("*.csv")):
        digest.update(csv_file.read_bytes())
    # class-folder datasets have no CSV: the file list (names and sizes) identifies them
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file() and p.suffix != ".npz"):
        digest.update(f"{path.relative_to(data_dir)}:{path.stat().st_size}".encode())
    digest.update(f"{task.name}|{task.inputs[0].shape}|{extra}".encode())
    return digest.hexdigest()[:16]


def load_arrays(
    data_dir: Path,
    task: TaskPlugin,
    labels_of: LabelFn,
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
    extra_key: str = "",
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return (inputs as float16 N×C×H×W, {label name: array}) for every sample.

    float16 halves memory; values in [0, 1] lose nothing a model can see.
    """
    data_dir = Path(data_dir)
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{task.name}-{_cache_key(data_dir, task, extra_key)}.npz"
        if cache.exists():
            with np.load(cache) as stored:
                labels = {k[len("label_"):]: stored[k] for k in stored.files if k.startswith("label_")}
                return stored["inputs"], labels
    dataset = load_dataset(data_dir)
    input_name = task.inputs[0].name
    inputs: list[np.ndarray] = []
    columns: dict[str, list] = {}
    for sample in progress_bar(dataset.samples, f"load {data_dir.name}", enabled=progress):
        image = read_image(sample.path, expect=task.image_kind)
        inputs.append(task.preprocess(image, task)[input_name][0].astype(np.float16))
        for key, value in labels_of(sample.labels).items():
            columns.setdefault(key, []).append(value)
    stacked = np.stack(inputs)
    labels = {k: np.asarray(v) for k, v in columns.items()}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, inputs=stacked, **{f"label_{k}": v for k, v in labels.items()})
        tmp.replace(cache)
    return stacked, labels
