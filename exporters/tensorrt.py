"""TensorRT for Jetson: ONNX + build spec on the build host, engine built and cached on the device.

A TensorRT engine is specific to the TensorRT version and the GPU it was built
on, so the build host does not write one. It writes:

* the ONNX: fp32 for ``fp32`` and ``fp16`` (TensorRT picks fp16 kernels itself
  under ``BuilderFlag.FP16`` and keeps fp32 where a layer needs it, which works
  better than feeding it a cast-laden fp16 ONNX), or an explicit-quantization
  INT8 QDQ ONNX for ``int8`` (``onnx_int8`` with symmetric activations: TensorRT
  only takes zero-point-0 Q/DQ);
* a build spec ``<stem>.trt.json``: precision, the optimization (shape)
  profile, input/output names, workspace, the ONNX's sha256.

On the device, ``build_engine(onnx_path, cache_dir, precision, shape_profile)``
(or ``build_from_spec(spec_path, cache_dir)``) parses the ONNX with the
TensorRT Python API, sets ``BuilderFlag.FP16``/``INT8`` and one optimization
profile, reports progress through ``IProgressMonitor`` (TensorRT >= 10) and
caches the serialized engine as ``<key>.engine`` with a ``<key>.json`` sidecar
where

    key = sha256(model sha256, TensorRT version, GPU name + compute capability,
                 precision, shape profile)

``find_cached_engine`` returns a matching cached engine or None;
``load_cached_engine`` is strict: given an engine (or a cache folder) built for
another TensorRT, GPU, model, precision or profile it raises an EdgeretError
naming each field that differs. Only torch (export side) is imported lazily;
the device side needs tensorrt plus cuda-python or pycuda (for the GPU name). The cache
(keys, sidecars, lookups) is :mod:`edgeret_plugins.backends.tensorrt_cache`; the on-device build
is :mod:`edgeret_plugins.backends.tensorrt_build` (the TensorRT backend's half).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeret.errors import EdgeretError
from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.registrations import ExporterPlugin
from edgeret_exporters.onnx_exporter import read_onnx_metadata
from edgeret_plugins.backends.tensorrt_build import (  # the device half, re-exported for one import
    DEFAULT_WORKSPACE_MB,
    SPEC_SCHEMA,
    build_engine,
    build_from_spec,
    build_spec_path,
    read_build_spec,
)
from edgeret_plugins.backends.tensorrt_cache import (
    ENVIRONMENT_FIELDS,
    PRECISIONS,
    EngineKey,
    check_engine_environment,
    engine_key,
    file_sha256,
    find_cached_engine,
    gpu_identity,
    load_cached_engine,
    normalize_shape_profile,
    store_engine,
    tensorrt_version,
)

__all__ = ["ENVIRONMENT_FIELDS", "PRECISIONS", "EngineKey", "build_engine", "build_from_spec",
           "build_spec_path", "check_engine_environment", "engine_key", "export_tensorrt", "file_sha256",
           "find_cached_engine", "gpu_identity", "load_cached_engine", "normalize_shape_profile",
           "read_build_spec", "store_engine", "tensorrt_version"]

# ---------------------------------------------------------------------------
# build-host side: the exporter
# ---------------------------------------------------------------------------


def export_tensorrt(
    model: Any,
    example_inputs: tuple,
    out_path: str | Path,
    precision: str = "fp16",
    calibration: Any = None,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    metadata: Mapping[str, str] | None = None,
    dynamic_batch: bool = True,
    max_batch: int | None = None,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    **int8_options: Any,
) -> Path:
    """Write the ONNX for TensorRT (at `out_path`, suffix .onnx) and its build spec; returns the ONNX path.

    Shape profile: per input, min batch 1, opt = the example batch, max =
    `max_batch` (default: the example batch); other axes as in the examples.
    """
    from edgeret_exporters.onnx_exporter import export_onnx

    if precision not in PRECISIONS:
        raise EdgeretError(f"TensorRT precision must be one of {PRECISIONS}, not {precision!r}")
    onnx_path = Path(out_path)
    if onnx_path.suffix != ".onnx":
        onnx_path = onnx_path.with_suffix(".onnx")
    samples = None
    if precision == "int8":
        from edgeret_exporters.onnx_int8 import calibration_samples

        samples = calibration_samples(calibration, input_names, exporter="tensorrt int8")
    info = {**(metadata or {}), "edgeret.target": "tensorrt", "edgeret.tensorrt_precision": precision}
    if precision == "int8":
        import tempfile

        from edgeret_exporters.onnx_int8 import quantize_onnx_int8

        with tempfile.TemporaryDirectory(prefix="edgeret-trt-") as tmp:
            fp32 = export_onnx(model, example_inputs, Path(tmp) / "fp32.onnx", input_names=input_names,
                               output_names=output_names, metadata=info, dynamic_batch=dynamic_batch)
            int8_options.setdefault("symmetric_activations", True)
            int8_options.setdefault("per_channel", True)
            symmetric = int8_options["symmetric_activations"]
            if int8_options.get("activation_type", "int8") != "int8" or not symmetric:
                raise EdgeretError("TensorRT explicit quantization needs symmetric int8 activations")
            quantize_onnx_int8(fp32, onnx_path, samples, **int8_options)
    else:
        if int8_options:
            raise EdgeretError(f"options {sorted(int8_options)} only apply to int8")
        export_onnx(model, example_inputs, onnx_path, input_names=input_names, output_names=output_names,
                    metadata={**info, "edgeret.precision": "fp32"}, dynamic_batch=dynamic_batch)

    profile: dict[str, Any] = {}
    for name, example in zip(input_names, example_inputs, strict=True):
        shape = [int(d) for d in example.shape]
        if dynamic_batch and shape:
            top = max(shape[0], int(max_batch or shape[0]))
            profile[name] = {"min": [1, *shape[1:]], "opt": shape, "max": [top, *shape[1:]]}
        else:
            profile[name] = shape
    spec = {
        "schema": SPEC_SCHEMA, "onnx": onnx_path.name, "onnx_sha256": file_sha256(onnx_path),
        "precision": precision, "shape_profile": normalize_shape_profile(profile),
        "input_names": list(input_names), "output_names": list(output_names),
        "workspace_mb": workspace_mb,
        "build": "on the device: edgeret_plugins.backends.tensorrt_build.build_from_spec(spec, cache_dir)",
    }
    build_spec_path(onnx_path).write_text(json.dumps(spec, indent=2))
    return onnx_path


@hookimpl
def edgeret_exporters() -> Iterable[ExporterPlugin]:
    yield ExporterPlugin(
        name="tensorrt",
        format="onnx",  # the bundle holds the ONNX + a build spec; the engine is built on the device
        precisions=PRECISIONS,
        description="ONNX (fp32, or INT8 QDQ) + build spec; the engine is built and cached on the Jetson",
        export=export_tensorrt,
        targets=("tensorrt",),
        suffix=".onnx",
        read_metadata=read_onnx_metadata,
    )
