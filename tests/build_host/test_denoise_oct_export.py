"""denoise-oct in the device bundles: fixed-size crops, fixed-size tiling, export + gate, bundle run.

One module-scoped export (x86-cpu, int8 forced, small held-out and calibration sets) keeps the
file near a minute on two busy cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from inprocess_cli import cli

from edgeret.build.data.oct import generate_oct
from edgeret.build.export.crops import fit_to_size, fixed_tile_size
from edgeret.build.export.task_models import task_for_profile
from edgeret.devices.profiles import DEFAULT_DEVICE
from edgeret.images.read_write import read_image, write_image
from edgeret.metrics import psnr
from edgeret.plugin.host import Host, device_catalog
from edgeret_plugins.backends.onnxruntime_backend import OnnxRuntimeRunner
from edgeret_plugins.tasks.denoise import WEIGHTS_DIR, task_plugins
from edgeret_plugins.tasks.denoise.processing import restore, runner_fn

PROFILES = ("x86-cpu", "intel-x86", "raspberry-pi-5", "jetson-orin-nano", "jetson-agx-orin")


@pytest.fixture(scope="module")
def oct_task():
    return task_plugins()[1]


@pytest.fixture(scope="module")
def oct_fn(oct_task):
    return runner_fn(OnnxRuntimeRunner(WEIGHTS_DIR / "denoise_oct.onnx"), oct_task)


def test_every_profile_carries_denoise_oct_as_fixed_tiles():
    host = Host()
    catalog = device_catalog(host)
    for name in PROFILES:
        profile = catalog.resolve(name)
        sized = task_for_profile(host.task("denoise-oct"), profile)
        size = fixed_tile_size(sized)
        assert size is not None and size[0] % 2 == 0 and size[1] % 2 == 0, name
        assert sized.outputs[0].shape[2:] == size
    # classifiers and sr are not cut into tiles: they resize, or change the size
    default = catalog.resolve(DEFAULT_DEVICE)
    assert fixed_tile_size(task_for_profile(host.task("quality-oct"), default)) is None
    assert fixed_tile_size(task_for_profile(host.task("sr"), default)) is None


def test_fit_to_size_crops_structure_and_pads_small_images():
    scan = generate_oct(123).image
    crop = fit_to_size(scan, (128, 160), seed=5)
    assert crop.shape == (128, 160)
    assert np.array_equal(crop, fit_to_size(scan, (128, 160), seed=5))  # seeded
    assert crop.std() >= np.median([scan[y:y + 128, :160].std() for y in range(0, scan.shape[0] - 128, 32)])
    small = np.arange(40 * 30, dtype=np.uint8).reshape(40, 30)
    padded = fit_to_size(small, (64, 64), seed=0)
    assert padded.shape == (64, 64) and np.array_equal(padded[:40, :30], small)


@pytest.mark.parametrize("size", [(451, 613), (301, 403)])
def test_fixed_size_tiles_equal_the_untiled_run(oct_task, oct_fn, size):
    rng = np.random.default_rng(sum(size))
    img = rng.integers(0, 256, size, dtype=np.uint8)
    shapes = set()

    def fixed_only(x):
        shapes.add(x.shape)
        return oct_fn(x)

    whole = restore(img, oct_fn, oct_task, tile=2048).astype(int)  # one pass of the any-size model
    tiled = restore(img, fixed_only, oct_task, fixed=(160, 192))
    assert shapes == {(1, 1, 160, 192)}  # every call has the exported model's fixed shape
    assert tiled.shape == img.shape
    assert np.abs(whole - tiled).max() <= 1  # exact but for float rounding


def test_fixed_size_smaller_image_is_padded_not_refused(oct_task, oct_fn):
    img = generate_oct(321, height=100, width=150).image
    shapes = set()

    def fixed_only(x):
        shapes.add(x.shape)
        return oct_fn(x)

    out = restore(img, fixed_only, oct_task, fixed=(160, 192))
    assert out.shape == img.shape and shapes == {(1, 1, 160, 192)}
    whole = restore(img, oct_fn, oct_task).astype(np.float32)
    # the padding only changes the rows and columns next to it (the model's reach)
    assert psnr(whole[:60, :110] / 255, out[:60, :110] / 255) > 50


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("oct-bundle") / "x86"
    code, _, stderr = cli("export", "--device", "x86-cpu", "--tasks", "denoise-oct", "--precision", "int8",
                          "--heldout", "4", "--calib-size", "4", "--golden", "2", "--threads", "1",
                          "-o", str(out), "--quiet")
    assert code == 0, stderr[-2000:]
    return out


def test_export_gates_denoise_oct_on_fixed_tiles(bundle):
    entry = json.loads((bundle / "edgeret.json").read_text())["tasks"]["denoise-oct"]
    assert entry["inputs"][0]["shape"] == ["batch", 1, 512, 512]
    gate = entry["gate"]
    assert gate["passed"] and gate["metric"] == "psnr" and gate["n"] == 4
    assert gate["drop"] <= gate["allowed_drop"] == 0.2
    assert "512x512 tiles" in gate["heldout"]
    if entry["precision"] == "int8":
        assert entry["calibration"]["size"] == 4 and "512x512 tiles" in entry["calibration"]["source"]
    code, _, stderr = cli("verify", str(bundle))
    assert code == 0, stderr


def test_bundle_model_denoises_any_size_through_the_cli(bundle, tmp_path, oct_task, oct_fn):
    scan = generate_oct(777, height=573, width=701).image  # odd width, taller than one tile
    src = write_image(tmp_path / "scan.png", scan)
    model = bundle / "denoise-oct" / "model.onnx"
    code, _, stderr = cli("denoise", "--oct", str(src), "--model", str(model), "-o", str(tmp_path / "o.png"))
    assert code == 0, stderr
    out = read_image(tmp_path / "o.png")
    assert out.shape == scan.shape
    reference = restore(scan, oct_fn, oct_task)  # the shipped fp32 any-size model
    assert psnr(reference / 255.0, out / 255.0) > 38  # int8 tiles agree with fp32 (measured ~50 dB)


def test_flip_averaging_is_the_mean_of_flipped_whole_image_runs(oct_task, oct_fn, tmp_path):
    rng = np.random.default_rng(11)
    img = rng.integers(0, 256, (302, 404), dtype=np.uint8)  # even: flips keep the 2x2 grid's padding
    flipped = [restore(np.ascontiguousarray(img[::ud, ::lr]), oct_fn, oct_task, tile=2048)
               .astype(np.float64)[::ud, ::lr] for ud, lr in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
    tiled = restore(img, oct_fn, oct_task, tile=160, flips=4).astype(np.float64)
    assert np.abs(tiled - np.mean(flipped, axis=0)).max() <= 1.0  # 8-bit rounding of each side
    assert np.abs(tiled - flipped[0]).max() > 1.0  # and it is not the one-pass result
    src = write_image(tmp_path / "scan.png", img)
    code, _, stderr = cli("denoise", "--oct", "--flips", "2", str(src), "-o", str(tmp_path / "o.png"))
    assert code == 0, stderr
    assert read_image(tmp_path / "o.png").shape == img.shape
