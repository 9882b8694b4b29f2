"""INT8 calibration inputs: the task's own sampler or the user's `--calib` folder, never silently swapped.

Image-to-image tasks exported at a fixed tile size are calibrated on tiles of that size cut from
the images (`crops.fit_to_size`), the inputs the tiled runtime gives the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeret.build.export.crops import fit_to_size, fixed_tile_size
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
    tile = fixed_tile_size(task)

    def fit(image: np.ndarray, index: int) -> np.ndarray:
        return image if tile is None else fit_to_size(image, tile, seed * 100_003 + index)

    if folder is not None:
        from edgeret.images.read_write import ARRAY, read_image

        images = check_calib_folder(folder)
        if n:
            images = images[:n]
        for i, path in enumerate(progress_bar(images, f"{task.name}: calibration", total=len(images),
                                          enabled=progress)):
            image = read_image(path, expect=task.image_kind)
            try:
                feeds.append(task.preprocess(fit(image, i), task))
            except InputError as exc:
                if exc.path != ARRAY:
                    raise
                raise InputError(path, exc.problem) from None
        source = f"user images from {folder}"
    else:
        if task.calibration is None:
            raise EdgeretError(f"task '{task.name}' has no calibration sampler; pass --calib DIR")
        n = n or DEFAULT_CALIB_SIZE
        samples = progress_bar(task.calibration(n, seed), f"{task.name}: calibration", total=n,
                               enabled=progress)
        for i, image in enumerate(samples):
            feeds.append(task.preprocess(fit(image, i), task))
        source = f"the task's calibration sampler (n={n}, seed={seed})"
    if tile is not None:
        source += f", {tile[0]}x{tile[1]} tiles cut from each image"
    return feeds, {"source": source, "size": len(feeds), "sha256": calibration_digest(feeds)}
