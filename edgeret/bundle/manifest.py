"""Device bundles: the folder `edgeret export --device NAME` writes and a camera loads.

Runtime code: numpy + the standard library only (no torch), so `edgeret verify`
runs on the device. Layout::

    BUNDLE/
      edgeret.json              the manifest (below)
      <task>/model.<ext>        the artifact (.onnx, .xml + .bin, .tflite; Jetson: .onnx + .trt.json)
      <task>/golden.npz         golden input/output pairs `verify` replays
      engines/                  TensorRT engines built on the device (`edgeret build`; not hashed)

The manifest (`edgeret.json`) is typed in `edgeret.bundle.schema` (`BundleManifest`,
`TaskEntry`, ...; JSON Schema in `docs/bundle-manifest.schema.json`): the device's
view of it, checked field by field on load. A task entry carries the artifact and
all its files, format, precision, target backend and the backend the accuracy gate
ran on here, exporter and quantization notes, input/output `TensorSpec`s,
preprocessing, labels, calibration, the gate, golden pairs and, for Jetson, the
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

from edgeret.bundle.schema import SCHEMA, SCHEMA_VERSION, BundleError, BundleManifest, parse_manifest

MANIFEST = "edgeret.json"
ENGINES_DIR = "engines"  # device-local TensorRT engine cache: not part of the hashed bundle
TOP_KEYS = ("schema", "schema_version", "created", "edgeret_version", "device", "toolchain", "export",
            "tasks", "files")
# Golden arrays inside golden.npz: "<kind>/<tensor name>", leading axis = pair index.
GOLDEN_KINDS = ("input", "output", "reference")
# Output arrays larger than this many values per pair (images) are stored as float16 (rounding error
# <= 4.9e-4 * |value|, inside every golden tolerance); load_golden returns float32.
GOLDEN_HALF_ABOVE = 1 << 16


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
    data = clean_json(json.loads(json.dumps(data, default=_json_default)))
    parse_manifest(data, root / MANIFEST)  # what the device would refuse is never written
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


def load_manifest(root: str | Path) -> BundleManifest:
    """Read BUNDLE/edgeret.json into the typed manifest; BundleError (one line) when it is not usable."""
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
    return parse_manifest(data, path)


def check_hashes(root: str | Path, manifest: BundleManifest) -> int:
    """Every listed file exists with its sha256 and no file is unlisted; returns the count.

    A BundleError names the offending file."""
    root = Path(root)
    listed = manifest.files
    for rel, info in listed.items():
        path = root / rel
        if not path.is_file():
            raise BundleError(f"{path}: listed in the manifest but missing from the bundle")
        if sha256_file(path) != info.sha256:
            raise BundleError(f"{path}: sha256 does not match the manifest (file tampered with or corrupted)")
    extra = sorted(set(hash_files_listing(root)) - set(listed))
    if extra:
        raise BundleError(f"{root / extra[0]}: file is not listed in the manifest (added after export?)")
    return len(listed)


def hash_files_listing(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in _bundle_files(root)]
