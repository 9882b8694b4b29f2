"""denoise / denoise-oct: registration, shipped ONNX = torch, quality, bad input, tiles, CLI."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edgeret.build.data.fundus import generate_fundus
from edgeret.build.data.oct import generate_oct
from edgeret.errors import InputError
from edgeret.images.read_write import read_image, write_image
from edgeret.metrics import psnr
from edgeret.plugin.host import Host
from edgeret_plugins.backends.onnxruntime_backend import OnnxRuntimeRunner
from edgeret_plugins.tasks.denoise import WEIGHTS_DIR, task_plugins
from edgeret_plugins.tasks.denoise.processing import (
    MAX_WHOLE_PIXELS,
    add_gaussian_noise,
    add_speckle,
    preprocess,
    restore,
    runner_fn,
)

FRESH = 200_000_000  # never in a training (3e6+) or benchmark (7e6+) seed range
TOL = 1e-4  # stated tolerance: max |torch - ONNX Runtime| on [0, 1] images


@pytest.fixture(scope="module")
def tasks():
    return task_plugins()


@pytest.fixture(scope="module")
def color_fn(tasks):
    return runner_fn(OnnxRuntimeRunner(WEIGHTS_DIR / "denoise.onnx"), tasks[0])


@pytest.fixture(scope="module")
def oct_fn(tasks):
    return runner_fn(OnnxRuntimeRunner(WEIGHTS_DIR / "denoise_oct.onnx"), tasks[1])


def noisy_phantom(seed=FRESH, size=256, sigma=25.0):
    clean = generate_fundus(seed, size=size, quality="good").image
    noisy = add_gaussian_noise(clean.astype(np.float32) / 255, sigma, np.random.default_rng(seed))
    return clean, np.round(noisy * 255).astype(np.uint8)


def test_registered_with_shipped_files(tasks):
    host = Host()
    assert host.task("denoise").default_model == WEIGHTS_DIR / "denoise.onnx"
    assert host.task("denoise-oct").inputs[0].shape == ("batch", 1, "height", "width")
    for name in ("denoise.onnx", "autoencoder.onnx", "denoise_oct.onnx", "dncnn.pt", "dncnn.json",
                 "autoencoder.pt", "dncnn-oct.pt"):
        assert (WEIGHTS_DIR / name).is_file(), name
        assert (WEIGHTS_DIR / name).stat().st_size < 2_000_000


def test_onnx_matches_torch(tasks):
    torch = pytest.importorskip("torch")
    from edgeret_plugins.tasks.denoise.recipe import RuntimeDenoiser, load_variant

    rng = np.random.default_rng(0)
    for name, file, channels in (("dncnn", "denoise.onnx", 3), ("autoencoder", "autoencoder.onnx", 3),
                                 ("dncnn-oct", "denoise_oct.onnx", 1)):
        x = rng.random((1, channels, 46, 70), dtype=np.float32)
        with torch.no_grad():
            ref = [t.numpy() for t in RuntimeDenoiser(load_variant(name, WEIGHTS_DIR))(torch.from_numpy(x))]
        got = OnnxRuntimeRunner(WEIGHTS_DIR / file).run({"noisy": x})
        assert np.abs(got["denoised"] - ref[0]).max() < TOL, name
        assert np.abs(got["noise"] - ref[1]).max() < TOL, name


def test_denoises_a_fresh_phantom(tasks, color_fn):
    clean, noisy = noisy_phantom()
    out = restore(noisy, color_fn, tasks[0])
    assert out.shape == clean.shape and out.dtype == np.uint8
    before, after = psnr(clean / 255, noisy / 255), psnr(clean / 255, out / 255)
    assert after > before + 8.0, (before, after)  # measured +10.2 dB (20.8 -> 31.1)


def test_oct_speckle_is_reduced(tasks, oct_fn):
    clean = generate_oct(FRESH, quality="good").image[200:456, 300:556]
    noisy = np.round(add_speckle(clean / 255.0, 4.0, np.random.default_rng(1)) * 255).astype(np.uint8)
    out = restore(noisy, oct_fn, tasks[1])
    assert out.shape == clean.shape
    assert psnr(clean / 255, out / 255) > psnr(clean / 255, noisy / 255) + 3.0


def test_bad_input(tasks, color_fn, oct_fn):
    color, oct_task = tasks
    _, noisy = noisy_phantom(size=64)
    with pytest.raises(InputError, match="8- or 16-bit"):
        restore(noisy.astype(np.float32), color_fn, color)
    with pytest.raises(InputError, match="got shape"):
        restore(noisy[..., :2], color_fn, color)
    with pytest.raises(InputError, match="at least 16"):
        restore(noisy[:10, :40], color_fn, color)
    with pytest.raises(InputError, match="colour"):
        restore(noisy, oct_fn, oct_task)
    with pytest.raises(InputError, match="tiles"):
        side = int(MAX_WHOLE_PIXELS ** 0.5) + 1
        preprocess(np.zeros((side, side, 3), np.uint8), color)
    with pytest.raises(InputError, match="MP limit"):
        restore(np.zeros((6400, 6400), np.uint8), color_fn, color)
    # documented conversions: gray -> gray, odd sizes kept, 16-bit -> 16-bit on the same scale
    gray = restore(noisy[:63, :61, 1], color_fn, color)
    assert gray.shape == (63, 61) and gray.dtype == np.uint8
    u16 = restore(noisy.astype(np.uint16) * 257, color_fn, color)
    assert u16.dtype == np.uint16
    assert np.abs(u16 / 65535.0 - restore(noisy, color_fn, color) / 255.0).max() < 3 / 255
    same = restore(np.repeat(noisy[..., 1:2], 3, axis=2), oct_fn, oct_task)  # equal channels -> gray
    assert same.shape == (64, 64)


def test_tiled_equals_whole_and_no_seams(tasks, color_fn):
    _, noisy = noisy_phantom(FRESH + 1, size=384)
    whole = restore(noisy, color_fn, tasks[0], tile=1024).astype(np.float32)
    tiled = restore(noisy, color_fn, tasks[0], tile=160).astype(np.float32)
    # the halo covers the receptive field: identical up to float rounding (+-1 level)
    assert np.abs(tiled - whole).max() <= 1.0
    # no seam: gradient energy across tile boundaries is like anywhere else
    from edgeret.images.tiling import tile_starts
    from edgeret_plugins.tasks.denoise.processing import BLEND, HALO

    starts = tile_starts(384, 160, 2 * HALO + BLEND)
    edges = sorted({s + 160 - HALO for s in starts[:-1]} | {s + HALO for s in starts[1:]})
    g = np.abs(np.diff(tiled, axis=1)).mean(axis=(0, 2))
    assert max(g[e - 1] for e in edges) < 2.0 * np.median(g)


def test_green_weighted_loss():
    torch = pytest.importorskip("torch")
    from edgeret_plugins.tasks.denoise.recipe import weighted_mse

    target = torch.zeros(1, 3, 4, 4)
    errors = [weighted_mse(torch.zeros(1, 3, 4, 4).index_fill(1, torch.tensor([c]), 1.0), target)
              for c in range(3)]
    assert torch.allclose(torch.stack(errors) / errors[0], torch.tensor([1.0, 3.0, 2.0]))


def test_smoke_train(tmp_path, tasks, monkeypatch):
    pytest.importorskip("torch")
    from edgeret.plugin.registrations import TrainRequest
    from edgeret_plugins.tasks.denoise import recipe

    data = tmp_path / "data"
    for i in range(2):
        write_image(data / f"{i}.png", generate_fundus(FRESH + 10 + i, size=128).image)
    monkeypatch.setattr(recipe, "DEFAULTS", {k: (1, 16, 16) for k in recipe.DEFAULTS})
    monkeypatch.setattr(recipe, "natural_images", lambda gray: [])
    out = recipe.train(TrainRequest(data, tmp_path / "out", threads=1, progress=False, variant="dncnn"),
                       tasks[0], {"dncnn": "denoise.onnx"})
    assert (out / "dncnn.pt").is_file() and (out / "denoise.onnx").is_file()
    x = np.random.default_rng(0).random((1, 3, 20, 30), dtype=np.float32)
    assert OnnxRuntimeRunner(out / "denoise.onnx").run({"noisy": x})["denoised"].shape == x.shape


def test_cli_denoise_and_run(tmp_path, capsys):
    from edgeret.cli import main

    _, noisy = noisy_phantom(FRESH + 2, size=96)
    src = write_image(tmp_path / "noisy.png", noisy)
    assert main(["denoise", str(src), "-o", str(tmp_path / "clean.png")]) == 0
    assert read_image(tmp_path / "clean.png").shape == noisy.shape
    src16 = write_image(tmp_path / "n16.png", noisy.astype(np.uint16) * 257)
    assert main(["denoise", str(src16), "-o", str(tmp_path / "c16.png")]) == 0
    assert read_image(tmp_path / "c16.png").dtype == np.uint16
    capsys.readouterr()
    assert main(["denoise", "--oct", str(src), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "colour" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["run", "denoise", str(src)]) == 0
    assert "removed_noise_sigma" in capsys.readouterr().out


def test_runtime_path_is_torch_free(tmp_path):
    import subprocess

    _, noisy = noisy_phantom(FRESH + 3, size=64)
    src = write_image(tmp_path / "n.png", noisy)
    code = ("import sys\nfrom edgeret.cli import main\n"
            f"rc = main(['denoise', {str(src)!r}, '-o', {str(tmp_path / 'o.png')!r}])\n"
            "assert rc == 0 and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
