"""The typed bundle manifest: the published JSON Schema is the classes', and bad fields are one-line errors.

Real exported manifests are checked against the published schema in tests/build_host/test_export.py
(every device profile); here a small manifest is damaged field by field.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edgeret.bundle.manifest import MANIFEST, BundleError, load_manifest, write_manifest
from edgeret.bundle.schema import BundleManifest, TaskEntry, Tolerance, json_schema, parse_manifest

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "docs" / "bundle-manifest.schema.json"


def small_manifest() -> dict:
    task = {
        "artifact": "t/model.onnx", "files": ["t/model.onnx"], "format": "onnx", "precision": "int8",
        "target_backend": "onnxruntime",
        "inputs": [{"name": "image", "shape": ["batch", 1, 8, 8], "dtype": "float32",
                    "value_range": [0.0, 1.0], "description": ""}],
        "outputs": [{"name": "probs", "shape": ["batch", 2], "dtype": "float32", "value_range": None,
                     "description": ""}],
        "preprocessing": {"function": "pkg.processing.preprocess", "modality": "oct", "input_size": [8, 8]},
        "labels": ["good", "poor"],
        "gate": {"precision": "int8", "backend": "onnxruntime", "metric": "accuracy", "passed": True,
                 "fp32": 90.0, "exported": 89.5, "drop": 0.5, "allowed_drop": 0.5, "attempts": []},
        "golden": {"file": "t/golden.npz", "pairs": 2, "backend": "onnxruntime",
                   "tolerance": {"atol": 0.01, "rtol": 0.0}},
        "agreement": {"kind": "class", "output": "probs", "expected_same": 2},
        "a_key_a_newer_exporter_added": {"kept": "in raw"},
    }
    return {"schema": "edgeret-bundle", "schema_version": 1, "created": "2026-12-07T00:00:00+00:00",
            "edgeret_version": "0.1.0",
            "device": {"name": "x86-cpu", "backends": ["onnxruntime"], "input_sizes": {"t": [8, 8]}},
            "toolchain": {"python": "3.11"}, "export": {"requested_precision": "auto"},
            "tasks": {"t": task},
            "files": {"t/model.onnx": {"sha256": "0" * 64, "bytes": 10},
                      "t/golden.npz": {"sha256": "1" * 64, "bytes": 20}}}


def test_the_published_schema_is_the_one_the_classes_give():
    published = json.loads(PUBLISHED.read_text())
    assert published == json_schema(), ("docs/bundle-manifest.schema.json is stale: "
                                         "python -m edgeret.bundle.schema > docs/bundle-manifest.schema.json")
    jsonschema.Draft202012Validator.check_schema(published)


def test_a_good_manifest_parses_into_types_and_validates_against_the_schema():
    data = small_manifest()
    jsonschema.validate(data, json.loads(PUBLISHED.read_text()))
    manifest = parse_manifest(data, "b/edgeret.json")
    assert isinstance(manifest, BundleManifest)
    entry = manifest.tasks["t"]
    assert isinstance(entry, TaskEntry) and entry.loads_as == "onnx"
    assert entry.golden.tolerance == Tolerance(atol=0.01, rtol=0.0)
    assert entry.inputs[0].shape == ("batch", 1, 8, 8) and entry.outputs[0].value_range is None
    assert entry.preprocessing.input_size == (8, 8) and manifest.device.input_sizes == {"t": (8, 8)}
    assert entry.gate.fp32 == 90.0 and entry.agreement.expected_same == 2
    assert manifest.raw["tasks"]["t"]["a_key_a_newer_exporter_added"] == {"kept": "in raw"}


def _damaged(path: tuple, value) -> dict:
    data = small_manifest()
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize("path, value, expected", [
    (("tasks", "t", "golden"), KeyError, "b/edgeret.json: tasks.t.golden: missing"),
    (("tasks", "t", "golden", "tolerance", "atol"), "loose",
     "b/edgeret.json: tasks.t.golden.tolerance.atol: expected a number, got 'loose'"),
    (("tasks", "t", "golden", "pairs"), True, "tasks.t.golden.pairs: expected an integer, got True"),
    (("tasks", "t", "inputs"), {"name": "image"}, "tasks.t.inputs: expected a list"),
    (("tasks", "t", "gate", "passed"), "yes", "tasks.t.gate.passed: expected true or false, got 'yes'"),
    (("files", "t/golden.npz", "sha256"), 7, "files.t/golden.npz.sha256: expected a string, got 7"),
    (("device",), "x86-cpu", "device: expected an object, got 'x86-cpu'"),
    (("tasks",), {}, "tasks: the manifest lists no tasks"),
    (("files", "../outside"), {"sha256": "2" * 64, "bytes": 1},
     "files.../outside: points outside the bundle"),
    (("files",), {"t/model.onnx": {"sha256": "0" * 64, "bytes": 10}},
     "tasks.t: file 't/golden.npz' has no sha256 in 'files'"),
    (("schema_version",), 2, "manifest schema_version 2 is not supported"),
])
def test_a_bad_field_is_one_line_naming_the_file_and_the_field(path, value, expected):
    data = _damaged(path, value)
    with pytest.raises(BundleError) as caught:
        parse_manifest(data, "b/edgeret.json")
    message = str(caught.value)
    assert expected in message and "\n" not in message and message.startswith("b/edgeret.json: ")


def test_the_published_schema_refuses_what_the_loader_refuses():
    schema = json.loads(PUBLISHED.read_text())
    for path, value in ((("tasks", "t", "golden"), KeyError), (("tasks", "t", "gate", "passed"), "yes"),
                        (("tasks", "t", "golden", "tolerance", "atol"), "loose")):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(_damaged(path, value), schema)


def test_write_manifest_never_writes_what_the_device_would_refuse(tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "t").mkdir(parents=True)
    (bundle / "t" / "model.onnx").write_bytes(b"model")
    np.savez(bundle / "t" / "golden.npz", x=np.zeros(1))
    data = small_manifest()
    write_manifest(bundle, data)
    manifest = load_manifest(bundle)
    assert manifest.files["t/model.onnx"].bytes == 5  # hashes filled in from the files
    broken = copy.deepcopy(data)
    broken["tasks"]["t"]["golden"]["pairs"] = "two"
    before = (bundle / MANIFEST).read_bytes()
    with pytest.raises(BundleError, match="tasks.t.golden.pairs: expected an integer"):
        write_manifest(bundle, broken)
    assert (bundle / MANIFEST).read_bytes() == before
    assert not (bundle / (MANIFEST + ".tmp")).exists()
