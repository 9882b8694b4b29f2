"""NVIDIA GPUs (Jetson, dGPU): two backends. Runtime only, no torch.

* ``cuda``: ONNX Runtime from the ``onnxruntime-gpu`` wheel (on Jetson: the
  Jetson Zoo wheel) with ``TensorrtExecutionProvider`` (engine cache under
  ``$EDGERET_TRT_CACHE`` or ``~/.cache/edgeret/ort-trt``; INT8 enabled for QDQ
  models) and/or ``CUDAExecutionProvider``, CPU for unsupported nodes.
  Available only when one of those providers is compiled into the installed
  onnxruntime. A session whose GPU providers fail to initialise (ONNX
  Runtime would silently run on the CPU) is refused.
* ``tensorrt``: a serialized ``.engine`` (built on this device by
  ``edgeret_plugins.backends.tensorrt_build.build_engine``) run with the TensorRT runtime
  (>= 8.5, the named-tensor API) and a minimal CUDA memory path through
  cuda-python (``cuda.bindings.runtime``/``cuda.cudart``) or, failing that,
  pycuda. An engine whose sidecar says it was built for another TensorRT or
  GPU is refused by name.

Device names: ``GPU``, ``CUDA``, ``cuda:N`` or ``N`` (default GPU 0; ``CPU``
means GPU 0 too, because the host's default device string is ``CPU``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.errors import EdgeretError, InputError
from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.registrations import Availability, BackendPlugin

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _device_index(device: str | int | None) -> int:
    text = str(device if device is not None else "").strip().lower()
    if text in ("", "cpu", "gpu", "cuda", "auto"):
        return 0
    text = text.split(":", 1)[1] if text.startswith(("cuda:", "gpu:")) else text
    if not text.isdigit():
        raise EdgeretError(f"unknown GPU device '{device}'; use GPU, cuda:N or N")
    return int(text)


# ---------------------------------------------------------------------------
# cuda: ONNX Runtime GPU execution providers
# ---------------------------------------------------------------------------


def _cuda_available() -> Availability:
    try:
        return _cuda_availability()
    except Exception as exc:  # available() must never raise
        return Availability(False, f"onnxruntime-gpu is unusable here ({type(exc).__name__}: {exc})")


def _cuda_availability() -> Availability:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return Availability(False, f"onnxruntime is not installed ({exc}); pip install 'edgeret[cuda]'")
    try:
        providers = list(ort.get_available_providers())
    except Exception as exc:
        return Availability(False, f"onnxruntime cannot list its execution providers ({exc})")
    gpu = [p for p in GPU_PROVIDERS if p in providers]
    if not gpu:
        return Availability(
            False,
            f"onnxruntime {ort.__version__} has no CUDA or TensorRT execution provider "
            f"(it has {', '.join(providers) or 'none'}): install onnxruntime-gpu instead of onnxruntime "
            "(pip install 'edgeret[cuda]'; on Jetson the Jetson Zoo wheel)",
        )
    return Availability(True, f"onnxruntime-gpu {ort.__version__}: {', '.join(gpu)}", tuple(gpu))


def _trt_cache_dir() -> Path:
    return Path(os.environ.get("EDGERET_TRT_CACHE") or Path.home() / ".cache" / "edgeret" / "ort-trt")


class OnnxRuntimeGpuRunner:
    def __init__(self, path: Path, device: int = 0, threads: int | None = None) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "model file does not exist")
        with open(path, "rb") as handle:  # QDQ models need TensorRT's INT8 mode
            quantized = b"QuantizeLinear" in handle.read()
        providers: list[Any] = []
        if "TensorrtExecutionProvider" in available:
            cache = _trt_cache_dir()
            cache.mkdir(parents=True, exist_ok=True)
            providers.append(("TensorrtExecutionProvider", {
                "device_id": device, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                "trt_int8_enable": quantized,
            }))
        if "CUDAExecutionProvider" in available:
            providers.append(("CUDAExecutionProvider", {"device_id": device}))
        providers.append("CPUExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 4)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(path, f"onnxruntime-gpu cannot load this model ({problem})") from None
        active = self.session.get_providers()
        if not any(p in active for p in GPU_PROVIDERS):
            raise EdgeretError(f"onnxruntime could not start a GPU provider for {path} (active: {active}); "
                               "check the CUDA/cuDNN/TensorRT libraries match this onnxruntime-gpu build")
        self.providers = active
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.path = path

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = set(self.input_names) - set(inputs)
        if missing:
            raise InputError(self.path, f"missing model inputs: {', '.join(sorted(missing))}")
        feeds = {name: np.ascontiguousarray(inputs[name]) for name in self.input_names}
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds), strict=True))


def _cuda_load(path: str | Path, device: str = "CPU", threads: int | None = None) -> OnnxRuntimeGpuRunner:
    availability = _cuda_available()
    if not availability.ok:
        raise EdgeretError(f"backend 'cuda' is not available: {availability.reason}")
    return OnnxRuntimeGpuRunner(Path(path), _device_index(device), threads)


# ---------------------------------------------------------------------------
# tensorrt: serialized engines + a minimal CUDA memory path
# ---------------------------------------------------------------------------


class _CudaPython:
    """cudaMalloc / cudaMemcpyAsync / streams through cuda-python's runtime bindings."""

    name = "cuda-python"

    def __init__(self, device: int) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        self.rt = cudart
        self._check(cudart.cudaSetDevice(device), "cudaSetDevice")
        self.stream = self._check(cudart.cudaStreamCreate(), "cudaStreamCreate")

    def _check(self, result: Any, what: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise EdgeretError(f"CUDA {what} failed ({err})")
        return rest[0] if len(rest) == 1 else rest

    def alloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(max(1, nbytes)), "cudaMalloc"))

    def free(self, pointer: int) -> None:
        self.rt.cudaFree(pointer)

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, self.stream),
                    "cudaMemcpyAsync (to device)")

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind, self.stream),
                    "cudaMemcpyAsync (to host)")

    def handle(self) -> int:
        return int(self.stream)

    def synchronize(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")


class _PyCuda:
    """The same four operations through pycuda (primary context of the device)."""

    name = "pycuda"

    def __init__(self, device: int) -> None:
        import pycuda.driver as drv

        drv.init()
        self.drv = drv
        self.context = drv.Device(device).retain_primary_context()
        self.context.push()
        self.stream = drv.Stream()
        self._allocations: dict[int, Any] = {}

    def alloc(self, nbytes: int) -> int:
        allocation = self.drv.mem_alloc(max(1, nbytes))
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, pointer: int) -> None:
        allocation = self._allocations.pop(pointer, None)
        if allocation is not None:
            allocation.free()

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        self.drv.memcpy_htod_async(pointer, array, self.stream)

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        self.drv.memcpy_dtoh_async(array, pointer, self.stream)

    def handle(self) -> int:
        return int(self.stream.handle)

    def synchronize(self) -> None:
        self.stream.synchronize()


