"""Device profiles: built-ins, aliases, user folders, and schema errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_cli, run_cli_json

from edgeret.devices.profiles import DeviceCatalog, load_profile_file
from edgeret.errors import ProfileError

REQUIRED_DEVICES = {"jetson-orin-nano", "jetson-agx-orin", "intel-x86", "raspberry-pi-5", "x86-cpu"}


def valid_profile(**overrides):
    data = yaml.safe_load((ROOT / "devices" / "x86-cpu.yaml").read_text())
    data.update(name="my-board", aliases=["board"])
    data.update(overrides)
    return data


def write(tmp_path: Path, data, name="my-board.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_builtin_profiles_validate_and_cover_the_brief():
    catalog = DeviceCatalog.load([ROOT / "devices"])
    assert {p.name for p in catalog} >= REQUIRED_DEVICES
    jetson = catalog.resolve("jetson")
    assert jetson.name == "jetson-orin-nano"
    assert jetson.accelerator == "cuda-gpu" and {"fp16", "int8"} <= set(jetson.precisions)
    assert jetson.backends[0] == "tensorrt" and "tensorrt" in jetson.runtime_versions
    assert catalog.resolve("raspberry-pi-5").cpu_arch == "arm64"
    assert catalog.resolve("intel-x86").backends[0] == "openvino"
    assert catalog.resolve("x86-cpu").backends == ("onnxruntime",)


def test_devices_cli_json_and_show_alias():
    listed = run_cli_json("devices")
    assert {d["name"] for d in listed["devices"]} >= REQUIRED_DEVICES
    shown = run_cli_json("devices", "show", "jetson")
    assert shown["profile"]["name"] == "jetson-orin-nano"
    steps = shown["backend_resolution"]["steps"]
    # TensorRT and CUDA cannot run here: each skipped with a reason, then ONNX Runtime
    assert [s["backend"] for s in steps] == ["tensorrt", "cuda", "onnxruntime"]
    assert all(s["reason"] for s in steps[:2]) and not any(s["available"] for s in steps[:2])
    assert shown["backend_resolution"]["chosen"] == "onnxruntime"


def test_unknown_device_lists_known_ones():
    proc = run_cli("devices", "show", "toaster")
    assert proc.returncode == 2
    assert "unknown device 'toaster'" in proc.stderr and "jetson-orin-nano" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (lambda d: d.pop("cpu_arch"), "cpu_arch", "missing"),
        (lambda d: d.update(memory_budget_mb="lots"), "memory_budget_mb", "positive integer"),
        (lambda d: d.update(backends=["onnxruntime", "warp-drive"]), "backends", "warp-drive"),
        (lambda d: d.update(precisions=["int4"]), "precisions", "int4"),
        (lambda d: d.update(input_sizes={"sr": [512]}), "input_sizes", "[height, width]"),
        (lambda d: d.update(colour="red"), "colour", "unknown field"),
        (lambda d: d.update(aliases="jetson"), "aliases", "must be a list"),
        (lambda d: d.update(runtime_versions={"tensorflow": "2"}), "runtime_versions", "tensorflow"),
    ],
)
def test_invalid_profile_names_file_field_and_reason(tmp_path, change, field, reason):
    data = valid_profile()
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(ProfileError) as err:
        load_profile_file(path)
    assert err.value.source == str(path) and err.value.field == field
    assert reason in err.value.reason
    assert str(path) in str(err.value)


def test_bad_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "name: x\nbackends: [onnxruntime\n")
    with pytest.raises(ProfileError, match=r"invalid YAML at line \d"):
        load_profile_file(path)


def test_user_profile_dir_via_option_and_env(tmp_path):
    write(tmp_path, valid_profile())
    by_option = run_cli_json("devices", "show", "board", "--devices-dir", str(tmp_path))
    assert by_option["profile"]["name"] == "my-board"
    by_env = run_cli_json("devices", env={"EDGERET_DEVICES_PATH": str(tmp_path)})
    assert "my-board" in {d["name"] for d in by_env["devices"]}


def test_user_profile_clashing_alias_is_rejected(tmp_path):
    write(tmp_path, valid_profile(aliases=["jetson"]))
    proc = run_cli("devices", "--devices-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "my-board.yaml" in proc.stderr and "'jetson' is already defined" in proc.stderr


def test_malformed_profile_through_cli_is_one_line(tmp_path):
    data = valid_profile()
    data["backends"] = ["nope"]
    write(tmp_path, data)
    proc = run_cli("devices", "--devices-dir", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "field 'backends'" in proc.stderr
