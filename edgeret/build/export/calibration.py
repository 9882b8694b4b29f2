"""INT8 calibration inputs: the task's own sampler or the user's `--calib` folder, never silently swapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeret.build.progress import progress_bar
from edgeret.errors import EdgeretError, InputError
from edgeret.images.read_write import IMAGE_SUFFIXES, list_images
from edgeret.plugin.registrations import TaskPlugin

DEFAULT_CALIB_SIZE = 128


def check_calib_folder(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.exists():
        raise InputError(folder, "calibration folder does not exist (--calib)")
    if not folder.is_dir():
        raise InputError(folder, "--calib must be a folder of images")
    images = list_images(folder)
    if not images:
        raise InputError(folder, f"calibration folder holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                                 "edgeret does not fall back to generated images")
    return images


def calibration_feeds(task: TaskPlugin, folder: Path | None, n: int | None, seed: int,
                      progress: bool) -> tuple[list[dict[str, np.ndarray]], dict[str, Any]]:
    """Preprocessed calibration inputs and their description (source, size, sha256)."""
    from edgeret_exporters.onnx_int8 import calibration_digest

    feeds: list[dict[str, np.ndarray]] = []
    if folder is not None:
        from edgeret.images.read_write import ARRAY, read_image

        images = check_calib_folder(folder)
        if n:
            images = images[:n]
        for path in progress_bar(images, f"{task.name}: calibration", total=len(images), enabled=progress):
            image = read_image(path, expect=task.image_kind)
            try:
                feeds.append(task.preprocess(image, task))
            except InputError as exc:
                if exc.path != ARRAY:
                    raise
                raise InputError(path, exc.problem) from None
        source = f"user images from {folder}"
    else:
        if task.calibration is None:
            raise EdgeretError(f"task '{task.name}' has no calibration sampler; pass --calib DIR")
        n = n or DEFAULT_CALIB_SIZE
        for image in progress_bar(task.calibration(n, seed), f"{task.name}: calibration", total=n,
                              enabled=progress):
            feeds.append(task.preprocess(image, task))
        source = f"the task's calibration sampler (n={n}, seed={seed})"
    return feeds, {"source": source, "size": len(feeds), "sha256": calibration_digest(feeds)}