def _cuda_memory_api() -> type:
    """The CUDA memory binding to use; ImportError naming both when neither is installed."""
    try:
        try:
            from cuda.bindings import runtime  # noqa: F401
        except ImportError:
            from cuda import cudart  # noqa: F401
        return _CudaPython
    except ImportError:
        pass
    try:
        import pycuda.driver  # noqa: F401

        return _PyCuda
    except ImportError:
        raise ImportError("neither cuda-python nor pycuda is installed") from None


def _tensorrt_available() -> Availability:
    try:
        return _tensorrt_availability()
    except Exception as exc:  # available() must never raise: a broken install is a reason
        return Availability(False, f"TensorRT is unusable here ({type(exc).__name__}: {exc})")


def _tensorrt_availability() -> Availability:
    try:
        import tensorrt as trt
    except ImportError as exc:
        return Availability(False, f"the TensorRT Python bindings are not installed ({exc}); they come with "
                                   "JetPack (sudo apt install python3-libnvinfer) or pip install tensorrt")
    except Exception as exc:  # a broken install (missing libnvinfer.so) must not crash the chain
        return Availability(False, f"TensorRT fails to import ({type(exc).__name__}: {exc})")
    version = str(getattr(trt, "__version__", "0"))
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        major, minor = 0, 0
    if (major, minor) < (8, 5):
        return Availability(False, f"TensorRT {version} is too old: the runner needs the named-tensor API "
                                   "of TensorRT >= 8.5 (JetPack >= 5.1)")
    try:
        _cuda_memory_api()
    except ImportError as exc:
        return Availability(False, f"TensorRT {version} is installed but {exc}: no CUDA memory path "
                                   "(pip install 'edgeret[cuda]' for cuda-python)")
    try:
        from edgeret_plugins.backends.tensorrt_cache import gpu_identity

        name, capability = gpu_identity(0)
    except Exception as exc:
        return Availability(False, f"TensorRT {version} is installed but no CUDA GPU answers ({exc})")
    return Availability(True, f"TensorRT {version} on {name} (compute capability {capability})", (name,))


