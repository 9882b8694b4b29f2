"""`edgeret export / verify / bench / build` on quality-oct (real committed weights), and bad input.

One module-scoped fixture exports quality-oct once per device (small held-out
and calibration sets keep the file near a minute on two busy cores):

| device          | artifact                          |
|-----------------|-----------------------------------|
| x86-cpu         | ONNX int8 QDQ (onnxruntime)       |
| intel-x86       | OpenVINO IR int8 (NNCF)           |
| raspberry-pi-5  | LiteRT .tflite int8 (litert-torch)|
| jetson          | ONNX fp16 + TensorRT build spec   |
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from inprocess_cli import cli, error_line

from edgeret.bundle.manifest import (
    MANIFEST,
    load_golden,
    load_manifest,
    save_golden,
    sha256_file,
    snap_to_uint8,
    write_manifest,
)

TASK = "quality-oct"
ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--tasks", TASK, "--heldout", "24", "--calib-size", "16", "--golden", "4", "--threads", "1"]
DEVICES = {
    "x86-cpu": ["--precision", "int8"],  # + --calib: 16 user-written B-scans (the fixture writes them)
    "intel-x86": [],  # default int8
    "raspberry-pi-5": [],  # default int8
    "jetson": [],  # default fp16
}
EXPECTED = {  # device -> (format, precision, target backend, gate backend)
    "x86-cpu": ("onnx", "int8", "onnxruntime", "onnxruntime"),
    "intel-x86": ("openvino-ir", "int8", "openvino", "openvino"),
    "raspberry-pi-5": ("tflite", "int8", "litert", "litert"),
    "jetson": ("onnx", "fp16", "tensorrt", "onnxruntime"),
}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    from edgeret.build.data.oct import generate_oct
    from edgeret.images.read_write import write_image

    root = tmp_path_factory.mktemp("bundles")
    calib = root / "my-scans"  # the user's own images, one in a sub-folder
    (calib / "sub").mkdir(parents=True)
    for i in range(16):
        write_image(calib / ("sub" if i == 0 else "") / f"scan{i}.png", generate_oct(50_000 + i).image)
    made = {}
    for device, extra in DEVICES.items():
        out = root / device
        if device == "x86-cpu":
            extra = [*extra, "--calib", str(calib)]
        code, stdout, stderr = cli("export", "--device", device, *SMALL, *extra, "-o", str(out), "--quiet")
        assert code == 0, stderr[-2000:]
        made[device] = (out, stdout)
    return made


def copy_bundle(bundles, device: str, tmp_path: Path) -> Path:
    target = tmp_path / f"copy-{device}"
    shutil.copytree(bundles[device][0], target)
    return target


# ---------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("device", list(DEVICES))
def test_export_writes_a_complete_bundle(bundles, device):
    path, stdout = bundles[device]
    manifest = load_manifest(path)  # typed: edgeret.bundle.schema.BundleManifest
    schema = json.loads((ROOT / "docs" / "bundle-manifest.schema.json").read_text())
    jsonschema.validate(manifest.raw, schema)  # what we publish is what we write
    fmt, precision, target, gated_on = EXPECTED[device]
    entry = manifest.tasks[TASK]
    assert (entry.format, entry.precision, entry.target_backend, entry.gate_backend) == (
        fmt, precision, target, gated_on)
    assert manifest.device.name == ("jetson-orin-nano" if device == "jetson" else device)
    assert manifest.toolchain["torch"] and manifest.toolchain["onnxruntime"]
    assert entry.inputs[0].name == "bscan" and entry.inputs[0].shape == ("batch", 1, 160, 256)
    assert [o.name for o in entry.outputs] == ["grade_probs", "sublabel_probs"]
    assert entry.labels == ("good", "usable", "poor")
    assert entry.preprocessing.function.endswith("processing.preprocess")
    # every file hashed, and the hashes are right
    for rel, info in manifest.files.items():
        assert sha256_file(path / rel) == info.sha256, rel
    assert set(entry.files) | {entry.golden.file} <= set(manifest.files)
    # the gate: the task's own metric on a held-out set, within the allowance
    gate = entry.gate
    assert gate.metric == "accuracy" and gate.n == 24 and gate.passed
    assert gate.drop <= gate.allowed_drop == 0.5
    assert gate.attempts[-1]["precision"] == precision
    if precision == "int8":
        assert entry.calibration["size"] == 16 and len(entry.calibration["sha256"]) == 64
    golden = load_golden(path / entry.golden.file)
    assert len(golden["input"]["bscan"]) == entry.golden.pairs == 4
    assert set(golden["reference"]) == {"grade_probs", "sublabel_probs"}
    # summary table and the next command
    assert TASK in stdout and "pass" in stdout
    next_line = [ln for ln in stdout.splitlines() if ln.startswith("next:")]
    assert next_line and ("edgeret build" if device == "jetson" else "edgeret verify") in next_line[0]


def test_artifacts_are_what_the_manifest_says(bundles):
    from edgeret_exporters.litert import read_tflite_metadata
    from edgeret_exporters.onnx_int8 import count_qdq_nodes
    from edgeret_exporters.openvino_ir import openvino_op_types, read_openvino_metadata

    x86 = bundles["x86-cpu"][0] / TASK / "model.onnx"
    assert count_qdq_nodes(x86)["QuantizeLinear"] > 0
    intel = bundles["intel-x86"][0] / TASK / "model.xml"
    assert openvino_op_types(intel).get("FakeQuantize", 0) > 0
    assert read_openvino_metadata(intel)["edgeret.task"] == TASK
    pi = bundles["raspberry-pi-5"][0] / TASK / "model.tflite"
    assert read_tflite_metadata(pi)["edgeret.device"] == "raspberry-pi-5"
    jetson = bundles["jetson"][0]
    entry = load_manifest(jetson).raw["tasks"][TASK]
    spec = json.loads((jetson / entry["tensorrt"]["build_spec"]).read_text())
    assert spec["precision"] == "fp16" and spec["onnx_sha256"] == sha256_file(jetson / entry["artifact"])
    assert "ONNX Runtime" in entry["gate"]["note"] and "fp16" in entry["gate"]["note"]


# ---------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["x86-cpu", "intel-x86", "raspberry-pi-5", "jetson"])
def test_verify_passes(bundles, device):
    code, stdout, stderr = cli("verify", str(bundles[device][0]))
    assert code == 0, stderr
    assert "verify passed" in stdout and "4/4 same class as fp32" in stdout
    backend = EXPECTED[device][3]  # the Jetson's ONNX falls back to onnxruntime here
    assert backend in stdout


def test_verify_runs_without_torch(bundles):
    probe = textwrap.dedent(f"""
        import sys
        from edgeret.cli import main
        code = main(["verify", {str(bundles["x86-cpu"][0])!r}])
        heavy = {{"torch", "onnx", "nncf", "litert_torch"}}
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
        print("HEAVY", heavy, file=sys.stderr)
        sys.exit(code)
    """)
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr


def test_tampered_artifact_is_caught_by_name(bundles, tmp_path):
    bundle = copy_bundle(bundles, "x86-cpu", tmp_path)
    model = bundle / TASK / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    code, _, err = cli("verify", str(bundle))
    line = error_line(err)
    assert code == 2 and "model.onnx" in line and "sha256" in line


def test_missing_and_unlisted_files_are_caught(bundles, tmp_path):
    bundle = copy_bundle(bundles, "raspberry-pi-5", tmp_path)
    (bundle / TASK / "notes.txt").write_text("added later")
    code, _, err = cli("verify", str(bundle))
    assert code == 2 and "notes.txt" in error_line(err) and "not listed" in error_line(err)
    (bundle / TASK / "notes.txt").unlink()
    (bundle / TASK / "golden.npz").unlink()
    code, _, err = cli("verify", str(bundle))
    assert code == 2 and "golden.npz" in error_line(err) and "missing" in error_line(err)


@pytest.mark.parametrize("damage, expected", [
    ("{not json", "not valid JSON"),
    ('{"schema": "edgeret-bundle", "schema_version": 99}', "schema_version 99"),
    ('{"schema": "something-else"}', "not an edgeret bundle manifest"),
    ("drop-task-key", f"tasks.{TASK}.golden: missing"),
    ("bad-tolerance", f"tasks.{TASK}.golden.tolerance.atol: expected a number, got 'loose'"),
    (None, "manifest missing"),
])
def test_bad_manifest_is_a_one_line_error(bundles, tmp_path, damage, expected):
    bundle = copy_bundle(bundles, "x86-cpu", tmp_path)
    manifest_path = bundle / MANIFEST
    if damage is None:
        manifest_path.unlink()
    elif damage in ("drop-task-key", "bad-tolerance"):
        data = json.loads(manifest_path.read_text())
        if damage == "drop-task-key":
            del data["tasks"][TASK]["golden"]
        else:
            data["tasks"][TASK]["golden"]["tolerance"] = {"atol": "loose"}
        manifest_path.write_text(json.dumps(data))
    else:
        manifest_path.write_text(damage)
    code, _, err = cli("verify", str(bundle))
    assert code == 2 and expected in error_line(err)


def test_golden_replay_catches_a_wrong_model_output(bundles, tmp_path):
    """A consistent re-hash (as an attacker or a bad copy tool would leave it) still fails the replay."""
    bundle = copy_bundle(bundles, "x86-cpu", tmp_path)
    golden_path = bundle / TASK / "golden.npz"
    golden = load_golden(golden_path)
    golden["output"]["grade_probs"] = golden["output"]["grade_probs"][:, ::-1].copy()
    save_golden(golden_path, golden["input"], golden["output"], golden["reference"])
    manifest = json.loads((bundle / MANIFEST).read_text())
    write_manifest(bundle, manifest)  # hashes now match the edited file
    code, _, err = cli("verify", str(bundle))
    line = error_line(err)
    assert code == 2 and "golden pair" in line and "grade_probs" in line and "tolerance" in line


def test_verify_with_a_backend_that_cannot_load_the_format(bundles):
    code, _, err = cli("verify", str(bundles["raspberry-pi-5"][0]), "--backend", "onnxruntime")
    assert code == 2 and "cannot load tflite" in error_line(err)


def test_verify_missing_bundle():
    code, _, err = cli("verify", "/nonexistent/bundle")
    assert code == 2 and "does not exist" in error_line(err)


def test_golden_inputs_are_stored_exactly_as_uint8(tmp_path):
    x = snap_to_uint8(np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32))
    path = save_golden(tmp_path / "g.npz", {"x": x}, {"y": x.sum((1, 2, 3))}, {})
    with np.load(path) as raw:
        assert raw["input/x"].dtype == np.uint8
    assert np.array_equal(load_golden(path)["input"]["x"], x)


def test_large_golden_outputs_are_stored_as_float16(tmp_path):
    image = np.random.default_rng(1).random((1, 3, 256, 256), dtype=np.float32)
    path = save_golden(tmp_path / "g.npz", {"x": image}, {"y": image}, {"y": image})
    with np.load(path) as raw:
        assert raw["output/y"].dtype == np.float16 and raw["input/x"].dtype == np.float32
    loaded = load_golden(path)
    assert loaded["output"]["y"].dtype == np.float32
    assert np.max(np.abs(loaded["output"]["y"] - image)) <= 4.9e-4


# ---------------------------------------------------------------------------
# build, bench
# ---------------------------------------------------------------------------


def test_build_without_tensorrt_is_a_clear_error(bundles):
    code, _, err = cli("build", str(bundles["jetson"][0]))
    line = error_line(err)
    assert code == 2 and "TensorRT" in line and "not installed" in line


def test_build_refuses_a_bundle_without_tensorrt(bundles):
    code, _, err = cli("build", str(bundles["x86-cpu"][0]))
    assert code == 2 and "no TensorRT build step" in error_line(err)


def test_bench_writes_json_and_markdown(bundles, tmp_path):
    out = tmp_path / "benchmarks"
    code, stdout, err = cli("bench", str(bundles["x86-cpu"][0]), "--runs", "5", "--warmup", "1",
                            "--out", str(out), "--quiet")
    assert code == 0, err
    report = json.loads((out / "bundle-bench-x86-cpu.json").read_text())
    row = report["rows"][0]
    assert row["task"] == TASK and row["backend"] == "onnxruntime" and row["precision"] == "int8"
    assert 0 < row["latency_ms_median"] <= row["latency_ms_p95"] and row["throughput_ips"] > 0
    assert row["peak_rss_mb"] > row["runtime_rss_mb"] > 10 and row["size_bytes"] > 100_000
    assert "| quality-oct |" in (out / "bundle-bench-x86-cpu.md").read_text()


def test_bench_compare_reports_int8_speedup_and_metric(bundles, tmp_path):
    out = tmp_path / "benchmarks"
    code, stdout, err = cli("bench", str(bundles["x86-cpu"][0]), "--compare", "--variants", "onnxruntime",
                            "--runs", "5", "--warmup", "1", "--rounds", "1", "--heldout", "8",
                            "--calib-size", "8", "--out", str(out), "--quiet")
    assert code == 0, err
    rows = json.loads((out / "bundle-compare-x86-cpu.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["onnxruntime fp32", "onnxruntime int8"]
    assert rows[1]["speedup_vs_fp32"] > 0 and rows[1]["gate"]["metric"] == "accuracy"
    assert "speed-up" in stdout


# ---------------------------------------------------------------------------
# export: calibration, gate failure and fallback
# ---------------------------------------------------------------------------


def test_export_with_user_calibration_images(bundles):
    calibration = load_manifest(bundles["x86-cpu"][0]).raw["tasks"][TASK]["calibration"]
    assert calibration["size"] == 16 and "user images from" in calibration["source"]
    assert "my-scans" in calibration["source"]
    generated = load_manifest(bundles["intel-x86"][0]).raw["tasks"][TASK]["calibration"]
    assert "calibration sampler" in generated["source"] and generated["sha256"] != calibration["sha256"]


def test_gate_failure_prints_figures_and_writes_nothing(tmp_path):
    out = tmp_path / "b"
    code, _, err = cli("export", "--device", "x86-cpu", *SMALL, "--max-drop", "-1", "-o", str(out), "--quiet")
    line = error_line(err)
    assert code == 2 and "accuracy gate failed" in line and "accuracy fp32" in line and "drop" in line
    assert not out.exists() and not list(tmp_path.glob(".b.partial-*"))


def test_gate_falls_back_along_the_profile(tmp_path, monkeypatch):
    from edgeret.build.export import gate

    real = gate.evaluate_gate

    def int8_fails(*args, **kwargs):
        result = real(*args, **kwargs)
        result.passed = result.precision != "int8"
        return result

    monkeypatch.setattr(gate, "evaluate_gate", int8_fails)
    out = tmp_path / "b"
    code, stdout, err = cli("export", "--device", "x86-cpu", *SMALL, "--precision", "int8", "-o", str(out))
    assert code == 0, err
    entry = load_manifest(out).raw["tasks"][TASK]
    assert entry["precision"] == "fp32" and entry["calibration"] is None
    assert [(a["precision"], a["passed"]) for a in entry["gate"]["attempts"]] == [("int8", False),
                                                                                 ("fp32", True)]
    assert "int8(fail) -> fp32" in stdout and "gate FAILED" in err
