"""sr: registration, shipped ONNX = torch, bicubic start, quality, bad input, tiles, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli

from edgeret.build.data.fundus import generate_fundus
from edgeret.errors import InputError
from edgeret.images.read_write import read_image, write_image
from edgeret.images.tiling import from_planes
from edgeret.metrics import psnr
from edgeret.plugin.host import Host
from edgeret_plugins.backends.onnxruntime_backend import OnnxRuntimeRunner
from edgeret_plugins.tasks.sr import WEIGHTS_DIR, model_path, task_plugin
from edgeret_plugins.tasks.sr.processing import (
    MAX_WHOLE_PIXELS,
    bicubic,
    degrade,
    depth_to_space,
    planes_to_image,
    preprocess,
    runner_fn,
    upscale,
)

FRESH = 200_000_100
TOL = 1e-4  # stated tolerance: max |torch - ONNX Runtime| on [0, 1] images


@pytest.fixture(scope="module")
def task():
    return task_plugin()


@pytest.fixture(scope="module")
def fns(task):
    return {s: runner_fn(OnnxRuntimeRunner(model_path(s)), task) for s in (2, 4)}


def low_res(hr, scale):
    return np.clip(degrade(hr.astype(np.float32) / 255, scale) * 255 + 0.5, 0, 255).astype(np.uint8)


def test_registered_with_shipped_files():
    task = Host().task("sr")
    assert task.default_model == WEIGHTS_DIR / "sr_x2.onnx"
    for name in ("sr_x2.onnx", "sr_x4.onnx", "espcn_x2.onnx", "espcn_x4.onnx", "lapsrn-x2.pt",
                 "lapsrn-x2.json", "lapsrn-x4.pt", "espcn-x2.pt", "espcn-x4.pt"):
        assert (WEIGHTS_DIR / name).is_file(), name
        assert (WEIGHTS_DIR / name).stat().st_size < 2_000_000


def test_onnx_matches_torch():
    torch = pytest.importorskip("torch")
    from edgeret_plugins.tasks.sr.model import runtime
    from edgeret_plugins.tasks.sr.recipe import ONNX_NAMES, load_variant

    x = np.random.default_rng(0).random((1, 3, 37, 52), dtype=np.float32)
    for name, file in ONNX_NAMES.items():
        with torch.no_grad():
            ref = runtime(load_variant(name, WEIGHTS_DIR))(torch.from_numpy(x)).numpy()
        got = OnnxRuntimeRunner(WEIGHTS_DIR / file).run({"image": x})["planes"]
        assert got.shape == ref.shape and np.abs(got - ref).max() < TOL, name


def test_untrained_lapsrn_is_bicubic():
    torch = pytest.importorskip("torch")
    from edgeret_plugins.tasks.sr.model import build, to_image

    net = build("lapsrn-x2")
    torch.nn.init.zeros_(net.levels[0].residual.weight)
    x = np.random.default_rng(1).random((40, 48, 3), dtype=np.float32)
    with torch.no_grad():
        ours = to_image(net(torch.from_numpy(np.moveaxis(x, 2, 0))[None])[-1])[0].numpy()
    ref = np.moveaxis(bicubic(x, 2), 2, 0)
    assert np.abs(ours - ref)[:, 6:-6, 6:-6].max() < 1e-5


def test_planes_layout():
    planes = np.random.default_rng(2).random((1, 12, 5, 7), dtype=np.float32)
    ref = from_planes(depth_to_space(planes[0])).astype(np.int32)
    assert np.abs(planes_to_image(planes).astype(np.int32) - ref).max() <= 1  # ties round to even
    wide = from_planes(depth_to_space(planes[0]), np.uint16).astype(np.int32)
    assert np.abs(planes_to_image(planes, np.uint16).astype(np.int32) - wide).max() <= 1
    # plane 4c + 2dy + dx is pixel (2y + dy, 2x + dx) of colour c (ONNX DepthToSpace CRD)
    assert depth_to_space(planes[0])[2, 2 * 3 + 1, 2 * 4 + 0] == planes[0, 4 * 2 + 2 * 1 + 0, 3, 4]


@pytest.mark.parametrize("scale,gain", [(2, 1.0), (4, 1.0)])
def test_beats_bicubic_on_a_fresh_phantom(fns, scale, gain):
    hr = generate_fundus(FRESH, size=256, quality="good").image
    lr = low_res(hr, scale)
    ours = upscale(lr, fns[scale], scale)
    base = bicubic(lr, scale)
    assert ours.shape == hr.shape
    s = slice(scale, -scale)
    p_ours = psnr(hr[s, s] / 255, ours[s, s] / 255)
    p_base = psnr(hr[s, s] / 255, base[s, s] / 255)
    assert p_ours > p_base + gain, (p_ours, p_base)  # measured x2 +1.34 dB, x4 +1.46 dB


def test_bad_input(task, fns):
    lr = low_res(generate_fundus(FRESH + 1, size=128).image, 2)
    with pytest.raises(InputError, match="8- or 16-bit"):
        upscale(lr.astype(np.float64), fns[2], 2)
    with pytest.raises(InputError, match="got shape"):
        upscale(np.zeros((20, 20, 4), np.uint8), fns[2], 2)
    with pytest.raises(InputError, match="at least 8"):
        upscale(lr[:5], fns[2], 2)
    side = int(MAX_WHOLE_PIXELS ** 0.5) + 1
    with pytest.raises(InputError, match="tiles"):
        preprocess(np.zeros((side, side, 3), np.uint8), task)
    with pytest.raises(InputError, match="MP limit"):
        upscale(np.zeros((1600, 1600, 3), np.uint8), fns[4], 4)
    gray = upscale(lr[:33, :41, 1], fns[2], 2)
    assert gray.shape == (66, 82) and gray.dtype == np.uint8
    u16 = upscale(lr.astype(np.uint16) * 257, fns[2], 2)
    assert u16.dtype == np.uint16 and np.abs(u16 / 65535 - upscale(lr, fns[2], 2) / 255).max() < 2 / 255


@pytest.mark.parametrize("scale", [2, 4])
def test_tiled_equals_whole(fns, scale):
    lr = low_res(generate_fundus(FRESH + 2, size=384).image, 2)[:150, :170]
    whole = upscale(lr, fns[scale], scale, tile=512).astype(np.int32)
    tiled = upscale(lr, fns[scale], scale, tile=64).astype(np.int32)
    assert tiled.shape == whole.shape == (150 * scale, 170 * scale, 3)
    assert np.abs(tiled - whole).max() <= 1


def test_smoke_train(tmp_path, task, monkeypatch):
    pytest.importorskip("torch")
    from edgeret.plugin.registrations import TrainRequest
    from edgeret_plugins.tasks.sr import recipe

    data = tmp_path / "data"
    for i in range(2):
        write_image(data / f"{i}.png", generate_fundus(FRESH + 10 + i, size=128).image)
    monkeypatch.setattr(recipe, "DEFAULTS", {k: (1, 16, 16) for k in recipe.DEFAULTS})
    monkeypatch.setattr(recipe, "natural_images", lambda gray: [])
    out = tmp_path / "out"
    recipe.train(TrainRequest(data, out, threads=1, progress=False, variant="lapsrn-x2"), task)
    x = np.random.default_rng(0).random((1, 3, 20, 30), dtype=np.float32)
    assert OnnxRuntimeRunner(out / "sr_x2.onnx").run({"image": x})["planes"].shape == (1, 12, 20, 30)
    assert "Charbonnier" in (out / "lapsrn-x2.json").read_text()


def test_cli_upscale_and_run(tmp_path, capsys):
    from edgeret.cli import main

    lr = low_res(generate_fundus(FRESH + 3, size=128).image, 2)
    src = write_image(tmp_path / "lr.png", lr)
    proc = run_cli("upscale", str(src), "--scale", "4", "-o", str(tmp_path / "x4.png"))  # as a user runs it
    assert proc.returncode == 0, proc.stderr
    assert read_image(tmp_path / "x4.png").shape == (256, 256, 3)
    assert main(["upscale", str(src), "-o", str(tmp_path / "x2.png")]) == 0
    assert read_image(tmp_path / "x2.png").shape == (128, 128, 3)
    assert main(["upscale", str(src), "--scale", "3", "-o", str(tmp_path / "x3.png")]) == 2
    assert "--scale 2 or 4" in capsys.readouterr().err
    assert main(["run", "sr", str(src)]) == 0
    assert "out_height=128" in capsys.readouterr().out


def test_restore_file_for_run_cmd(tmp_path):
    """The function `edgeret run TASK IMAGE -o OUT --scale N` delegates to (run_cmd patch)."""
    import argparse

    from edgeret.cli.restore_cmd import restore_file
    from edgeret.errors import EdgeretError

    host = Host()
    lr = low_res(generate_fundus(FRESH + 4, size=64).image, 2)
    src = write_image(tmp_path / "lr.png", lr)
    args = argparse.Namespace(images=[src], output=tmp_path / "up.png", model=None, threads=1,
                              json=False, scale=4, tile=512)
    assert restore_file(args, host.task("sr"), host.backend("onnxruntime")) == 0
    assert read_image(tmp_path / "up.png").shape == (128, 128, 3)
    with pytest.raises(EdgeretError, match="does not write images"):
        restore_file(args, host.task("quality-oct"), host.backend("onnxruntime"))
    args.output = None
    with pytest.raises(EdgeretError, match="-o OUT"):
        restore_file(args, host.task("sr"), host.backend("onnxruntime"))
