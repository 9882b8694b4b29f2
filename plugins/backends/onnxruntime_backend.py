"""ONNX Runtime on CPU: the embedded default backend. Runtime only, no torch."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from edgeret.errors import InputError
from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.registrations import Availability, BackendPlugin


def _available() -> Availability:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return Availability(False, f"onnxruntime is not installed ({exc})")
    return Availability(True, f"onnxruntime {ort.__version__}", tuple(ort.get_available_providers()))


class OnnxRuntimeRunner:
    """A loaded ONNX model on the CPU execution provider."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 4)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise InputError(path, f"not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.path = Path(path)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = set(self.input_names) - set(inputs)
        if missing:
            raise InputError(self.path, f"missing model inputs: {', '.join(sorted(missing))}")
        feeds = {name: np.ascontiguousarray(inputs[name]) for name in self.input_names}
        values = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, values, strict=True))


def _load(path: str | Path, device: str = "CPU", threads: int | None = None) -> OnnxRuntimeRunner:
    return OnnxRuntimeRunner(Path(path), threads=threads)


@hookimpl
def edgeret_backends() -> Iterable[BackendPlugin]:
    yield BackendPlugin(
        name="onnxruntime",
        formats=("onnx",),
        description="ONNX Runtime, CPU execution provider (the embedded default)",
        available=_available,
        load=_load,
    )
