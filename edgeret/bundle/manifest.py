"""Device bundles: the folder `edgeret export --device NAME` writes and a camera loads.

Runtime code: numpy + the standard library only (no torch), so `edgeret verify`
runs on the device. Layout::

    BUNDLE/
      edgeret.json              the manifest (below)
      <task>/model.<ext>        the artifact (.onnx, .xml + .bin, .tflite; Jetson: .onnx + .trt.json)
      <task>/golden.npz         golden input/output pairs `verify` replays
      engines/                  TensorRT engines built on the device (`edgeret build`; not hashed)

Manifest (`edgeret.json`, JSON; `SCHEMA_VERSION` 1), top-level keys:

    schema, schema_version    "edgeret-bundle", 1
    created                   UTC ISO time
    edgeret_version           the SDK that wrote it
    device                    the resolved device profile (DeviceProfile.to_dict(), source file name only)
    toolchain                 python and package versions used to export (torch, onnx, onnxruntime, ...)
    export                    the request: precision asked for, calibration source, held-out size, seeds
    tasks                     task name -> entry (see `TASK_KEYS`)
    files                     relative path -> {"sha256", "bytes"} for every file but the manifest

A task entry carries: the artifact (relative path) and all its files, format,
precision, target backend and the backend the accuracy gate ran on here,
exporter and quantization notes, input/output `TensorSpec`s, preprocessing
(function, image kind, modality, input size), labels, calibration (source,
size, sha256 of the preprocessed arrays), the gate (metric in fp32 vs
exported, allowed drop, pass/fail, every precision tried), golden pairs (file,
count, tolerances, the backend that produced them) and, for Jetson, the
TensorRT build spec.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.errors import EdgeretError

SCHEMA = "edgeret-bundle"
SCHEMA_VERSION = 1
MANIFEST = "edgeret.json"
ENGINES_DIR = "engines"  # device-local TensorRT engine cache: not part of the hashed bundle
TOP_KEYS = ("schema", "schema_version", "created", "edgeret_version", "device", "toolchain", "export",
            "tasks", "files")
TASK_KEYS = ("artifact", "files", "format", "precision", "target_backend", "inputs", "outputs",
             "preprocessing", "labels", "gate", "golden")
# Golden arrays inside golden.npz: "<kind>/<tensor name>", leading axis = pair index.
GOLDEN_KINDS = ("input", "output", "reference")
# Output arrays larger than this many values per pair (images) are stored as float16 (rounding error
# <= 4.9e-4 * |value|, inside every golden tolerance); load_golden returns float32.
GOLDEN_HALF_ABOVE = 1 << 16


class BundleError(EdgeretError):
    """A bundle is missing, malformed, tampered with or fails verification."""


# ---------------------------------------------------------------------------
# hashing and writing
# ---------------------------------------------------------------------------


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _bundle_files(root: Path) -> list[Path]:
    """Every file under `root` except the manifest and the device-local engine cache."""
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or rel.as_posix() == MANIFEST or rel.parts[0] == ENGINES_DIR:
            continue
        found.append(path)
    return found


def hash_files(root: str | Path) -> dict[str, dict[str, Any]]:
    """relative path -> {"sha256", "bytes"} for every bundle file (manifest and engines/ excluded)."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in _bundle_files(root)}


