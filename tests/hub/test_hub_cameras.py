"""Per-camera tokens at a real hub on loopback: who sent what, revoking without a restart, failing closed."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import run_cli
from hub_helpers import one_spooled_scan, start_hub, stored_record

from edgeret.camera.upload import Uploader
from edgeret.errors import EdgeretError, InputError
from edgeret.hub.cameras import parse_cameras

pydicom = pytest.importorskip("pydicom")

TOKEN_A, TOKEN_B = "a" * 20 + "-clinic-north", "b" * 20 + "-clinic-south"


def _cameras_file(path: Path, *lines: str) -> Path:
    path.write_text("# name  token\n" + "\n".join(lines) + "\n")
    return path


def _get_status(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code


def test_the_hub_names_the_authenticated_camera_in_the_record_and_the_dicom(tmp_path):
    item = one_spooled_scan(tmp_path)
    cameras = _cameras_file(tmp_path / "cameras.txt", f"north-1 {TOKEN_A}", f"south-2 {TOKEN_B}  # van")
    store = tmp_path / "store"
    hub = start_hub(store, cameras=cameras)
    try:
        outcome = Uploader(hub.url, token=TOKEN_B).send(item.capture_id, item.read_stream(), item.meta)
        reads = {token: _get_status(f"{hub.url}/v1/captures/{item.capture_id}", token)
                 for token in (TOKEN_B, TOKEN_A)}
    finally:
        hub.stop()
    assert outcome.kind == "delivered", outcome
    assert reads == {TOKEN_B: 200, TOKEN_A: 404}  # the other camera cannot read its record
    record = stored_record(store, item.capture_id)
    assert record["camera"] == "south-2"
    assert pydicom.dcmread(store / "dicom" / f"{item.capture_id}.dcm").StationName == "south-2"
    assert any("from camera south-2 at 127.0.0.1" in line for line in hub.lines), hub.lines


def test_a_deleted_line_revokes_that_camera_at_once_and_a_broken_file_fails_closed(tmp_path):
    item = one_spooled_scan(tmp_path)
    cameras = _cameras_file(tmp_path / "cameras.txt", f"north-1 {TOKEN_A}", f"south-2 {TOKEN_B}")
    hub = start_hub(tmp_path / "store", cameras=cameras)
    stream = item.read_stream()
    try:
        wrong = Uploader(hub.url, token="z" * 24).send(item.capture_id, stream, item.meta)
        _cameras_file(cameras, f"south-2 {TOKEN_B}")  # north-1 revoked while the hub runs
        revoked = Uploader(hub.url, token=TOKEN_A).send(item.capture_id, stream, item.meta)
        cameras.write_text(f"south-2 {TOKEN_B}\nbroken line three\n")
        closed = Uploader(hub.url, token=TOKEN_B).send(item.capture_id, stream, item.meta)
        _cameras_file(cameras, f"south-2 {TOKEN_B}")
        fixed = Uploader(hub.url, token=TOKEN_B).send(item.capture_id, stream, item.meta)
    finally:
        hub.stop()
    for refused in (wrong, revoked, closed):  # 401: the camera keeps the stream queued
        assert refused.kind == "retry" and "HTTP 401" in refused.detail, refused
    assert fixed.kind == "delivered", fixed
    assert any("line 2: expected 'NAME TOKEN', got 3 field(s); refusing every camera" in line
               for line in hub.lines), hub.lines


@pytest.mark.parametrize("text, problem", [
    ("north-1\n", "line 1: expected 'NAME TOKEN', got 1 field(s)"),
    (f"north 1 {TOKEN_A}\n", "got 3 field(s)"),
    (f"a-name-longer-than-16 {TOKEN_A}\n", "must be 1-16 of"),
    ("north-1 short\n", "the token of 'north-1' must be at least 16"),
    (f"north-1 {TOKEN_A}\nnorth-1 {TOKEN_B}\n", "line 2: camera 'north-1' is listed twice"),
    (f"north-1 {TOKEN_A}\nsouth-2 {TOKEN_A}\n", "line 2: 'south-2' has the same token as 'north-1'"),
    ("# nobody yet\n", "no cameras listed"),
])
def test_bad_cameras_files_are_one_line_errors_naming_the_line(text, problem):
    with pytest.raises(InputError, match="cams.txt: ") as info:
        parse_cameras(text, "cams.txt")
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_serve_refuses_a_bad_cameras_file_or_two_kinds_of_token_before_writing_anything(tmp_path):
    bad = tmp_path / "cameras.txt"
    bad.write_text("north-1 short\n")
    store = tmp_path / "store"
    proc = run_cli("serve", "--store", str(store), "--port", "0", "--cameras", str(bad))
    assert proc.returncode == 2 and "cameras.txt: line 1: the token of 'north-1'" in proc.stderr, proc.stderr
    token = tmp_path / "token.txt"
    token.write_text("t" * 20 + "\n")
    _cameras_file(bad, f"north-1 {TOKEN_A}")
    both = run_cli("serve", "--store", str(store), "--port", "0", "--cameras", str(bad),
                   "--token-file", str(token))
    assert both.returncode == 2 and "not both" in both.stderr and len(both.stderr.splitlines()) == 1
    assert not store.exists()
    with pytest.raises(EdgeretError, match="not both"):
        start_hub(store, cameras=bad, token="t" * 20)
