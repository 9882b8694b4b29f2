"""sr's realistic degradations: what each stage does, aligned training pairs, the evaluation kernels,
and (when the real photographs are present) the shipped ×2 model on a real photograph."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeret.build.data.fundus import generate_fundus
from edgeret.metrics import psnr
from edgeret_plugins.tasks.sr.degradations import (
    EVAL_DEGRADATIONS,
    MILD,
    STANDARD,
    Degradation,
    apply,
    gaussian_kernel,
    random_degradation,
)

REAL = (Path(__file__).resolve().parents[2].parent / "shared/data/real").resolve()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return generate_fundus(200_000_321, size=256, quality="good").image


def test_each_stage_does_what_it_says(photo):
    rng = np.random.default_rng(0)
    plain = Degradation(0.0, 0.0, 0.0, "area", "", 0.0, 0)
    lr = apply(photo, 2, plain, rng)
    area = cv2.resize(photo.astype(np.float32) / 255, (128, 128), interpolation=cv2.INTER_AREA)
    assert lr.shape == (128, 128, 3) and lr.dtype == np.uint8
    assert np.abs(lr / 255.0 - area).max() <= 0.5 / 255 + 1e-6  # area averaging, 8-bit rounding
    blurred = apply(photo, 2, Degradation(1.5, 1.5, 0.0, "area", "", 0.0, 0), rng)
    def edges(a):
        return np.abs(np.diff(a.astype(float), axis=1)).mean()

    assert edges(blurred) < edges(lr)
    noisy = apply(photo, 2, Degradation(0.0, 0.0, 0.0, "area", "gauss-colour", 4.0, 0), rng)
    assert 2.0 < (noisy.astype(float) - lr).std() < 6.0
    jpeg = apply(photo, 2, Degradation(0.0, 0.0, 0.0, "area", "", 0.0, 60), rng)
    assert 0 < np.abs(jpeg.astype(int) - lr).mean() < 4
    k = gaussian_kernel(1.8, 0.4, 30.0)
    assert abs(k.sum() - 1) < 1e-5 and k.shape[0] % 2 == 1


def test_random_degradations_span_the_ranges():
    rng = np.random.default_rng(1)
    for ranges in (STANDARD, MILD):
        draws = [random_degradation(rng, ranges) for _ in range(400)]
        sigmas = [d.sigma_x for d in draws if d.sigma_x > 0]
        assert ranges.sigma[0] <= min(sigmas) and max(sigmas) <= ranges.sigma[1]
        assert any(d.sigma_x == 0 for d in draws)  # plain anti-aliased down-scaling is covered
        assert abs(np.mean([d.jpeg > 0 for d in draws]) - ranges.jpeg_p) < 0.08
        assert abs(np.mean([d.noise != "" for d in draws]) - ranges.noise_p) < 0.08
        assert all(ranges.jpeg_quality[0] <= d.jpeg <= ranges.jpeg_quality[1] for d in draws if d.jpeg)


def test_realistic_pairs_are_aligned(photo):
    pytest.importorskip("torch")
    from edgeret_plugins.tasks.sr.recipe import LR_PATCH, realistic_pairs

    lr, hr = realistic_pairs([photo], 2, 24, seed=0, weights=[1.0])
    p = LR_PATCH[2]
    assert lr.shape == (24, 3, p, p) and hr.shape == (24, 3, 2 * p, 2 * p)
    for a, b in zip(lr, hr, strict=True):
        down = cv2.resize(np.moveaxis(b, 0, 2), (a.shape[2], a.shape[1]), interpolation=cv2.INTER_AREA)
        shifted = np.roll(down, 3, axis=1)
        here = np.abs(down.astype(float) - np.moveaxis(a, 0, 2)).mean()
        assert here < np.abs(shifted.astype(float) - np.moveaxis(a, 0, 2)).mean()  # aligned, not offset


def test_eval_kernels_blur_as_named(photo):
    aa, gb = (EVAL_DEGRADATIONS[k](photo, 2) for k in ("anti-aliased", "gaussian-blur"))
    assert aa.shape == gb.shape == (128, 128, 3)
    assert np.abs(np.diff(gb.astype(float), axis=1)).mean() < np.abs(np.diff(aa.astype(float), axis=1)).mean()


def _first_real_photo() -> Path:
    with open(REAL / "fundus-photos" / "labels.csv", newline="") as fh:
        return REAL / "fundus-photos" / next(csv.DictReader(fh))["file"]


NO_REAL = not (REAL / "fundus-photos").is_dir() or not (REAL / "fundus-dr").is_dir()
WHY = f"real fundus photographs not present at {REAL} (research-use data kept outside the repository)"


@pytest.mark.skipif(NO_REAL, reason=WHY)
def test_cv_folds_never_split_a_patient():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "tools" / "cv_sr_real.py"
    spec = importlib.util.spec_from_file_location("cv_sr_real", path)
    cv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cv)
    photos = cv.real_photos(REAL)
    fold = cv.folds_of([p for p, _ in photos], 3)
    by_file = {}
    for patient, path in photos:
        by_file.setdefault(path.name.split("_")[0] if patient.startswith("dr") else patient, set()).add(
            fold[patient])
    assert all(len(f) == 1 for f in by_file.values())  # both eyes / all visits in one fold
    assert sorted(set(fold.values())) == [0, 1, 2]
    assert max(sum(1 for _, p in photos if p.parent.name == "images" and p.name.startswith(pid + "_"))
               for pid in {p.name.split("_")[0] for _, p in photos if p.parent.name == "images"}) <= 2


@pytest.mark.skipif(NO_REAL, reason=WHY)
def test_shipped_x2_beats_bicubic_on_a_real_photograph_under_the_gaussian_kernel():
    """The measured limit stays visible: under the anti-aliasing filter the shipped (phantom-kernel)
    model is below bicubic on real photographs (benchmarks/sr-real-cv-*.md); the Gaussian-blur
    kernel, near its training kernel, it wins."""
    from edgeret.images.read_write import read_image
    from edgeret_plugins.backends.onnxruntime_backend import OnnxRuntimeRunner
    from edgeret_plugins.tasks.sr import WEIGHTS_DIR, task_plugin
    from edgeret_plugins.tasks.sr.processing import bicubic, runner_fn, upscale

    task = task_plugin()
    fn = runner_fn(OnnxRuntimeRunner(WEIGHTS_DIR / "sr_x2.onnx"), task)
    img = read_image(_first_real_photo())
    y, x = (img.shape[0] - 384) // 2, (img.shape[1] - 384) // 2
    hr = img[y:y + 384, x:x + 384]
    truth = hr[2:-2, 2:-2] / 255.0
    lr = EVAL_DEGRADATIONS["gaussian-blur"](hr, 2)
    ours, base = upscale(lr, fn, 2)[2:-2, 2:-2] / 255.0, bicubic(lr, 2)[2:-2, 2:-2] / 255.0
    assert psnr(truth, ours) > psnr(truth, base) + 0.3