class TensorRtRunner:
    """A deserialized engine with device buffers; numpy in, numpy out (dtypes from the engine)."""

    def __init__(self, path: Path, device: int = 0) -> None:
        import tensorrt as trt

        from edgeret_plugins.backends.tensorrt_cache import check_engine_environment

        path = Path(path)
        if not path.is_file():
            raise InputError(path, "engine file does not exist")
        check_engine_environment(path, device=device)
        self.trt = trt
        self.cuda = _cuda_memory_api()(device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise InputError(path, "TensorRT cannot deserialize this engine (built with another TensorRT "
                                   "version or GPU?); rebuild it on this device")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, capacity in bytes)
        self.path = path

    def _buffer(self, name: str, nbytes: int) -> int:
        pointer, capacity = self._buffers.get(name, (0, 0))
        if nbytes > capacity:
            if pointer:
                self.cuda.free(pointer)
            pointer, capacity = self.cuda.alloc(nbytes), nbytes
            self._buffers[name] = (pointer, capacity)
        return pointer

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise InputError(self.path, f"missing model inputs: {', '.join(missing)}")
        for name in self.input_names:
            array = np.ascontiguousarray(inputs[name], dtype=self.dtypes[name])
            if not self.context.set_input_shape(name, tuple(array.shape)):
                raise InputError(self.path, f"input '{name}' shape {array.shape} is outside the engine's "
                                            "optimization profile")
            pointer = self._buffer(name, array.nbytes)
            self.cuda.to_device(pointer, array)
            self.context.set_tensor_address(name, pointer)
        outputs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = np.empty(shape, dtype=self.dtypes[name])
            self.context.set_tensor_address(name, self._buffer(name, outputs[name].nbytes))
        if not self.context.execute_async_v3(self.cuda.handle()):
            raise EdgeretError(f"{self.path}: TensorRT execution failed")
        for name, array in outputs.items():
            self.cuda.to_host(array, self._buffers[name][0])
        self.cuda.synchronize()
        return {name: array.astype(np.float32) if array.dtype == np.float16 else array
                for name, array in outputs.items()}

    def __del__(self) -> None:
        for pointer, _ in getattr(self, "_buffers", {}).values():
            with contextlib.suppress(Exception):
                self.cuda.free(pointer)


def _tensorrt_load(path: str | Path, device: str = "CPU", threads: int | None = None) -> TensorRtRunner:
    availability = _tensorrt_available()
    if not availability.ok:
        raise EdgeretError(f"backend 'tensorrt' is not available: {availability.reason}")
    return TensorRtRunner(Path(path), _device_index(device))


CUDA_BACKEND = BackendPlugin(
    name="cuda",
    formats=("onnx",),
    description="ONNX Runtime GPU (TensorRT / CUDA execution providers, onnxruntime-gpu)",
    available=_cuda_available,
    load=_cuda_load,
)
TENSORRT_BACKEND = BackendPlugin(
    name="tensorrt",
    formats=("tensorrt",),
    description="TensorRT engines built on the device (Jetson), CUDA via cuda-python or pycuda",
    available=_tensorrt_available,
    load=_tensorrt_load,
)


class _BackendPluginObject:
    """One plugin object per backend, so each has its own entry point (and can be disabled alone)."""

    def __init__(self, backend: BackendPlugin) -> None:
        self.backend = backend
        self.__name__ = f"{__name__}:{backend.name}_plugin"

    @hookimpl
    def edgeret_backends(self) -> Iterable[BackendPlugin]:
        yield self.backend


# entry points: cuda = "...cuda_backend:cuda_plugin", tensorrt = "...cuda_backend:tensorrt_plugin"
cuda_plugin = _BackendPluginObject(CUDA_BACKEND)
tensorrt_plugin = _BackendPluginObject(TENSORRT_BACKEND)
