"""Tiny fake datasets of every supported layout, written to disk and read back."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeret.build.data.datasets import Dataset, Sample, detect_layout, load_dataset
from edgeret.errors import InputError


def img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((4, 4, 3), 128, np.uint8))
    return path


def csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.lstrip("\n"))
    return path


def check_error(path: Path, *fragments: str):
    class _Ctx:
        def __enter__(self):
            self.raises = pytest.raises(InputError)
            self.info = self.raises.__enter__()

        def __exit__(self, *exc):
            handled = self.raises.__exit__(*exc)
            msg = str(self.info.value)
            assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
            for f in fragments:
                assert f in msg, (f, msg)
            return handled

    return _Ctx()


# --- EyePACS ------------------------------------------------------------------------------

def eyepacs(root: Path, sub: str = "train") -> Path:
    csv(root / "trainLabels.csv", "image,level\n10_left,0\n10_right,4\n13_left,2\n")
    img(root / sub / "10_left.jpeg")
    img(root / sub / "10_right.jpg")
    img(root / sub / "13_left.png")
    return root


def test_eyepacs(tmp_path):
    root = eyepacs(tmp_path)
    csv(root / "sampleSubmission.csv", "image,level\n1_left,0\n")  # must not confuse detection
    assert detect_layout(root) == "eyepacs_dr"
    ds = load_dataset(root)
    assert isinstance(ds, Dataset) and ds.layout == "eyepacs_dr"
    assert ds.label_names == ["dr_grade"]
    assert ds.samples[0] == Sample(root / "train" / "10_left.jpeg", {"dr_grade": 0})
    assert [s.labels["dr_grade"] for s in ds.samples] == [0, 4, 2]
    assert ds.samples[2].path.name == "13_left.png"


def test_eyepacs_images_next_to_csv(tmp_path):
    ds = load_dataset(eyepacs(tmp_path, sub="."), layout="eyepacs_dr")
    assert len(ds) == 3 and ds.samples[0].path == tmp_path / "10_left.jpeg"


def test_eyepacs_bad_level(tmp_path):
    root = eyepacs(tmp_path)
    csv(root / "trainLabels.csv", "image,level\n10_left,0\n10_right,7\n")
    with check_error(root / "trainLabels.csv", "line 3", "column 'level'", "'7'", "0-4"):
        load_dataset(root)
    csv(root / "trainLabels.csv", "image,level\n10_left,two\n")
    with check_error(root / "trainLabels.csv", "line 2", "'two'"):
        load_dataset(root)


def test_eyepacs_missing_images(tmp_path):
    root = eyepacs(tmp_path)
    csv(root / "trainLabels.csv", "image,level\n10_left,0\n99_left,1\n98_right,1\n")
    with check_error(root / "trainLabels.csv", "2 of 3 listed images are missing",
                     "first '99_left' (line 3"):
        load_dataset(root)


def test_eyepacs_duplicate_and_ambiguous(tmp_path):
    root = eyepacs(tmp_path)
    csv(root / "trainLabels.csv", "image,level\n10_left,0\n13_left,1\n10_left,2\n")
    with check_error(root / "trainLabels.csv", "duplicate image id '10_left' on lines 2 and 4"):
        load_dataset(root)
    csv(root / "trainLabels.csv", "image,level\n10_left,0\n")
    img(root / "train" / "10_left.png")
    with check_error(root / "trainLabels.csv", "ambiguous", "10_left.jpeg and 10_left.png"):
        load_dataset(root)


def test_missing_csv_and_column_and_structure(tmp_path):
    with check_error(tmp_path, "no trainLabels.csv found"):
        load_dataset(tmp_path, layout="eyepacs_dr")
    with check_error(tmp_path / "nowhere", "dataset folder not found"):
        load_dataset(tmp_path / "nowhere")
    with check_error(tmp_path, "unknown dataset layout"):
        detect_layout(tmp_path)
    with check_error(tmp_path, "unknown layout 'kaggle'"):
        load_dataset(tmp_path, layout="kaggle")
    bad = csv(tmp_path / "x" / "trainLabels.csv", "image,grade\na,1\n")
    with check_error(bad, "missing column 'level'", "header: image, grade"):
        load_dataset(bad.parent)
    csv(bad, "image,level\na,1,extra\n")
    with check_error(bad, "line 2 has 3 fields, the header has 2"):
        load_dataset(bad.parent)
    csv(bad, "image,level\n")
    with check_error(bad, "no rows"):
        load_dataset(bad.parent)
    csv(bad, "")
    with check_error(bad, "empty"):
        load_dataset(bad.parent)
    bad.write_bytes(b"image,level\n\xff\xfe,1\n")
    with check_error(bad, "not UTF-8"):
        load_dataset(bad.parent)


# --- EyeQ ----------------------------------------------------------------------------------

def test_eyeq_with_index_column(tmp_path):
    csv(tmp_path / "Label_EyeQ_train.csv",
        ",image,quality,DR_grade\n0,1_left.jpeg,0,0\n1,1_right.jpeg,2,1\n2,2_left.jpeg,1,0\n")
    for name in ("1_left.jpeg", "1_right.jpeg"):
        img(tmp_path / "train" / name)
    img(tmp_path / "train" / "2_left.png")  # preprocessed copy: same stem, .png
    assert detect_layout(tmp_path) == "eyeq"
    ds = load_dataset(tmp_path)
    assert ds.layout == "eyeq" and ds.label_names == ["quality"]
    assert [s.labels for s in ds.samples] == [{"quality": 0}, {"quality": 2}, {"quality": 1}]
    assert ds.samples[2].path == tmp_path / "train" / "2_left.png"


def test_eyeq_train_and_test_need_a_choice(tmp_path):
    csv(tmp_path / "Label_EyeQ_train.csv", ",image,quality\n0,a.jpeg,0\n")
    test_csv = csv(tmp_path / "Label_EyeQ_test.csv", ",image,quality\n0,b.jpeg,1\n")
    img(tmp_path / "train" / "a.jpeg")
    img(tmp_path / "test" / "b.jpeg")
    with check_error(tmp_path, "several 'eyeq' CSVs", "pass the CSV file"):
        load_dataset(tmp_path)
    ds = load_dataset(test_csv)
    assert ds.samples == [Sample(tmp_path / "test" / "b.jpeg", {"quality": 1})]


def test_eyeq_bad_quality(tmp_path):
    c = csv(tmp_path / "Label_EyeQ_train.csv", ",image,quality\n0,a.jpeg,3\n")
    img(tmp_path / "a.jpeg")
    with check_error(c, "line 2", "column 'quality'", "'3'", "0 good, 1 usable or 2 reject"):
        load_dataset(tmp_path)


# --- gradable binary -------------------------------------------------------------------------

@pytest.mark.parametrize("column", ["gradable", "label"])
def test_gradable(tmp_path, column):
    csv(tmp_path / "quality.csv", f"image,{column}\nimg1.png,1\nimg2.png,0\n")
    img(tmp_path / "images" / "img1.png")
    img(tmp_path / "images" / "img2.png")
    assert detect_layout(tmp_path) == "gradable"
    ds = load_dataset(tmp_path)
    assert ds.label_names == ["gradable"]
    assert [s.labels["gradable"] for s in ds.samples] == [1, 0]


def test_gradable_bad_value(tmp_path):
    c = csv(tmp_path / "q.csv", "image,gradable\nimg1.png,yes\n")
    img(tmp_path / "img1.png")
    with check_error(c, "line 2, column 'gradable': invalid value 'yes' (expected 0 or 1)"):
        load_dataset(tmp_path)


def test_ambiguous_layouts(tmp_path):
    csv(tmp_path / "a.csv", "image,gradable\nx.png,1\n")
    csv(tmp_path / "b.csv", "image,quality\nx.png,1\n")
    with check_error(tmp_path, "several layouts match (eyeq, gradable)"):
        detect_layout(tmp_path)


# --- class folders ---------------------------------------------------------------------------

def test_class_folders(tmp_path):
    for cls, names in {"good": ["a.png", "b.tif"], "poor": ["c.jpg"], "usable": ["d.png"]}.items():
        for n in names:
            img(tmp_path / cls / n)
    (tmp_path / "good" / "notes.txt").write_text("ignored")
    assert detect_layout(tmp_path) == "class_folders"
    ds = load_dataset(tmp_path)
    assert ds.label_names == ["class"]
    assert [(s.path.name, s.labels["class"]) for s in ds.samples] == [
        ("a.png", "good"), ("b.tif", "good"), ("c.jpg", "poor"), ("d.png", "usable")]


def test_class_folders_errors(tmp_path):
    img(tmp_path / "good" / "a.png")
    img(tmp_path / "poor" / "a.png")
    with check_error(tmp_path / "poor" / "a.png", "duplicate image id 'a.png'",
                     "'good' and 'poor'"):
        load_dataset(tmp_path)
    (tmp_path / "poor" / "a.png").unlink()
    (tmp_path / "usable").mkdir()
    with check_error(tmp_path / "poor", "class folder 'poor' has no images"):
        load_dataset(tmp_path, layout="class_folders")


# --- edgeret synthetic -------------------------------------------------------------------------

def test_edgeret_layout_generic_columns(tmp_path):
    csv(tmp_path / "labels.csv",
        "image,dr_grade,quality,device\nimgs/0001.png,3,good,cam-a\nimgs/0002.png,0,poor,cam-b\n")
    img(tmp_path / "imgs" / "0001.png")
    img(tmp_path / "imgs" / "0002.png")
    csv(tmp_path / "other.csv", "image,level\nx,1\n")  # our own labels.csv wins
    assert detect_layout(tmp_path) == "edgeret"
    ds = load_dataset(tmp_path)
    assert ds.label_names == ["dr_grade", "quality", "device"]
    assert ds.samples[0] == Sample(tmp_path / "imgs" / "0001.png",
                                   {"dr_grade": 3, "quality": "good", "device": "cam-a"})


def test_edgeret_layout_errors(tmp_path):
    c = csv(tmp_path / "labels.csv", "path,grade\na.png,1\n")
    with check_error(c, "first column must be 'image' (or 'file')"):
        load_dataset(tmp_path)
    csv(c, "image,grade\na.png,1\nb.png,\n")
    img(tmp_path / "a.png")
    img(tmp_path / "b.png")
    with check_error(c, "line 3, column 'grade': empty value"):
        load_dataset(tmp_path)
    csv(c, "image,grade,grade\na.png,1,2\n")
    with check_error(c, "'grade' appears twice"):
        load_dataset(tmp_path)
    csv(c, "image,grade\na.png,1\nmissing.png,2\nb.png,1\na.png,0\n")
    with check_error(c, "duplicate image id 'a.png' on lines 2 and 5"):
        load_dataset(tmp_path)
    csv(c, "image,grade\na.png,1\nmissing.png,2\ngone.png,1\n")
    with check_error(c, "2 of 3 listed images are missing, first 'missing.png' (line 3"):
        load_dataset(tmp_path)


def test_data_synth_writes_a_whole_dataset_or_a_one_line_error(tmp_path):
    from conftest import run_cli

    out = tmp_path / "oct"
    proc = run_cli("data", "synth", "--modality", "oct", "--n", "12", "--out", str(out), "--height", "64",
                   "--width", "96")  # 12 > 8: two worker processes
    assert proc.returncode == 0, proc.stderr
    ds = load_dataset(out)
    assert len(ds.samples) == 12 and all(s.path.is_file() for s in ds.samples)
    assert out.stat().st_mode & 0o777 == 0o755 and [p.name for p in tmp_path.iterdir()] == ["oct"]
    again = run_cli("data", "synth", "--modality", "oct", "--n", "2", "--out", str(out))
    assert again.returncode == 2 and again.stderr.strip() == f"edgeret: error: {out}: output folder exists " \
                                                             "and is not empty; choose another"
    (tmp_path / "a-file").write_text("x")
    inside_a_file = tmp_path / "a-file" / "d"
    blocked = run_cli("data", "synth", "--modality", "oct", "--n", "2", "--out", str(inside_a_file))
    assert blocked.returncode == 2
    assert blocked.stderr.strip().startswith(f"edgeret: error: {inside_a_file}: cannot create the output")
