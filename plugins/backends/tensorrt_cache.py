"""TensorRT engine cache for Jetson: shape profiles, cache keys and the cached engines.

Pure Python (no TensorRT needed to check a key), so it is tested on any machine.
An engine is only valid for the TensorRT version and GPU it was built on; the
cache key is

    key = sha256(model sha256, TensorRT version, GPU name + compute capability,
                 precision, shape profile)

and ``load_cached_engine`` names every field that differs when it refuses one.
The builder is :mod:`edgeret_plugins.backends.tensorrt_build`; the exporter that writes the ONNX and
its build spec is :mod:`edgeret_exporters.tensorrt`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeret.bundle.manifest import sha256_file
from edgeret.errors import EdgeretError

PRECISIONS = ("fp32", "fp16", "int8")


def normalize_shape_profile(profile: Mapping[str, Any] | None) -> dict[str, dict[str, list[int]]]:
    """Canonical form ``{input: {"min": [...], "opt": [...], "max": [...]}}``, inputs sorted.

    Accepts per input a ``{"min","opt","max"}`` mapping, a ``(min, opt, max)``
    triple of shapes, or one shape (static: min = opt = max). None is the
    empty profile (all inputs static in the ONNX).
    """
    if profile is None:
        return {}
    if not isinstance(profile, Mapping):
        raise EdgeretError(f"shape profile must map input names to shapes, got {type(profile).__name__}")
    result: dict[str, dict[str, list[int]]] = {}
    for name in sorted(profile):
        spec = profile[name]
        if isinstance(spec, Mapping):
            missing = {"min", "opt", "max"} - set(spec)
            if missing:
                raise EdgeretError(f"shape profile '{name}': missing {sorted(missing)}")
            shapes = [spec["min"], spec["opt"], spec["max"]]
        elif isinstance(spec, Sequence) and spec and all(isinstance(s, Sequence) for s in spec):
            if len(spec) != 3:
                raise EdgeretError(f"shape profile '{name}': give (min, opt, max) shapes, got {len(spec)}")
            shapes = list(spec)
        elif isinstance(spec, Sequence):
            shapes = [spec, spec, spec]
        else:
            raise EdgeretError(f"shape profile '{name}': not a shape: {spec!r}")
        try:
            mn, opt, mx = ([int(d) for d in s] for s in shapes)
        except (TypeError, ValueError):
            raise EdgeretError(f"shape profile '{name}': dimensions must be integers: {shapes!r}") from None
        if not (len(mn) == len(opt) == len(mx)) or not mn:
            raise EdgeretError(f"shape profile '{name}': min/opt/max need the same non-zero rank")
        if any(d < 1 for d in mn) or any(not (a <= b <= c) for a, b, c in zip(mn, opt, mx, strict=True)):
            raise EdgeretError(f"shape profile '{name}': need 1 <= min <= opt <= max per axis, "
                               f"got min {mn}, opt {opt}, max {mx}")
        result[str(name)] = {"min": mn, "opt": opt, "max": mx}
    return result


file_sha256 = sha256_file  # the name the build spec and the CUDA backend know it by


_FIELD_LABELS = {
    "model_sha256": "model (ONNX sha256)",
    "tensorrt_version": "TensorRT version",
    "gpu_name": "GPU",
    "compute_capability": "GPU compute capability",
    "precision": "precision",
    "shape_profile": "shape profile",
}
ENVIRONMENT_FIELDS = ("tensorrt_version", "gpu_name", "compute_capability")


@dataclasses.dataclass(frozen=True)
class EngineKey:
    """Everything a serialized TensorRT engine depends on; `digest()` names the cache file."""

    model_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7" (Orin), "7.2" (Xavier), ...
    precision: str
    shape_profile: str  # canonical JSON of normalize_shape_profile(...)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EdgeretError(f"TensorRT precision must be one of {PRECISIONS}, not {self.precision!r}")

    @classmethod
    def create(cls, model_sha256: str, tensorrt_version: str, gpu_name: str, compute_capability: str,
               precision: str, shape_profile: Mapping[str, Any] | None) -> EngineKey:
        canonical = json.dumps(normalize_shape_profile(shape_profile), sort_keys=True, separators=(",", ":"))
        return cls(str(model_sha256), str(tensorrt_version), str(gpu_name).strip(), str(compute_capability),
                   precision, canonical)

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineKey:
        fields = [f.name for f in dataclasses.fields(cls)]
        missing = [f for f in fields if f not in data]
        if missing:
            raise EdgeretError(f"engine key is missing {missing}")
        return cls(**{f: str(data[f]) for f in fields})

    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def differences(self, other: EngineKey, fields: Sequence[str] | None = None) -> list[str]:
        """Human-readable 'field: this vs other' for each differing field (self = the engine's)."""
        out = []
        for name in fields or [f.name for f in dataclasses.fields(self)]:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                if name == "model_sha256":
                    mine, theirs = mine[:12], theirs[:12]
                out.append(f"{_FIELD_LABELS[name]}: engine has {mine}, expected {theirs}")
        return out


def gpu_identity(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") via cuda-python, else pycuda."""
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
    except ImportError:
        cudart = None
    if cudart is not None:
        err, props = cudart.cudaGetDeviceProperties(device)
        if int(err) != 0:
            raise EdgeretError(f"CUDA cannot query GPU {device} ({err})")
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return name.rstrip("\x00").strip(), f"{props.major}.{props.minor}"
    try:
        import pycuda.driver as drv
    except ImportError:
        raise EdgeretError("neither cuda-python nor pycuda is installed: cannot identify the GPU "
                           "(pip install 'edgeret[cuda]')") from None
    try:
        drv.init()
        dev = drv.Device(device)
        major, minor = dev.compute_capability()
        return dev.name().strip(), f"{major}.{minor}"
    except Exception as exc:
        raise EdgeretError(f"CUDA cannot query GPU {device} ({exc})") from None


def tensorrt_version() -> str:
    try:
        import tensorrt as trt
    except ImportError:
        raise EdgeretError("the TensorRT Python bindings are not installed (JetPack: "
                           "sudo apt install python3-libnvinfer; x86: pip install tensorrt)") from None
    return str(trt.__version__)


def engine_key(onnx_path: str | Path, precision: str, shape_profile: Mapping[str, Any] | None, *,
               device: int = 0, trt_version: str | None = None,
               gpu: tuple[str, str] | None = None) -> EngineKey:
    """The key for building `onnx_path` here (TensorRT version and GPU queried unless given)."""
    name, capability = gpu or gpu_identity(device)
    return EngineKey.create(file_sha256(onnx_path), trt_version or tensorrt_version(), name, capability,
                            precision, shape_profile)


def _engine_files(cache_dir: Path, digest: str) -> tuple[Path, Path]:
    return cache_dir / f"{digest}.engine", cache_dir / f"{digest}.json"


def _read_sidecar(engine: Path) -> dict[str, Any]:
    sidecar = engine.with_suffix(".json")
    if not sidecar.is_file():
        raise EdgeretError(f"{engine}: no sidecar {sidecar.name}: cannot tell what this engine was built "
                           "for; rebuild it with build_engine")
    try:
        data = json.loads(sidecar.read_text())
        return {"key": EngineKey.from_dict(data["key"]), "engine_sha256": data.get("engine_sha256")}
    except (ValueError, KeyError, TypeError) as exc:
        raise EdgeretError(f"{sidecar}: unreadable engine sidecar ({exc})") from None


def _verify(engine: Path, expected: EngineKey, fields: Sequence[str] | None = None) -> None:
    info = _read_sidecar(engine)
    problems = info["key"].differences(expected, fields)
    if problems:
        raise EdgeretError(f"cached TensorRT engine {engine} does not match this model/device: "
                           + "; ".join(problems) + ". Rebuild it (build_engine) on this device")
    if info["engine_sha256"] and file_sha256(engine) != info["engine_sha256"]:
        raise EdgeretError(f"cached TensorRT engine {engine} is corrupt (sha256 differs from its sidecar); "
                           "delete it and rebuild")


def find_cached_engine(cache_dir: str | Path, key: EngineKey) -> Path | None:
    """The cached engine for `key`, or None on a miss. A damaged or inconsistent entry is an error."""
    engine, sidecar = _engine_files(Path(cache_dir), key.digest())
    if not engine.is_file() or not sidecar.is_file():
        return None
    _verify(engine, key)
    return engine


def load_cached_engine(location: str | Path, expected: EngineKey) -> Path:
    """Strict lookup: the engine file (or the engine in cache folder `location`) built for `expected`.

    Raises EdgeretError naming what differs when the engine was built for
    another model, TensorRT version, GPU, precision or shape profile (for a
    folder: compared with the cached engine of the same model, else any).
    """
    location = Path(location)
    if location.is_dir():
        found = find_cached_engine(location, expected)
        if found is not None:
            return found
        candidates = []
        for sidecar in sorted(location.glob("*.json")):
            engine = sidecar.with_suffix(".engine")
            if engine.is_file():
                try:
                    candidates.append((engine, _read_sidecar(engine)["key"]))
                except EdgeretError:
                    continue
        if not candidates:
            raise EdgeretError(f"no cached TensorRT engine in {location}; build one with build_engine")
        candidates.sort(key=lambda item: (item[1].model_sha256 != expected.model_sha256,
                                          len(item[1].differences(expected))))
        engine, key = candidates[0]
        raise EdgeretError(f"no cached TensorRT engine in {location} matches; closest is {engine.name}: "
                           + "; ".join(key.differences(expected))
                           + ". Rebuild it (build_engine) on this device")
    if not location.is_file():
        raise EdgeretError(f"{location}: TensorRT engine does not exist")
    _verify(location, expected)
    return location


def check_engine_environment(engine: str | Path, *, trt_version: str | None = None,
                             gpu: tuple[str, str] | None = None, device: int = 0) -> None:
    """Refuse an engine whose sidecar says another TensorRT version or GPU (no sidecar: no check)."""
    engine = Path(engine)
    if not engine.with_suffix(".json").is_file():
        return
    info = _read_sidecar(engine)
    name, capability = gpu or gpu_identity(device)
    here = dataclasses.replace(info["key"], tensorrt_version=trt_version or tensorrt_version(),
                               gpu_name=name, compute_capability=capability)
    _verify(engine, here, ENVIRONMENT_FIELDS)


def store_engine(cache_dir: str | Path, key: EngineKey, serialized: bytes, **details: Any) -> Path:
    """Write ``<key>.engine`` atomically and its ``<key>.json`` sidecar (key, engine sha256, details)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    engine, sidecar = _engine_files(cache_dir, key.digest())
    tmp = engine.with_suffix(f".engine.tmp{os.getpid()}")
    tmp.write_bytes(serialized)
    tmp.replace(engine)
    sidecar.write_text(json.dumps({
        "key": key.to_dict(), "digest": key.digest(), "engine_sha256": file_sha256(engine), **details,
    }, indent=2))
    return engine
