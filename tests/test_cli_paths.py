"""A path the machine refuses (a file where a folder should be, no permission) is the user's to fix: one
line naming it, exit 2, never 'internal error'."""

from __future__ import annotations

import pytest
from conftest import run_cli

from edgeret.build.data.synth import SynthRequest, synthesize


@pytest.fixture(scope="module")
def oct_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-paths")
    return synthesize(SynthRequest("oct", 4, 7, root / "ds", height=64, width=96, workers=1))


@pytest.mark.parametrize("command", ["train", "eval"])
def test_an_output_folder_inside_a_file_is_a_one_line_error(tmp_path, oct_dataset, command):
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / "a-file" / "out"
    extra = ["--epochs", "1"] if command == "train" else []
    proc = run_cli(command, "quality-oct", "--data", str(oct_dataset), "--out", str(out), *extra)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("edgeret:")]
    assert proc.returncode == 2, proc.stderr
    assert lines == [f"edgeret: error: {out}: cannot create the output folder (Not a directory)"], proc.stderr
    assert (tmp_path / "a-file").read_text() == "not a folder"
