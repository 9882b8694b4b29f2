"""Grade a capture with the task that fits its modality (device: quality; hub: DR / OCT quality).

Sessions load on first use, so an OCT-only camera never loads the fundus model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeret.errors import InputError
from edgeret.imageio import ARRAY
from edgeret.inference import TaskSession
from edgeret.registrations import BackendPlugin

DEVICE_TASKS = {"fundus": "quality-fundus", "oct": "quality-oct"}
HUB_TASKS = {"fundus": "dr-grade", "oct": "quality-oct"}


class Grader:
    """modality -> task name; ``grade`` returns ``{"task": name, **the task's result}``."""

    def __init__(self, host, backend: BackendPlugin, tasks: Mapping[str, str], *,
                 threads: int | None = None) -> None:
        self.host, self.backend, self.tasks, self.threads = host, backend, dict(tasks), threads
        self._sessions: dict[str, TaskSession] = {}

    def _session(self, name: str) -> TaskSession:
        if name not in self._sessions:
            self._sessions[name] = TaskSession(self.host.task(name), self.backend, threads=self.threads)
        return self._sessions[name]

    def grade(self, image: np.ndarray, modality: str, source: str) -> dict[str, Any]:
        name = self.tasks.get(modality)
        if name is None:
            return {"task": None}
        try:
            return {"task": name, **self._session(name).predict(image)}
        except InputError as exc:  # name the capture, not "<array>"
            if exc.path != ARRAY:
                raise
            raise InputError(source, exc.problem) from None
