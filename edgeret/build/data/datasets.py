"""Readers for real retinal dataset layouts -> a list of labelled samples.

Layouts (names returned by :func:`detect_layout`):

* ``eyepacs_dr``   Kaggle/EyePACS: ``trainLabels.csv`` (image,level 0-4), images
                   ``<image>.jpeg`` (or .jpg/.png/.tif) in the folder or ``train/``
                   -> {"dr_grade": level}
* ``eyeq``         ``Label_EyeQ_train.csv``/``_test.csv`` (optional unnamed index
                   column, image,quality 0 good/1 usable/2 reject) -> {"quality": q}
* ``gradable``     any CSV with ``image,gradable`` or ``image,label`` (0/1)
                   -> {"gradable": 0|1}
* ``class_folders`` ``root/<class>/*.png|tif|jpg`` -> {"class": name}
* ``edgeret``      ``labels.csv``: first column ``image`` (relative file name),
                   every other column a label (int if it parses, else str); the real
                   sets' ``file`` first column is read the same way, empty cells
                   meaning "no such label" (``patient`` then groups samples)

Validation never guesses: a missing CSV or column, a bad label (CSV, line,
column, value), duplicate image ids, or missing image files (how many and the
first) raise InputError. Pass a CSV file instead of a folder to choose one CSV
when a folder holds several (e.g. EyeQ train and test).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from edgeret.errors import InputError

LAYOUTS = ("eyepacs_dr", "eyeq", "gradable", "class_folders", "edgeret")
IMAGE_EXTS = (".jpeg", ".jpg", ".png", ".tif", ".tiff")


@dataclass(frozen=True)
class Sample:
    path: Path
    labels: dict[str, int | str]


@dataclass
class Dataset:
    layout: str
    samples: list[Sample]
    label_names: list[str]
    root: Path | None = None
    csv_files: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)


# --- CSV reading -------------------------------------------------------------------------

def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header (stripped) and (line number, fields) rows; blank lines skipped."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except FileNotFoundError:
        raise InputError(path, "CSV file not found") from None
    except UnicodeDecodeError:
        raise InputError(path, "CSV is not UTF-8 text") from None
    except csv.Error as e:
        raise InputError(path, f"malformed CSV: {e}") from None
    except OSError as e:
        raise InputError(path, f"cannot read CSV ({e.strerror})") from None
    if not header:
        raise InputError(path, "CSV is empty (no header line)")
    for line, row in rows:
        if len(row) != len(header):
            raise InputError(path, f"line {line} has {len(row)} fields, the header has "
                                   f"{len(header)}")
    if not rows:
        raise InputError(path, "CSV has a header but no rows")
    return header, rows


def _column(path: Path, header: list[str], *names: str) -> int:
    lowered = [h.lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    want = " or ".join(repr(n) for n in names)
    raise InputError(path, f"missing column {want} (header: {', '.join(header)})")


def _int_label(path: Path, line: int, column: str, value: str, allowed: range,
               meaning: str) -> int:
    try:
        v = int(value.strip())
    except ValueError:
        v = None
    if v is None or v not in allowed:
        raise InputError(path, f"line {line}, column '{column}': invalid value {value!r} "
                               f"(expected {meaning})")
    return v


def _check_duplicate(path: Path, seen: dict[str, int], key: str, line: int) -> None:
    if key in seen:
        raise InputError(path, f"duplicate image id {key!r} on lines {seen[key]} and {line}")
    seen[key] = line


# --- image lookup ------------------------------------------------------------------------

class _ImageIndex:
    """Resolves CSV image ids to files with one directory listing per folder."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = [d for d in dirs if d.is_dir()]
        self.names = [set(os.listdir(d)) for d in self.dirs]

    def find(self, csv_path: Path, image_id: str, line: int) -> Path | None:
        stem, ext = os.path.splitext(image_id)
        if ext.lower() in IMAGE_EXTS:
            exact = [image_id]
            alternatives = [stem + e for e in IMAGE_EXTS if e != ext.lower()]
        else:
            exact, alternatives = [], [image_id + e for e in IMAGE_EXTS]
        for d, names in zip(self.dirs, self.names, strict=True):
            for n in exact:
                if n in names:
                    return d / n
            hits = [n for n in alternatives if n in names]
            if len(hits) > 1:
                raise InputError(csv_path, f"line {line}: image {image_id!r} is ambiguous, "
                                           f"{d} holds {' and '.join(hits)}")
            if hits:
                return d / hits[0]
        return None


