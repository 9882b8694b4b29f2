"""dr-grade: quality-guided output, contrast preprocessing, committed model, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_cli_json

from edgeret.build.data.fundus import generate_fundus
from edgeret.images.read_write import write_image
from edgeret.plugin.host import Host
from edgeret_plugins.backends.onnxruntime_backend import OnnxRuntimeRunner
from edgeret_plugins.tasks.dr_grade import WEIGHTS_DIR, task_plugin
from edgeret_plugins.tasks.dr_grade.model import Probabilities, load_net
from edgeret_plugins.tasks.dr_grade.processing import RETAKE, postprocess

FRESH = 400_000_000  # phantom seeds never used by any training or test set


def test_poor_quality_says_retake_instead_of_a_grade():
    task = task_plugin()
    dr = np.array([[0.0, 0.0, 0.1, 0.1, 0.8]], np.float32)
    poor = postprocess({"dr_probs": dr, "quality_probs": np.array([[0.1, 0.2, 0.7]])}, task)
    assert poor["result"] == RETAKE and poor["dr_grade"] is None and poor["referable"] is None
    good = postprocess({"dr_probs": dr, "quality_probs": np.array([[0.7, 0.2, 0.1]])}, task)
    assert good["dr_grade"] == 4 and good["referable"] is True and good["quality"] == "good"


def test_preprocess_is_contrast_normalised_inside_the_fov_only():
    task = Host().task("dr-grade")
    x = task.preprocess(generate_fundus(FRESH, dr_grade=3, quality="good").image, task)["image"]
    assert x.shape == (1, 3, 320, 320) and x.dtype == np.float32
    corner = x[0, :, :8, :8]
    assert np.all(corner == 0)  # outside the field of view
    centre = x[0, :, 140:180, 140:180]
    assert abs(float(centre.mean()) - 0.5) < 0.15  # local mean removed -> around 0.5


@pytest.fixture(scope="module")
def graded():
    return [generate_fundus(FRESH + 10 + i, dr_grade=g, quality="good")
            for i, g in enumerate([0, 0, 2, 3, 3, 4, 4, 4])]


def test_onnx_matches_torch_and_sees_severe_disease(graded):
    task = task_plugin()
    model = Probabilities(load_net(task.default_weights)).eval()
    runner = OnnxRuntimeRunner(WEIGHTS_DIR / "dr_grade.onnx")
    referable_hits = 0
    for sample in graded:
        x = task.preprocess(sample.image, task)["image"]
        with torch.no_grad():
            dr, quality, *_ = (t.numpy() for t in model(torch.from_numpy(x)))
        out = runner.run({"image": x})
        np.testing.assert_allclose(out["dr_probs"], dr, atol=1e-4)
        np.testing.assert_allclose(out["quality_probs"], quality, atol=1e-4)
        referable_hits += (dr.argmax() >= 2) == (sample.dr_grade >= 2)
    assert referable_hits >= 6, f"{referable_hits}/8"


def test_cli_run_reports_grade_or_retake(tmp_path):
    good = tmp_path / "good.png"
    write_image(good, generate_fundus(FRESH + 50, dr_grade=4, quality="good").image)
    blank = tmp_path / "blank.png"
    write_image(blank, generate_fundus(FRESH + 51, kind="nonretinal").image)
    results = {r["image"]: r for r in run_cli_json("run", "dr-grade", str(good), str(blank))["results"]}
    assert results[str(blank)]["result"] == RETAKE
    assert results[str(good)]["dr_grade"] in range(5)
