"""The bundle manifest (`edgeret.json`) as typed data: what a device may rely on, checked on load.

The dataclasses below are the contract. `parse_manifest` turns the JSON into them and
refuses anything else with one line naming the file, the field and what is wrong
(`BUNDLE/edgeret.json: tasks.sr.golden.tolerance.atol: expected a number, got 'x'`);
`json_schema()` derives the published JSON Schema (`docs/bundle-manifest.schema.json`)
from the same classes, so the types, the check and the schema cannot drift apart.

The check is written here, not with `jsonschema`, to keep the device's footprint at numpy
and the standard library; the tests validate real exported manifests with `jsonschema`
against the published schema. Keys a newer exporter adds are kept in the raw dict
(`BundleManifest.raw`) and ignored by older readers; a changed meaning bumps
`schema_version`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from edgeret.errors import EdgeretError
from edgeret.plugin.registrations import TensorSpec

SCHEMA = "edgeret-bundle"
SCHEMA_VERSION = 1


class BundleError(EdgeretError):
    """A bundle is missing, malformed, tampered with or fails verification."""


class ManifestError(BundleError):
    """A manifest field is missing or of the wrong type (the message names the field)."""


@dataclass(frozen=True)
class FileHash:
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Tolerance:
    """max |replayed - stored| <= atol * max(1, |stored|) + rtol * |stored|, per output."""

    atol: float
    rtol: float = 0.0


@dataclass(frozen=True)
class Golden:
    """Golden input/output pairs that `edgeret verify` replays on the device."""

    file: str
    pairs: int
    backend: str
    tolerance: Tolerance
    cross_backend_tolerance: Tolerance | None = None
    note: str = ""


@dataclass(frozen=True)
class Agreement:
    """What a replay must keep of the fp32 model beyond the tolerance: its classes, or a PSNR floor."""

    kind: str  # "none"; "class": same argmax as fp32; "psnr": PSNR vs fp32 at least min_db
    output: str | None = None
    expected_same: int | None = None
    data_range: float = 1.0
    min_db: float | None = None


@dataclass(frozen=True)
class Gate:
    """The accuracy gate the artifact passed on the build host: fp32 vs exported on held-out data."""

    precision: str
    backend: str
    metric: str
    passed: bool
    kind: str = ""
    unit: str = ""
    n: int | None = None
    fp32: float | None = None
    exported: float | None = None
    drop: float | None = None
    allowed_drop: float | None = None
    min_db: float | None = None  # image tasks gated on fidelity to fp32 instead of a drop
    note: str = ""
    heldout: str = ""
    attempts: tuple[dict[str, Any], ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Preprocessing:
    """The task's own pre/post-processing (pure numpy, named by import path) and its input size."""

    function: str
    modality: str
    postprocess: str = ""
    image_kind: str | None = None
    input_size: tuple[int, ...] | None = None
    description: str = ""


@dataclass(frozen=True)
class WeightsRef:
    file: str
    sha256: str


@dataclass(frozen=True)
class TaskEntry:
    """One exported task: its artifact and files, how it was made, and how to check it."""

    artifact: str
    files: tuple[str, ...]
    format: str
    precision: str
    target_backend: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocessing: Preprocessing
    labels: tuple[str, ...]
    gate: Gate
    golden: Golden
    description: str = ""
    gate_backend: str = ""
    runtime_format: str | None = None  # the format a backend loads when it differs from `format` (Jetson)
    exporter: str = ""
    quantization: dict[str, Any] = field(default_factory=dict)
    exporter_options: dict[str, Any] = field(default_factory=dict)
    size_bytes: int | None = None
    weights: WeightsRef | None = None
    calibration: dict[str, Any] | None = None
    agreement: Agreement | None = None
    export_seconds: float | None = None
    tensorrt: dict[str, Any] | None = None

    @property
    def loads_as(self) -> str:
        """The artifact format a backend must load."""
        return self.runtime_format or self.format


@dataclass(frozen=True)
class BundleDevice:
    """The device profile the bundle was exported for (its full YAML form is kept in `raw`)."""

    name: str
    backends: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ()
    input_sizes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    cpu_arch: str = ""
    accelerator: str = ""


@dataclass(frozen=True)
class BundleManifest:
    schema: str
    schema_version: int
    created: str
    edgeret_version: str
    device: BundleDevice
    toolchain: dict[str, Any]
    export: dict[str, Any]
    tasks: dict[str, TaskEntry]
    files: dict[str, FileHash]
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


# ---------------------------------------------------------------------------
# dict -> dataclasses, with one-line errors
# ---------------------------------------------------------------------------

