"""Run a task on images: read -> preprocess -> backend -> postprocess. No torch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.errors import InputError, PluginError
from edgeret.plugin.registrations import BackendPlugin, TaskPlugin

ARTIFACT_FORMATS = {".onnx": "onnx", ".xml": "openvino-ir", ".tflite": "tflite", ".engine": "tensorrt"}


def artifact_format(path: Path) -> str:
    fmt = ARTIFACT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(ARTIFACT_FORMATS)
        raise InputError(path, f"unknown model format '{path.suffix}'; expected one of {known}")
    return fmt


class TaskSession:
    """One task's model loaded on one backend, ready to run on numpy images."""

    def __init__(
        self,
        task: TaskPlugin,
        backend: BackendPlugin,
        model: Path | None = None,
        threads: int | None = None,
    ) -> None:
        model = Path(model) if model else task.default_model
        if model is None:
            raise PluginError(f"task '{task.name}' ships no default model; pass --model FILE")
        if not model.is_file():
            raise InputError(model, "model file does not exist")
        fmt = artifact_format(model)
        if fmt not in backend.formats:
            raise PluginError(
                f"backend '{backend.name}' cannot load {fmt} models "
                f"(it loads: {', '.join(backend.formats)})"
            )
        self.task = task
        self.backend = backend
        self.model = model
        self.runner = backend.load(model, threads=threads)

    def predict(self, image: np.ndarray) -> dict[str, Any]:
        feeds = self.task.preprocess(image, self.task)
        _check_feeds(self.task, feeds)
        outputs = self.runner.run(feeds)
        return self.task.postprocess(outputs, self.task)

    def predict_file(self, path: str | Path) -> dict[str, Any]:
        from edgeret.images.read_write import ARRAY, read_image

        image = read_image(path, expect=self.task.image_kind)
        try:
            return self.predict(image)
        except InputError as exc:  # name the file, not "<array>", in the one-line error
            if exc.path != ARRAY:
                raise
            raise InputError(path, exc.problem) from None


def _check_feeds(task: TaskPlugin, feeds: Mapping[str, np.ndarray]) -> None:
    """Catch a preprocessing bug here, with names, not deep inside a runtime."""
    for spec in task.inputs:
        if spec.name not in feeds:
            raise PluginError(f"task '{task.name}': preprocess did not produce input '{spec.name}'")
        array = feeds[spec.name]
        if str(array.dtype) != spec.dtype:
            raise PluginError(
                f"task '{task.name}': input '{spec.name}' has dtype {array.dtype}, "
                f"spec says {spec.dtype}"
            )
        static = [(i, d) for i, d in enumerate(spec.shape) if isinstance(d, int)]
        if array.ndim != len(spec.shape) or any(array.shape[i] != d for i, d in static):
            raise PluginError(
                f"task '{task.name}': input '{spec.name}' has shape {tuple(array.shape)}, "
                f"spec says {spec.shape}"
            )
