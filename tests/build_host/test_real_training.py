"""Training on real data: labels read honestly, patients never split, capture failures that make
photographs ungradable, and `edgeret train --data A --data B --folds K` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from inprocess_cli import cli

from edgeret.build.data.datasets import load_dataset
from edgeret.build.training.degrade import DEGRADATIONS, degrade
from edgeret.build.training.folds import group_folds, wilson

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"


def test_folds_keep_every_patient_on_one_side_and_cover_everyone():
    rng = np.random.default_rng(1)
    groups = [f"p{g}" for g in rng.integers(0, 40, 300)]
    folds = group_folds(groups, 5, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(300))
    fold_of = {}
    for f, index in enumerate(folds):
        for i in index:
            assert fold_of.setdefault(groups[i], f) == f  # a patient never in two folds
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= max(np.unique(groups, return_counts=True)[1])
    with pytest.raises(ValueError, match="cannot make 5 folds"):
        group_folds(["a", "a", "b"], 5)


def test_a_proportion_of_all_hits_still_has_an_interval_below_one():
    lo, hi = wilson(20, 20)
    assert hi == 1.0 and 0.8 < lo < 0.9  # 20/20 does not prove 100 %
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35


def test_the_real_sets_file_layout_reads_empty_cells_as_missing_labels(tmp_path):
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "labels.csv").write_text("file,dr,dme,patient\na.png,NPDR,1,7\nb.png,,0,7\n")
    samples = {s.path.name: s.labels for s in load_dataset(tmp_path).samples}
    assert samples["a.png"] == {"dr": "NPDR", "dme": 1, "patient": 7}
    assert samples["b.png"] == {"dme": 0, "patient": 7}  # not graded for DR: no label, not an error


def _photo() -> np.ndarray:
    """A real photograph's FOV crop when the real data is here, else a phantom's (float, 320 px)."""
    from edgeret.images.preprocess import preprocess_fundus

    photos = sorted((REAL / "fundus-photos").glob("*.jpg"))
    if photos:
        image = cv2.imread(str(photos[0]))[:, :, ::-1]
    else:
        from edgeret.build.data.fundus import generate_fundus

        image = generate_fundus(5, size=512, quality="good").image
    return preprocess_fundus(np.ascontiguousarray(image), (320, 320))[0]


def test_every_capture_failure_degrades_the_photograph_and_keeps_the_surround_black():
    img = _photo()
    outside = img.max(axis=2) == 0
    rng = np.random.default_rng(0)

    def detail(x):
        return float(cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var())

    for name, fn in DEGRADATIONS.items():
        out = fn(img, rng).astype(np.float32)
        assert out.shape == img.shape and np.all(out[outside] == 0), name
        inside = ~outside
        changed = np.abs(out - img)[inside].mean()
        assert changed > 0.01, f"{name} barely changes the photograph ({changed:.3f})"
    assert detail(DEGRADATIONS["defocus"](img, rng)) < 0.3 * detail(img)
    assert DEGRADATIONS["underexposed"](img, rng)[~outside].mean() < 0.25 * img[~outside].mean()
    out, names = degrade(img, np.random.default_rng(4))
    assert set(names.split("+")) <= set(DEGRADATIONS)


def _tiny_sets(root: Path) -> tuple[Path, Path]:
    """A 'real' layout (file column, DRIMDB-style labels, patients) and a phantom set, both small."""
    from edgeret.build.data.fundus import generate_fundus

    real = root / "real"
    (real / "images").mkdir(parents=True)
    rows = ["file,quality,gradable,patient"]
    for i in range(12):
        quality = "good" if i % 3 else "bad"
        sample = generate_fundus(200 + i, size=256, quality="good" if quality == "good" else "poor")
        cv2.imwrite(str(real / "images" / f"p{i}.png"), np.ascontiguousarray(sample.image[:, :, ::-1]))
        rows.append(f"images/p{i}.png,{quality},{int(quality == 'good')},{i // 2}")
    (real / "labels.csv").write_text("\n".join(rows) + "\n")
    phantoms = root / "phantoms"
    code, _, err = cli("data", "synth", "--modality", "fundus", "--n", "8", "--seed", "3", "--size", "256",
                       "--out", str(phantoms), "--workers", "1")
    assert code == 0, err
    return real, phantoms


def test_train_mixes_real_and_phantom_folders_with_patient_level_folds(tmp_path):
    real, phantoms = _tiny_sets(tmp_path)
    out = tmp_path / "model"
    code, stdout, err = cli("train", "quality-fundus", "--data", str(real), "--data", str(phantoms),
                            "--folds", "2", "--epochs", "1", "--threads", "1", "--quiet", "--out", str(out))
    assert code == 0, err
    report = json.loads((out / "quality-fundus-real-cv.json").read_text())
    assert len(report["per_fold"]) == 2 and report["chosen_epochs"] == 1
    assert report["pooled_nested"]["good_accepted"]["n"] == 8  # every real good photo judged once
    assert report["pooled_nested"]["bad_rejected"]["n"] == 4
    assert "patient-level 2-fold" in (out / "quality-fundus-real-cv.md").read_text()
    meta = json.loads((out / "real-mix.json").read_text())
    assert meta["phantoms"] == 8 and meta["poor_threshold"] == report["chosen_threshold"]
    assert (out / "quality_fundus.onnx").stat().st_size > 100_000
