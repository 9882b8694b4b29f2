"""TensorRT on the Jetson: build the engine from a bundle's ONNX + build spec, and cache it.

The device half of the TensorRT flow (the build host's half, the exporter, is
``edgeret_exporters.tensorrt``). An engine is specific to the TensorRT version and
the GPU it was built on, so it is built here, on the device: ``build_from_spec``
checks the ONNX against the spec's sha256, parses it with the TensorRT Python API,
sets ``BuilderFlag.FP16``/``INT8`` and one optimization profile, reports progress
through ``IProgressMonitor`` (TensorRT >= 10) and caches the serialized engine
(``tensorrt_cache``: keyed by model, TensorRT version, GPU, precision and shape
profile). Needs tensorrt plus cuda-python or pycuda (for the GPU name); no torch.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgeret.errors import EdgeretError
from edgeret_plugins.backends.tensorrt_cache import (
    PRECISIONS,
    engine_key,
    file_sha256,
    find_cached_engine,
    normalize_shape_profile,
    store_engine,
)

SPEC_SUFFIX = ".trt.json"
SPEC_SCHEMA = 1
DEFAULT_WORKSPACE_MB = 1024

# ---------------------------------------------------------------------------
# on-device build (TensorRT Python API)
# ---------------------------------------------------------------------------


def _progress_monitor(trt: Any, report: Callable[[str], None]) -> Any:
    """An IProgressMonitor printing phases and steps (TensorRT >= 10), else None."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class Monitor(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.steps: dict[str, int] = {}
            self.started = time.monotonic()

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.steps[phase_name] = num_steps
            indent = "  " if parent_phase else ""
            report(f"{indent}[{time.monotonic() - self.started:6.1f}s] {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            total = self.steps.get(phase_name, 0)
            if total >= 10 and (step + 1) % max(1, total // 10) == 0:
                report(f"    {phase_name}: {step + 1}/{total}")
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            self.steps.pop(phase_name, None)

    return Monitor()


def _build_serialized(onnx_path: Path, precision: str, profile: dict[str, dict[str, list[int]]],
                      workspace_mb: int, progress: bool | Callable[[str], None]) -> bytes:
    import tensorrt as trt

    report = progress if callable(progress) else (lambda line: print(line, file=sys.stderr, flush=True))
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(str(trt.__version__).split(".")[0])
    flags = 0
    if major < 10:  # explicit batch is the only mode (and the flag deprecated) from TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeretError(f"{onnx_path}: TensorRT cannot parse this ONNX ({errors})")

    config = builder.create_builder_config()
    workspace = int(workspace_mb) << 20
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    else:  # TensorRT < 8.4
        config.max_workspace_size = workspace
    if precision in ("fp16", "int8"):
        if not getattr(builder, "platform_has_fast_fp16", True):
            report("warning: this GPU has no fast fp16; TensorRT may keep fp32 kernels")
        config.set_flag(trt.BuilderFlag.FP16)  # int8: fp16 for the layers left unquantized
    if precision == "int8":
        layer_types = {network.get_layer(i).type for i in range(network.num_layers)}
        if trt.LayerType.QUANTIZE not in layer_types:
            raise EdgeretError(f"{onnx_path}: int8 needs an explicitly quantized (QDQ) ONNX; this one has no "
                               "QuantizeLinear. Export it with the tensorrt exporter at int8")
        config.set_flag(trt.BuilderFlag.INT8)

    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    unknown = sorted(set(profile) - {t.name for t in inputs})
    if unknown:
        raise EdgeretError(f"shape profile names inputs the model does not have: {unknown} "
                           f"(inputs: {[t.name for t in inputs]})")
    dynamic = [t.name for t in inputs if any(int(d) < 0 for d in t.shape)]
    missing = [name for name in dynamic if name not in profile]
    if missing:
        raise EdgeretError(f"inputs {missing} have dynamic axes: give their min/opt/max in the shape profile")
    if profile:
        opt_profile = builder.create_optimization_profile()
        for name, shapes in profile.items():
            opt_profile.set_shape(name, shapes["min"], shapes["opt"], shapes["max"])
        config.add_optimization_profile(opt_profile)
    if progress:
        monitor = _progress_monitor(trt, report)
        if monitor is not None:
            config.progress_monitor = monitor
        else:
            report(f"TensorRT {trt.__version__} has no IProgressMonitor; building (this can take minutes)...")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgeretError(f"{onnx_path}: TensorRT failed to build a {precision} engine (see the log above)")
    return bytes(serialized)


def build_engine(
    onnx_path: str | Path,
    cache_dir: str | Path,
    precision: str,
    shape_profile: Mapping[str, Any] | None = None,
    progress: bool | Callable[[str], None] = True,
    *,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    device: int = 0,
    rebuild: bool = False,
) -> Path:
    """Build (or reuse from `cache_dir`) the TensorRT engine for `onnx_path` on this device.

    `progress` is True (phases to stderr), False, or a callable taking one line.
    Returns the path of ``<cache_dir>/<key>.engine``.
    """
    onnx_path, cache_dir = Path(onnx_path), Path(cache_dir)
    if not onnx_path.is_file():
        raise EdgeretError(f"{onnx_path}: ONNX model does not exist")
    profile = normalize_shape_profile(shape_profile)
    key = engine_key(onnx_path, precision, profile, device=device)
    if not rebuild:
        cached = find_cached_engine(cache_dir, key)
        if cached is not None:
            return cached
    started = time.monotonic()
    serialized = _build_serialized(onnx_path, precision, profile, workspace_mb, progress)
    return store_engine(cache_dir, key, serialized, onnx=str(onnx_path), workspace_mb=workspace_mb,
                        build_seconds=round(time.monotonic() - started, 1))




def build_spec_path(onnx_path: str | Path) -> Path:
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.stem + SPEC_SUFFIX)


def read_build_spec(spec_path: str | Path) -> dict[str, Any]:
    spec_path = Path(spec_path)
    try:
        spec = json.loads(spec_path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgeretError(f"{spec_path}: unreadable TensorRT build spec ({exc})") from None
    if spec.get("schema") != SPEC_SCHEMA or spec.get("precision") not in PRECISIONS:
        raise EdgeretError(f"{spec_path}: not an edgeret TensorRT build spec (schema {SPEC_SCHEMA})")
    return spec


def build_from_spec(spec_path: str | Path, cache_dir: str | Path,
                    progress: bool | Callable[[str], None] = True, **options: Any) -> Path:
    """Build the engine described by an exporter-written spec; checks the ONNX is the exported one."""
    spec_path = Path(spec_path)
    spec = read_build_spec(spec_path)
    onnx_path = spec_path.parent / spec["onnx"]
    if file_sha256(onnx_path) != spec["onnx_sha256"]:
        raise EdgeretError(f"{onnx_path}: sha256 differs from the build spec {spec_path.name}; re-export")
    options.setdefault("workspace_mb", spec.get("workspace_mb", DEFAULT_WORKSPACE_MB))
    return build_engine(onnx_path, cache_dir, spec["precision"], spec["shape_profile"], progress, **options)
