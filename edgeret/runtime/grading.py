"""Grade a capture with the task that fits its modality (device: quality; hub: DR / OCT quality).

Sessions load on first use, so an OCT-only camera never loads the fundus model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.errors import InputError
from edgeret.images.read_write import ARRAY
from edgeret.plugin.registrations import BackendPlugin
from edgeret.runtime.task_session import TaskSession


class Grader:
    """modality -> task name; ``grade`` returns ``{"task": name, **the task's result}``."""

    def __init__(self, host, backend: BackendPlugin | None, tasks: Mapping[str, str], *,
                 threads: int | None = None) -> None:
        self.host, self.backend, self.tasks, self.threads = host, backend, dict(tasks), threads
        self._sessions: dict[str, TaskSession] = {}

    @classmethod
    def from_bundle(cls, host, root: Path, tasks: Mapping[str, str], *, backend: str | None = None,
                    threads: int | None = None) -> Grader:
        """The bundle's exported models (e.g. INT8 on LiteRT), for the tasks the bundle holds."""
        from edgeret.bundle.manifest import check_hashes, load_manifest
        from edgeret.bundle.verify import pick_backend

        manifest = load_manifest(root)
        check_hashes(root, manifest)  # a tampered model never grades a patient
        held = {m: name for m, name in tasks.items() if name in manifest.tasks}
        grader = cls(host, None, held, threads=threads)
        for name in held.values():
            entry = manifest.tasks[name]
            plugin, _ = pick_backend(manifest, entry, host.backends(), backend)
            grader._sessions[name] = TaskSession(host.task(name), plugin, model=root / entry.artifact,
                                                 threads=threads)
        return grader

    def _session(self, name: str) -> TaskSession:
        if name not in self._sessions:
            self._sessions[name] = TaskSession(self.host.task(name), self.backend, threads=self.threads)
        return self._sessions[name]

    def describe(self) -> str:
        """Which task runs where, without loading a model nobody has asked for yet."""
        def backend_of(name: str) -> str:
            session = self._sessions.get(name)
            return (session.backend if session else self.backend).name

        return ", ".join(f"{name} on {backend_of(name)}" for name in self.tasks.values())

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