def _missing_error(csv_path: Path, missing: list[tuple[int, str]], total: int,
                   dirs: list[Path]) -> InputError:
    line, image_id = missing[0]
    where = ", ".join(str(d) for d in dirs)
    return InputError(csv_path, f"{len(missing)} of {total} listed images are missing, first "
                                f"{image_id!r} (line {line}; looked in {where})")


def _load_csv(csv_path: Path, dirs: list[Path], column: tuple[str, ...], key: str,
              allowed: range, meaning: str) -> list[Sample]:
    """Shared reader for the image,<label> layouts (EyePACS, EyeQ, gradable)."""
    header, rows = _read_csv(csv_path)
    img_col = _column(csv_path, header, "image")
    lab_col = _column(csv_path, header, *column)
    index = _ImageIndex(dirs)
    seen: dict[str, int] = {}
    samples, missing = [], []
    for line, row in rows:
        image_id = row[img_col].strip()
        if not image_id:
            raise InputError(csv_path, f"line {line}, column 'image': empty image id")
        value = _int_label(csv_path, line, header[lab_col], row[lab_col], allowed, meaning)
        _check_duplicate(csv_path, seen, image_id, line)
        found = index.find(csv_path, image_id, line)
        if found is None:
            missing.append((line, image_id))
        else:
            samples.append(Sample(found, {key: value}))
    if missing:
        raise _missing_error(csv_path, missing, len(rows), dirs)
    return samples


# --- layouts -----------------------------------------------------------------------------

def _load_eyepacs(root: Path, csv_path: Path) -> Dataset:
    samples = _load_csv(csv_path, [root, root / "train"], ("level",), "dr_grade",
                        range(5), "a DR grade, an integer 0-4")
    return Dataset("eyepacs_dr", samples, ["dr_grade"], root, [csv_path])


def _load_eyeq(root: Path, csv_path: Path) -> Dataset:
    split = "test" if "test" in csv_path.stem.lower() else "train"
    dirs = [root, root / split, root / "images"]
    samples = _load_csv(csv_path, dirs, ("quality",), "quality",
                        range(3), "0 good, 1 usable or 2 reject")
    return Dataset("eyeq", samples, ["quality"], root, [csv_path])


def _load_gradable(root: Path, csv_path: Path) -> Dataset:
    dirs = [root, root / "images"]
    samples = _load_csv(csv_path, dirs, ("gradable", "label"), "gradable", range(2), "0 or 1")
    return Dataset("gradable", samples, ["gradable"], root, [csv_path])


def _load_edgeret(root: Path, csv_path: Path) -> Dataset:
    header, rows = _read_csv(csv_path)
    if header[0].lower() not in ("image", "file"):
        raise InputError(csv_path, f"first column must be 'image' (or 'file'), not {header[0]!r}")
    # 'file' is how the real-data sets spell it; an empty cell there means "not graded" (a
    # DME-only photograph has no DR grade), so the label is left out instead of refused
    optional = header[0].lower() == "file"
    names = header[1:]
    for i, name in enumerate(names, start=2):
        if not name:
            raise InputError(csv_path, f"column {i} has an empty name")
        if names.count(name) > 1:
            raise InputError(csv_path, f"column name {name!r} appears twice")
    seen: dict[str, int] = {}
    samples, missing = [], []
    for line, row in rows:
        rel = row[0].strip()
        if not rel:
            raise InputError(csv_path, f"line {line}, column 'image': empty image id")
        _check_duplicate(csv_path, seen, rel, line)
        labels: dict[str, int | str] = {}
        for name, raw in zip(names, row[1:], strict=True):
            value = raw.strip()
            if not value and optional:
                continue
            if not value:
                raise InputError(csv_path, f"line {line}, column '{name}': empty value")
            try:
                labels[name] = int(value)
            except ValueError:
                labels[name] = value
        path = root / rel
        if path.is_file():
            samples.append(Sample(path, labels))
        else:
            missing.append((line, rel))
    if missing:
        raise _missing_error(csv_path, missing, len(rows), [root])
    return Dataset("edgeret", samples, list(names), root, [csv_path])


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_EXTS)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _load_class_folders(root: Path) -> Dataset:
    classes = _class_dirs(root)
    if not classes:
        raise InputError(root, "no class subfolders (expected root/<class>/*.png|tif|jpg)")
    samples: list[Sample] = []
    seen: dict[str, str] = {}
    for d in classes:
        files = _image_files(d)
        if not files:
            raise InputError(d, f"class folder '{d.name}' has no images "
                                f"({', '.join(IMAGE_EXTS)})")
        for f in files:
            if f.name in seen:
                raise InputError(f, f"duplicate image id {f.name!r} in classes "
                                    f"'{seen[f.name]}' and '{d.name}'")
            seen[f.name] = d.name
            samples.append(Sample(f, {"class": d.name}))
    return Dataset("class_folders", samples, ["class"], root, [])


