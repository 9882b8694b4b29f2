"""LiteRT (formerly TensorFlow Lite) on ARM and x86 CPUs. Runtime only, no torch.

Uses ``ai_edge_litert.interpreter.Interpreter`` (``pip install 'edgeret[litert]'``);
where only the older ``tflite_runtime`` wheel exists (some 32-bit ARM boards)
it falls back to ``tflite_runtime.interpreter.Interpreter``.

Names. When the .tflite carries a signature (edgeret's LiteRT exporter writes
``serving_default`` with the task's input and output names), inputs and
outputs are matched by signature name. Without a signature the model's input
and output tensors are used in their file order under their tensor names; a
caller whose feed names do not match is mapped *by order* (the feed dict's
order to the model's input order), so single-input models always work.

Quantized I/O. Full-integer models have int8/uint8 input and output tensors.
The runner quantizes float inputs with the input tensor's scale/zero-point
(``q = round(x / scale) + zero_point``, clipped) and dequantizes outputs
(``(q - zero_point) * scale``), so callers always pass and get float32.

Batch. LiteRT files usually have a fixed batch of 1; a larger batch is run
image by image and the outputs concatenated.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.errors import EdgeretError, InputError
from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.registrations import Availability, BackendPlugin


def _interpreter_class() -> tuple[Any, str]:
    try:
        import ai_edge_litert
        from ai_edge_litert import interpreter as litert

        return litert.Interpreter, f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}"
    except ImportError:
        pass
    import tflite_runtime  # raises ImportError when neither runtime is installed
    from tflite_runtime import interpreter as tflite

    return tflite.Interpreter, f"tflite-runtime {getattr(tflite_runtime, '__version__', '?')}"


def _available() -> Availability:
    try:
        _, version = _interpreter_class()
    except ImportError as exc:
        return Availability(False, f"neither ai-edge-litert nor tflite-runtime is installed ({exc}); "
                                   "pip install 'edgeret[litert]'")
    except Exception as exc:  # a broken wheel (wrong glibc, missing .so) must not crash the chain
        return Availability(False, f"the LiteRT runtime fails to import ({type(exc).__name__}: {exc})")
    return Availability(True, f"{version} (CPU, XNNPACK)", ("CPU",))


def _quant_params(detail: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(scales, zero_points, axis) for a quantized integer tensor, None for a float one."""
    if np.dtype(detail["dtype"]).kind not in "iu":
        return None
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", ()), dtype=np.float32)
    zeros = np.asarray(params.get("zero_points", ()), dtype=np.float32)
    if scales.size == 0:
        scale, zero = detail.get("quantization", (0.0, 0))
        if not scale:
            return None  # a genuine integer input (e.g. token ids): pass through
        scales, zeros = np.array([scale], np.float32), np.array([zero], np.float32)
    return scales, zeros, int(params.get("quantized_dimension", 0))


def _broadcast(values: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    if values.size == 1:
        return values.reshape(())
    shape = [1] * ndim
    shape[axis] = values.size
    return values.reshape(shape)


def quantize_input(x: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    params = _quant_params(detail)
    if params is None:
        return np.ascontiguousarray(x, dtype=dtype)
    if np.asarray(x).dtype == dtype:  # already quantized by the caller
        return np.ascontiguousarray(x)
    scales, zeros, axis = params
    x = np.asarray(x, dtype=np.float32)
    q = np.round(x / _broadcast(scales, axis, x.ndim)) + _broadcast(zeros, axis, x.ndim)
    info = np.iinfo(dtype)
    return np.ascontiguousarray(np.clip(q, info.min, info.max).astype(dtype))


def dequantize_output(q: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    params = _quant_params(detail)
    if params is None:
        return np.array(q)
    scales, zeros, axis = params
    values = (q.astype(np.float32) - _broadcast(zeros, axis, q.ndim)) * _broadcast(scales, axis, q.ndim)
    return values.astype(np.float32)


class LiteRtRunner:
    """A loaded .tflite model: float32 in, float32 out, whatever the file's I/O types."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        interpreter_cls, _ = _interpreter_class()
        self.path = Path(path)
        try:
            self.interpreter = interpreter_cls(model_path=str(path),
                                               num_threads=threads or min(os.cpu_count() or 1, 4))
            signatures = self.interpreter.get_signature_list()
        except Exception as exc:  # ValueError / RuntimeError with long text
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(path, f"not a loadable LiteRT model ({problem})") from None
        self._signature = None
        if signatures:
            key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
            self._signature = self.interpreter.get_signature_runner(key)
            inputs, outputs = self._signature.get_input_details(), self._signature.get_output_details()
            self.input_names = list(signatures[key]["inputs"])
            self.output_names = list(signatures[key]["outputs"])
            self._in = [inputs[n] for n in self.input_names]
            self._out = [outputs[n] for n in self.output_names]
        else:
            self.interpreter.allocate_tensors()
            self._in = self.interpreter.get_input_details()
            self._out = self.interpreter.get_output_details()
            self.input_names = [d["name"] for d in self._in]
            self.output_names = [d["name"] for d in self._out]
        self._model_batch = [int(d["shape"][0]) if len(d["shape"]) else 1 for d in self._in]

    def _feeds(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        if all(name in inputs for name in self.input_names):
            return [np.asarray(inputs[name]) for name in self.input_names]
        if len(inputs) == len(self.input_names):  # documented: map by order
            return [np.asarray(value) for value in inputs.values()]
        missing = [n for n in self.input_names if n not in inputs]
        raise InputError(self.path, f"missing model inputs: {', '.join(missing)}")

    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        quantized = [quantize_input(a, d) for a, d in zip(arrays, self._in, strict=True)]
        if self._signature is not None:
            result = self._signature(**dict(zip(self.input_names, quantized, strict=True)))
            raw = [result[name] for name in self.output_names]
        else:
            for array, detail in zip(quantized, self._in, strict=True):
                if tuple(array.shape) != tuple(detail["shape"]):
                    self.interpreter.resize_tensor_input(detail["index"], list(array.shape))
                    self.interpreter.allocate_tensors()
                self.interpreter.set_tensor(detail["index"], array)
            self.interpreter.invoke()
            raw = [self.interpreter.get_tensor(d["index"]) for d in self._out]
        return [dequantize_output(q, d) for q, d in zip(raw, self._out, strict=True)]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = self._feeds(inputs)
        batch = arrays[0].shape[0] if arrays[0].ndim else 1
        try:
            per_row = all(a.ndim and a.shape[0] == batch for a in arrays)
            if self._model_batch[0] == 1 and batch > 1 and per_row:
                rows = [self._invoke([a[i:i + 1] for a in arrays]) for i in range(batch)]
                values = [np.concatenate([row[k] for row in rows]) for k in range(len(self.output_names))]
            else:
                values = self._invoke(arrays)
        except (ValueError, RuntimeError) as exc:
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(self.path, f"LiteRT could not run this input ({problem})") from None
        return dict(zip(self.output_names, values, strict=True))


def _load(path: str | Path, device: str = "CPU", threads: int | None = None) -> LiteRtRunner:
    if str(device).upper() not in ("CPU", "AUTO"):
        raise EdgeretError(f"the litert backend runs on the CPU only, not on '{device}' "
                           "(the GPU/NPU delegates are not wired in)")
    return LiteRtRunner(Path(path), threads=threads)


@hookimpl
def edgeret_backends() -> Iterable[BackendPlugin]:
    yield BackendPlugin(
        name="litert",
        formats=("tflite",),
        description="LiteRT / TensorFlow Lite interpreter (CPU, XNNPACK); float or full-integer models",
        available=_available,
        load=_load,
    )
