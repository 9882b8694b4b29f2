"""denoise-oct on real OCT pairs: the layout reader, the shipped model on a real scan, a tiny training run."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from edgeret.errors import InputError
from edgeret.images.read_write import write_image
from edgeret.metrics import psnr
from edgeret_plugins.backends.onnxruntime_backend import OnnxRuntimeRunner
from edgeret_plugins.tasks.denoise import WEIGHTS_DIR, task_plugins
from edgeret_plugins.tasks.denoise.processing import restore, runner_fn
from edgeret_plugins.tasks.denoise.real_pairs import is_real_pairs_layout, read_real_pairs, sample_pairs

REAL = (Path(__file__).resolve().parents[2].parent / "shared/data/real/oct-denoise").resolve()


def fake_layout(root: Path, subjects=(("1", 2, True), ("2", 3, True), ("3", 3, False)), size=(72, 96),
                labels: bool = True) -> Path:
    """subjects: (name, noisy scans incl. neighbours, has clean). A smooth image plus noise per scan."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    rows = []
    for name, n_noisy, has_clean in subjects:
        base = 90 + 60 * np.sin(yy / 7.0) * np.cos(xx / 11.0)
        files = [(f"noisy_{name}_test.png", "noisy")]
        files += [(f"neighbour_{name}_{k}.png", "neighbour") for k in range(1, n_noisy)]
        for file, role in files:
            img = np.clip(base + rng.normal(0, 25, size), 0, 255).astype(np.uint8)
            write_image(root / f"subject{name}" / file, img)
            rows.append((f"subject{name}/{file}", name, role))
        if has_clean:
            write_image(root / f"subject{name}" / f"clean_{name}_average.png", base.astype(np.uint8))
            rows.append((f"subject{name}/clean_{name}_average.png", name, "clean"))
    if labels:
        with (root / "labels.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "subject", "role", "source"])
            writer.writerows([(*r, "x") for r in rows])
    return root


def test_reader_parses_labels_and_folder_layouts(tmp_path):
    for labels in (True, False):
        root = fake_layout(tmp_path / str(labels), labels=labels)
        assert is_real_pairs_layout(root)
        subjects = read_real_pairs(root)
        names = [s.name for s in subjects]
        assert names == (["1", "2", "3"] if labels else ["subject1", "subject2", "subject3"])
        assert [len(s.noisy) for s in subjects] == [2, 3, 3]
        assert [s.n_primary for s in subjects] == [1, 1, 1]
        assert [s.clean is not None for s in subjects] == [True, True, False]
        assert subjects[0].files["noisy"] == [("subject1/" if labels else "subject1/") + "noisy_1_test.png"]
        assert all(a.shape == (72, 96) and a.dtype == np.uint8 for s in subjects for a in s.noisy)
    only = read_real_pairs(tmp_path / "True", subjects=["2"])
    assert [s.name for s in only] == ["2"]
    with pytest.raises(InputError, match="not found"):
        read_real_pairs(tmp_path / "True", subjects=["9"])


def test_reader_rejects_what_it_cannot_train_on(tmp_path):
    assert not is_real_pairs_layout(tmp_path / "missing")
    plain = tmp_path / "plain"
    write_image(plain / "a.png", np.zeros((32, 32), np.uint8))  # a folder of clean images: not this layout
    assert not is_real_pairs_layout(plain)
    lonely = fake_layout(tmp_path / "lonely", subjects=(("1", 1, False),))
    with pytest.raises(InputError, match="nothing to train against"):
        read_real_pairs(lonely)


def test_sample_pairs_are_aligned_and_mixed(tmp_path):
    subjects = read_real_pairs(fake_layout(tmp_path))
    inputs, targets, clean = sample_pairs(subjects, 200, 32, seed=1, supervised=0.75)
    assert inputs.shape == targets.shape == (200, 1, 32, 32) and inputs.dtype == np.uint8
    assert 0.3 < clean.mean() < 0.8  # subject 3 has no clean average: Noise2Noise only
    assert not np.array_equal(inputs, targets)  # never a scan paired with itself
    # aligned: the smooth base shows through, so input and target crops correlate strongly
    corr = np.corrcoef(inputs.reshape(200, -1).mean(1), targets.reshape(200, -1).mean(1))[0, 1]
    assert corr > 0.9


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real OCT pairs not present at {REAL} (research-use data "
                                               "kept outside the repository)")
def test_shipped_model_improves_a_real_scan():
    task = task_plugins()[1]
    subject = read_real_pairs(REAL, subjects=["1"])[0]
    fn = runner_fn(OnnxRuntimeRunner(WEIGHTS_DIR / "denoise_oct.onnx"), task)
    out = restore(subject.primary, fn, task)
    clean = subject.clean / 255.0
    before, after = psnr(clean, subject.primary / 255.0), psnr(clean, out / 255.0)
    # subject 1 was in the shipped model's training set; held-out figures: benchmarks/denoise-oct-real.md
    assert after > before + 8.0, (before, after)


def test_tiny_training_run_on_the_layout(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from edgeret.cli import main
    from edgeret_plugins.tasks.denoise import recipe

    data = fake_layout(tmp_path / "data")
    monkeypatch.setitem(recipe.REAL_OCT, "patches", 32)
    monkeypatch.setitem(recipe.REAL_OCT, "patch", 32)
    out = tmp_path / "out"
    assert main(["train", "denoise-oct", "--data", str(data), "--out", str(out), "--epochs", "1",
                 "--threads", "1", "--quiet"]) == 0
    meta = (out / "dncnn-oct.json").read_text()
    assert '"subjects"' in meta and "Noise2Noise" in meta
    x = np.random.default_rng(0).random((1, 1, 45, 71), dtype=np.float32)  # odd sizes
    assert OnnxRuntimeRunner(out / "denoise_oct.onnx").run({"noisy": x})["denoised"].shape == x.shape


def test_any_size_through_the_cli_and_exact_tiles(tmp_path):
    from edgeret.cli import main
    from edgeret.images.read_write import read_image

    task = task_plugins()[1]
    rng = np.random.default_rng(3)
    for h, w in ((450, 900), (573, 1408), (640, 1024)):
        src = write_image(tmp_path / f"{w}x{h}.png", rng.integers(0, 256, (h, w), dtype=np.uint8))
        assert main(["run", "denoise-oct", str(src), "-o", str(tmp_path / f"out{w}.png")]) == 0
        assert read_image(tmp_path / f"out{w}.png").shape[:2] == (h, w)
    # tiles are cut on the model's 2x2 grid with a halo over its receptive field: exact, odd sizes too
    fn = runner_fn(OnnxRuntimeRunner(WEIGHTS_DIR / "denoise_oct.onnx"), task)
    img = rng.integers(0, 256, (301, 403), dtype=np.uint8)
    whole = restore(img, fn, task, tile=1024).astype(int)
    assert np.abs(whole - restore(img, fn, task, tile=160)).max() <= 1  # float rounding only (measured 0)