_LOADERS = {"eyepacs_dr": _load_eyepacs, "eyeq": _load_eyeq, "gradable": _load_gradable,
            "edgeret": _load_edgeret}


# --- detection ---------------------------------------------------------------------------

_CANONICAL = {"labels.csv": "edgeret", "trainlabels.csv": "eyepacs_dr"}


def _csv_layout(csv_path: Path) -> tuple[str | None, bool]:
    """(layout, matched by its canonical file name) of one CSV, from name then header."""
    name = csv_path.name.lower()
    if name in _CANONICAL:
        return _CANONICAL[name], True
    if name.startswith("label_eyeq"):
        return "eyeq", True
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            header = {h.strip().lower() for h in next(csv.reader(f), [])}
    except (OSError, UnicodeDecodeError, csv.Error):
        return None, False
    if "image" not in header:
        return None, False
    for column, layout in (("level", "eyepacs_dr"), ("quality", "eyeq"),
                           ("gradable", "gradable"), ("label", "gradable")):
        if column in header:
            return layout, False
    return None, False


def _candidates(folder: Path) -> dict[str, list[Path]]:
    """Layout -> matching CSVs. CSVs with a canonical name (trainLabels.csv, ...)
    hide those matched only by header (e.g. Kaggle's sampleSubmission.csv)."""
    by_name: dict[str, list[Path]] = {}
    by_header: dict[str, list[Path]] = {}
    for csv_path in sorted(folder.glob("*.csv")):
        layout, canonical = _csv_layout(csv_path)
        if layout:
            (by_name if canonical else by_header).setdefault(layout, []).append(csv_path)
    return by_name or by_header


def _check_folder(folder: Path) -> Path:
    if not folder.exists():
        raise InputError(folder, "dataset folder not found")
    return folder


def detect_layout(folder: str | Path) -> str:
    """Name of the layout of a dataset folder (or of a CSV file), see LAYOUTS."""
    folder = _check_folder(Path(folder))
    if folder.is_file():
        layout, _ = _csv_layout(folder)
        if layout is None:
            raise InputError(folder, "CSV matches no known layout (need an 'image' column and "
                                     "'level', 'quality', 'gradable' or 'label', or the name "
                                     "labels.csv)")
        return layout
    found = _candidates(folder)
    if "edgeret" in found:  # our own labels.csv wins over any other CSV lying around
        return "edgeret"
    if len(found) > 1:
        raise InputError(folder, f"several layouts match ({', '.join(sorted(found))}); pass "
                                 "layout= or the CSV file itself")
    if found:
        return next(iter(found))
    with_images = [d for d in _class_dirs(folder) if _image_files(d)]
    if len(with_images) >= 2:
        return "class_folders"
    raise InputError(folder, "unknown dataset layout: no labels.csv, trainLabels.csv, "
                             "Label_EyeQ_*.csv, image,gradable CSV, or >= 2 class subfolders "
                             "with images")


def is_real_layout(folder: str | Path) -> bool:
    """The real sets' ``labels.csv`` (first column ``file``, as ``../shared/data/real`` holds them),
    as opposed to the one ``edgeret data synth`` writes (first column ``image``)."""
    labels = Path(folder) / "labels.csv"
    if not labels.is_file():
        return False
    return labels.read_text(encoding="utf-8-sig").split(",", 1)[0].strip().lower() == "file"


def load_dataset(folder: str | Path, layout: str | None = None) -> Dataset:
    """Read and validate a dataset; ``folder`` may also be the labels CSV itself."""
    path = _check_folder(Path(folder))
    if layout is not None and layout not in LAYOUTS:
        raise InputError(path, f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    layout = layout or detect_layout(path)
    if layout == "class_folders":
        if path.is_file():
            raise InputError(path, "layout 'class_folders' needs a folder, not a file")
        return _load_class_folders(path)
    if path.is_file():
        return _LOADERS[layout](path.parent, path)
    csvs = _candidates(path).get(layout, [])
    if not csvs:
        expected = {"eyepacs_dr": "trainLabels.csv", "eyeq": "Label_EyeQ_*.csv",
                    "gradable": "a CSV with image,gradable or image,label",
                    "edgeret": "labels.csv"}[layout]
        raise InputError(path, f"no {expected} found (layout '{layout}')")
    if len(csvs) > 1:
        names = ", ".join(c.name for c in csvs)
        raise InputError(path, f"several '{layout}' CSVs ({names}); pass the CSV file to use")
    return _LOADERS[layout](path, csvs[0])
