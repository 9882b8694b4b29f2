"""Grey B-scans exported as colour (RGB JPEG with coloured markers) are converted with a note;
real colour images into a grey task are still refused."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli

from edgeret.errors import InputError
from edgeret.images.grey_exports import as_grey
from edgeret.images.read_write import read_image

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
needs_real = pytest.mark.skipif(not (REAL / "oct").is_dir(), reason=f"real development data absent ({REAL})")


def _scan_with_marker(marker_fraction: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (200, 300), dtype=np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    n = int(marker_fraction * grey.size)
    rgb.reshape(-1, 3)[:n] = (255, 0, 0)  # a red caliper line
    return rgb


def test_a_grey_scan_with_a_red_marker_becomes_one_channel_with_a_note(caplog):
    with caplog.at_level(logging.WARNING, logger="edgeret"):
        grey = as_grey(_scan_with_marker(0.005), "scan.jpg")
    assert grey is not None and grey.shape == (200, 300)
    assert "scan.jpg: grey image stored as colour" in caplog.text
    assert as_grey(_scan_with_marker(0.05), "photo.jpg") is None  # too much colour: refused by callers


@needs_real
def test_every_real_clinical_bscan_export_reads_as_grey_and_a_real_photo_is_still_refused():
    scans = sorted((REAL / "oct" / "images").glob("*.jpg"))
    assert len(scans) > 100
    coloured = 0
    for path in scans:
        raw = cv2.imread(str(path))
        coloured += int(np.ptp(raw, axis=2).max() > 0)
        image = read_image(path, expect="gray")
        assert image.ndim == 2 and image.shape == raw.shape[:2]
    assert coloured > 0  # the set holds exports with markers: the conversion was exercised
    photo = sorted((REAL / "fundus-dr" / "images").glob("*.jpg"))[0]
    with pytest.raises(InputError, match="expected a grayscale image .* of its pixels are coloured"):
        read_image(photo, expect="gray")


@needs_real
def test_the_cli_grades_a_marked_export_and_says_it_converted_it():
    scan = REAL / "oct" / "images" / "1992_OI_o_1.jpg"
    proc = run_cli("run", "quality-oct", str(scan), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "grey image stored as colour" in proc.stderr and str(scan) in proc.stderr
    assert '"gradable"' in proc.stdout