def write_manifest(root: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Fill in `files` (sha256 of every file now in `root`) and write `edgeret.json` atomically."""
    root = Path(root)
    data: dict[str, Any] = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION}
    data.update({key: manifest[key] for key in TOP_KEYS if key in manifest and key not in data})
    data["files"] = hash_files(root)
    text = json.dumps(data, indent=2, sort_keys=False, default=_json_default, allow_nan=False) + "\n"
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(root / MANIFEST)
    return root / MANIFEST


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return value.as_posix()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def clean_json(value: Any) -> Any:
    """Replace NaN/inf floats (not valid JSON) by None, recursively."""
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, Mapping):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def snap_to_uint8(array: np.ndarray) -> np.ndarray | None:
    """A float input in [0, 1] moved onto the 8-bit grid (k / 255), or None if it is not such an input.

    Golden inputs are snapped before their outputs are computed, so they are stored exactly as uint8
    (a quarter of the float32 size) and replayed bit-exactly."""
    array = np.asarray(array)
    if array.dtype != np.float32 or array.size == 0 or array.min() < 0 or array.max() > 1:
        return None
    return _from_codes(np.rint(array * np.float32(255.0)).astype(np.uint8), 255)


def _from_codes(codes: np.ndarray, levels: int) -> np.ndarray:
    return codes.astype(np.float32) / np.float32(levels)


def save_golden(path: str | Path, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray],
                reference: Mapping[str, np.ndarray]) -> Path:
    """Golden pairs as one .npz: inputs, the exported model's outputs, the fp32 model's outputs.

    Inputs already on the 8-bit grid (`snap_to_uint8`) are stored as uint8 with a "levels/<name>" entry;
    `load_golden` returns float32 either way."""
    arrays = {}
    for kind, group in zip(GOLDEN_KINDS, (inputs, outputs, reference), strict=True):
        for name, array in group.items():
            array = np.ascontiguousarray(array)
            if kind == "input" and array.dtype == np.float32 and array.size:
                codes = np.rint(array * np.float32(255.0))
                if codes.min() >= 0 and codes.max() <= 255 and np.array_equal(
                        _from_codes(codes.astype(np.uint8), 255), array):
                    arrays[f"levels/{name}"] = np.int64(255)
                    array = codes.astype(np.uint8)
            elif kind != "input" and array.dtype == np.float32 and array[:1].size > GOLDEN_HALF_ABOVE:
                array = array.astype(np.float16)
            arrays[f"{kind}/{name}"] = array
    path = Path(path)
    with open(path, "wb") as handle:  # np.savez_compressed(path) would append .npz to odd names
        np.savez_compressed(handle, **arrays)
    return path


def load_golden(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            groups: dict[str, dict[str, np.ndarray]] = {kind: {} for kind in GOLDEN_KINDS}
            levels = {}
            for key in data.files:
                kind, _, name = key.partition("/")
                if kind == "levels" and name:
                    levels[name] = int(data[key])
                    continue
                if kind not in groups or not name:
                    raise BundleError(f"{path}: unexpected array '{key}' in golden pairs")
                array = data[key]
                groups[kind][name] = array.astype(np.float32) if array.dtype == np.float16 else array
            for name, count in levels.items():
                if name not in groups["input"] or count < 1:
                    raise BundleError(f"{path}: bad 8-bit encoding entry for input '{name}' in golden pairs")
                groups["input"][name] = _from_codes(groups["input"][name], count)
    except BundleError:
        raise
    except Exception as exc:
        raise BundleError(f"{path}: unreadable golden pairs ({type(exc).__name__}: {exc})") from None
    if not groups["input"] or not groups["output"]:
        raise BundleError(f"{path}: golden pairs have no inputs or no outputs")
    counts = {len(a) for group in groups.values() for a in group.values()}
    if len(counts) != 1:
        raise BundleError(f"{path}: golden arrays disagree on the number of pairs ({sorted(counts)})")
    return groups


# ---------------------------------------------------------------------------
# loading and checking
# ---------------------------------------------------------------------------


def load_manifest(root: str | Path) -> dict[str, Any]:
    """Read and structurally validate BUNDLE/edgeret.json; BundleError (one line) when it is not usable."""
    root = Path(root)
    if not root.exists():
        raise BundleError(f"{root}: bundle folder does not exist")
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle folder (expected a folder holding {MANIFEST})")
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: manifest missing; not an edgeret bundle (make one with edgeret export)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BundleError(f"{path}: manifest is not UTF-8 text") from None
    except ValueError as exc:
        raise BundleError(f"{path}: manifest is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: manifest must be a JSON object")
    if data.get("schema") != SCHEMA:
        raise BundleError(f"{path}: not an edgeret bundle manifest (schema is {data.get('schema')!r})")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(f"{path}: manifest schema_version {data.get('schema_version')!r} is not supported "
                          f"(this edgeret reads {SCHEMA_VERSION})")
    missing = [key for key in TOP_KEYS if key not in data]
    if missing:
        raise BundleError(f"{path}: manifest is missing {', '.join(missing)}")
    if not isinstance(data["tasks"], dict) or not data["tasks"]:
        raise BundleError(f"{path}: manifest lists no tasks")
    if not isinstance(data["files"], dict):
        raise BundleError(f"{path}: manifest 'files' must map paths to hashes")
    for name, entry in data["tasks"].items():
        if not isinstance(entry, dict):
            raise BundleError(f"{path}: task '{name}' entry must be an object")
        absent = [key for key in TASK_KEYS if key not in entry]
        if absent:
            raise BundleError(f"{path}: task '{name}' is missing {', '.join(absent)}")
        golden = entry["golden"]
        if (not isinstance(entry["artifact"], str) or not isinstance(entry["files"], list)
                or not isinstance(golden, dict) or not isinstance(golden.get("file"), str)
                or not isinstance(golden.get("tolerance"), dict)
                or not isinstance(golden["tolerance"].get("atol"), int | float)):
            raise BundleError(f"{path}: task '{name}': artifact, files or golden (file, tolerance.atol) "
                              "malformed")
        for rel in [entry["artifact"], *entry["files"], entry["golden"].get("file", "")]:
            if rel and rel not in data["files"]:
                raise BundleError(f"{path}: task '{name}' file '{rel}' has no sha256 in 'files'")
    for rel, info in data["files"].items():
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise BundleError(f"{path}: file entry '{rel}' points outside the bundle")
        if not isinstance(info, dict) or not isinstance(info.get("sha256"), str):
            raise BundleError(f"{path}: file entry '{rel}' has no sha256")
    return data


def check_hashes(root: str | Path, manifest: Mapping[str, Any]) -> int:
    """Every listed file exists with its sha256 and no file is unlisted; returns the count.

    A BundleError names the offending file."""
    root = Path(root)
    listed = manifest["files"]
    for rel, info in listed.items():
        path = root / rel
        if not path.is_file():
            raise BundleError(f"{path}: listed in the manifest but missing from the bundle")
        if sha256_file(path) != info["sha256"]:
            raise BundleError(f"{path}: sha256 does not match the manifest (file tampered with or corrupted)")
    extra = sorted(set(hash_files_listing(root)) - set(listed))
    if extra:
        raise BundleError(f"{root / extra[0]}: file is not listed in the manifest (added after export?)")
    return len(listed)


def hash_files_listing(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in _bundle_files(root)]