_JSON_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, globalns={**globals(), "TensorSpec": TensorSpec})


def _optional_of(tp: Any) -> Any | None:
    """X for `X | None`, else None."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def _convert(value: Any, tp: Any, where: str) -> Any:
    inner = _optional_of(tp)
    if inner is not None:
        return None if value is None else _convert(value, inner, where)
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ManifestError(f"{where}: expected a list, got {value!r:.60}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        return tuple(value)
    if origin in (dict, Mapping):
        key_t, val_t = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ManifestError(f"{where}: expected an object, got {value!r:.60}")
        return {k: _convert(v, val_t, f"{where}.{k}") for k, v in value.items()}
    if origin in (Union, types.UnionType):  # int | str (tensor dims)
        for option in typing.get_args(tp):
            if _is(value, option):
                return value
        raise ManifestError(f"{where}: unexpected value {value!r:.60}")
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where)
    if not _is(value, tp):
        raise ManifestError(f"{where}: expected {_JSON_NAMES.get(tp, tp.__name__)}, got {value!r:.60}")
    return float(value) if tp is float else value


def _is(value: Any, tp: Any) -> bool:
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object, got {data!r:.60}")
    hints, kwargs = _hints(cls), {}
    for f in dataclasses.fields(cls):
        if f.name == "raw":
            continue
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ManifestError(f"{where}.{f.name}: missing")
            continue
        kwargs[f.name] = _convert(data[f.name], hints[f.name], f"{where}.{f.name}")
    return cls(**kwargs)


def parse_manifest(data: Any, path: str | Path) -> BundleManifest:
    """The typed manifest, or ManifestError naming `path` and the field."""
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: manifest must be a JSON object")
    if data.get("schema") != SCHEMA:
        raise ManifestError(f"{path}: not an edgeret bundle manifest (schema is {data.get('schema')!r})")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"{path}: manifest schema_version {data.get('schema_version')!r} is not "
                            f"supported (this edgeret reads {SCHEMA_VERSION})")
    try:
        manifest = _from_dict(BundleManifest, data, "")
    except ManifestError as exc:
        raise ManifestError(f"{path}: {str(exc).lstrip('.')}") from None
    if not manifest.tasks:
        raise ManifestError(f"{path}: tasks: the manifest lists no tasks")
    for rel in manifest.files:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ManifestError(f"{path}: files.{rel}: points outside the bundle")
    for name, entry in manifest.tasks.items():
        for rel in (entry.artifact, *entry.files, entry.golden.file):
            if rel not in manifest.files:
                raise ManifestError(f"{path}: tasks.{name}: file '{rel}' has no sha256 in 'files'")
    return dataclasses.replace(manifest, raw=data)


# ---------------------------------------------------------------------------
# the published JSON Schema, derived from the classes above
# ---------------------------------------------------------------------------


def _schema_of(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    inner = _optional_of(tp)
    if inner is not None:
        return {"anyOf": [_schema_of(inner, defs), {"type": "null"}]}
    if tp is Any:
        return {}
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        items = _schema_of(args[0], defs) if len(args) == 2 and args[1] is Ellipsis else {}
        return {"type": "array", "items": items}
    if origin in (dict, Mapping):
        return {"type": "object", "additionalProperties": _schema_of(typing.get_args(tp)[1], defs)}
    if origin in (Union, types.UnionType):
        return {"anyOf": [_schema_of(a, defs) for a in typing.get_args(tp)]}
    if dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder: recursion guard
            defs[name] = _object_schema(tp, defs)
        return {"$ref": f"#/$defs/{name}"}
    return {"type": {str: "string", int: "integer", float: "number", bool: "boolean"}[tp]}


def _object_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = _hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.name != "raw"]
    schema: dict[str, Any] = {"type": "object"}
    if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):
        schema["description"] = " ".join(cls.__doc__.split())
    schema["properties"] = {f.name: _schema_of(hints[f.name], defs) for f in fields}
    schema["required"] = [f.name for f in fields
                          if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    return schema


def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of `edgeret.json`, as published in docs/bundle-manifest.schema.json."""
    defs: dict[str, Any] = {}
    root = _object_schema(BundleManifest, defs)
    root["properties"]["schema"] = {"const": SCHEMA}
    root["properties"]["schema_version"] = {"const": SCHEMA_VERSION}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://edgeret.dev/schemas/bundle-manifest-1.json",
            "title": "edgeret bundle manifest (edgeret.json)", **root, "$defs": dict(sorted(defs.items()))}


if __name__ == "__main__":  # python -m edgeret.bundle.schema > docs/bundle-manifest.schema.json
    import json

    print(json.dumps(json_schema(), indent=2))
