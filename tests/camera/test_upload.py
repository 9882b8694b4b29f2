"""Device agent -> hub over real HTTP on loopback, with the real codec and graders (no mocks)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from hub_helpers import make_agent, one_spooled_scan, start_hub, stored_record, stored_records, write_captures
from net_faults import FaultyProxy, free_port

from edgeret.camera.upload import Uploader

pydicom = pytest.importorskip("pydicom")


def _hub_ids(store: Path) -> list[str]:
    return sorted(stored_records(store))


def _record(store: Path, capture_id: str) -> dict:
    return stored_record(store, capture_id)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _agent_once_to_a_fresh_hub(inbox: Path, spool: Path, store: Path):
    """`edgeret agent --once` (a real process) against a hub started for it."""
    hub = start_hub(store)
    try:
        return run_cli("agent", "--inbox", str(inbox), "--spool", str(spool), "--hub", hub.url,
                       "--once", "--settle", "0")
    finally:
        hub.stop()


def test_agent_cli_delivers_every_capture_and_the_hub_decodes_exactly(tmp_path):
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    captures = write_captures(inbox, n_fundus=1, n_oct=1)
    (inbox / "photo0.json").write_text(json.dumps({"patient_id": "P001", "laterality": "L"}))
    ids = {p.name: _sha(p) for p in captures}
    proc = _agent_once_to_a_fresh_hub(inbox, tmp_path / "spool", store)
    assert proc.returncode == 0, proc.stderr
    assert "photo0.png: quality-fundus" in proc.stdout and "sent scan0.png" in proc.stdout
    assert _hub_ids(store) == sorted(ids.values())
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["photo0.json", "photo0.png", "scan0.png"]
    assert not list((tmp_path / "spool" / "queue").iterdir())
    assert len((tmp_path / "spool" / "sent.jsonl").read_text().splitlines()) == 2

    photo = _record(store, ids["photo0.png"])
    assert photo["findings"]["task"] == "dr-grade" and photo["device_quality"]["task"] == "quality-fundus"
    assert _record(store, ids["scan0.png"])["findings"]["task"] == "quality-oct"
    for name, capture_id in ids.items():
        # the DICOM holds exactly what `edgeret decode` makes of the stream the hub kept
        decoded = tmp_path / f"{name}.decoded.png"
        run_cli("decode", str(store / "streams" / f"{capture_id}.ert"), "-o", str(decoded), check=True)
        from edgeret.images.read_write import read_image

        ds = pydicom.dcmread(store / "dicom" / f"{capture_id}.dcm")
        np.testing.assert_array_equal(ds.pixel_array, read_image(decoded))
        assert ds.SOPInstanceUID == _record(store, capture_id)["dicom"]["sop_instance_uid"]
    ds = pydicom.dcmread(store / "dicom" / f"{ids['photo0.png']}.dcm")
    assert ds.PatientID == "P001" and ds.ImageLaterality == "L" and ds.Modality == "OP"


def test_the_same_capture_twice_is_stored_once_and_a_different_stream_under_its_id_is_refused(tmp_path):
    store = tmp_path / "store"
    item = one_spooled_scan(tmp_path)
    hub = start_hub(store)
    try:
        uploader = Uploader(hub.url)
        first = uploader.send(item.capture_id, item.read_stream(), item.meta)
        again = uploader.send(item.capture_id, item.read_stream(), item.meta)
        other = item.read_stream()[:-1] + bytes([item.read_stream()[-1] ^ 1])
        clash = uploader.send(item.capture_id, other, item.meta)
    finally:
        hub.stop()
    assert (first.kind, first.receipt["status"]) == ("delivered", "stored")
    assert (again.kind, again.receipt["status"]) == ("delivered", "already stored")
    assert again.receipt["dicom"] == first.receipt["dicom"]
    assert clash.kind == "rejected" and "HTTP 409" in clash.detail and "different stream" in clash.detail
    assert _hub_ids(store) == [item.capture_id]


def test_damaged_streams_are_refused_with_a_reason_and_leave_nothing_in_the_store(tmp_path):
    store = tmp_path / "store"
    item = one_spooled_scan(tmp_path)
    good = item.read_stream()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x40
    hub = start_hub(store)
    try:
        uploader = Uploader(hub.url)
        corrupt = uploader.send(item.capture_id, bytes(flipped), item.meta)
        truncated = uploader.send(item.capture_id, good[: len(good) // 3], item.meta)
        garbage = uploader.send(item.capture_id, b"not a stream at all", item.meta)
        bad_id = uploader.send("abc", good, item.meta)
        # a body whose sha256 is not the one the header promised: damaged on the way
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", int(hub.url.rsplit(":", 1)[1]), timeout=10)
        conn.request("PUT", f"/v1/captures/{item.capture_id}", body=bytes(flipped),
                     headers={"X-Edgeret-Stream-Sha256": hashlib.sha256(good).hexdigest()})
        mismatch = conn.getresponse()
        mismatch_body = json.loads(mismatch.read())
        conn.close()
        health = Uploader(hub.url)  # the hub still serves after all that
        ok = health.send(item.capture_id, good, item.meta)
    finally:
        hub.stop()
    for outcome in (corrupt, truncated, garbage):
        assert outcome.kind == "rejected" and "HTTP 422" in outcome.detail, outcome
        assert f"capture {item.capture_id[:12]}" in outcome.detail  # names what was refused
    assert "CRC" in corrupt.detail or "corrupt" in corrupt.detail
    assert bad_id.kind == "rejected" and "HTTP 400" in bad_id.detail
    assert mismatch.status == 400 and "damaged in transit" in mismatch_body["error"]
    assert ok.kind == "delivered"
    assert _hub_ids(store) == [item.capture_id]
    assert len(list((store / "streams").iterdir())) == len(list((store / "dicom").iterdir())) == 1


def test_with_the_hub_down_streams_wait_on_disk_and_go_when_it_is_back(tmp_path):
    inbox, spool, store = tmp_path / "inbox", tmp_path / "spool", tmp_path / "store"
    captures = write_captures(inbox, n_fundus=1, n_oct=1)
    ids = sorted(_sha(p) for p in captures)
    port = free_port()
    down = run_cli("agent", "--inbox", str(inbox), "--spool", str(spool), "--hub", f"http://127.0.0.1:{port}",
                   "--once", "--settle", "0", "--max-wait", "1", "--retry-first", "0.2")
    assert down.returncode == 3, down.stdout + down.stderr
    assert "connection refused" in down.stdout and "not yet delivered" in down.stdout
    assert sorted(p.stem for p in (spool / "queue").glob("*.json")) == ids
    assert not list(inbox.glob("*.png"))  # captured streams are safe in the spool, the inbox is free
    hub = start_hub(store, port=port)
    try:
        up = run_cli("agent", "--inbox", str(inbox), "--spool", str(spool), "--hub", hub.url,
                     "--once", "--settle", "0")
    finally:
        hub.stop()
    assert up.returncode == 0, up.stdout + up.stderr
    assert _hub_ids(store) == ids
    assert not list((spool / "queue").iterdir())


def test_a_flaky_network_delays_delivery_but_loses_and_duplicates_nothing(tmp_path):
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    ids = sorted(_sha(p) for p in write_captures(inbox, n_fundus=2, n_oct=2))
    hub = start_hub(store)
    faults = ["reset", "cut", "stall", "cut", "reset"]
    proxy = FaultyProxy(int(hub.url.rsplit(":", 1)[1]), faults, cut_after=700)
    agent = make_agent(inbox, tmp_path / "spool", proxy.url, timeout=3.0)
    try:
        code = agent.run_once(max_wait=60)
    finally:
        proxy.close()
        hub.stop()
    assert code == 0, agent.lines
    assert proxy.seen[:5] == faults
    failures = [line for line in agent.lines if "failed" in line]
    # every fault cost one attempt; a loaded machine may add a timeout on a clean connection (the hub
    # grades before it answers), never anything else: one connection per attempt, one per delivery
    assert len(failures) >= 5, agent.lines
    assert all("timeout" in line for line in failures[5:]), failures
    assert len(proxy.seen) == len(failures) + 4, (proxy.seen, agent.lines)
    assert _hub_ids(store) == ids
    # cut uploads left no half-written stream at the hub
    assert len(list((store / "streams").iterdir())) == 4
    assert not list((tmp_path / "spool" / "queue").iterdir())


def test_killing_the_agent_mid_upload_loses_nothing_and_sends_nothing_twice(tmp_path):
    inbox, spool, store = tmp_path / "inbox", tmp_path / "spool", tmp_path / "store"
    ids = sorted(_sha(p) for p in write_captures(inbox, n_fundus=2, n_oct=2, seed=5))
    hub = start_hub(store)
    proxy = FaultyProxy(int(hub.url.rsplit(":", 1)[1]), ["pass"] + ["slow"] * 10, delay=3.0)
    env = {**os.environ}
    argv = ["agent", "--inbox", str(inbox), "--spool", str(spool), "--hub", proxy.url, "--settle", "0",
            "--poll", "0.2"]
    agent = subprocess.Popen([sys.executable, "-m", "edgeret", *argv],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_hub_ids(store)) < 1:
            time.sleep(0.1)
        time.sleep(0.5)  # now inside a slow upload
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        assert 1 <= len(_hub_ids(store)) < 4, "the kill should land while uploads are still going"
        queued = list((spool / "queue").glob("*.json"))
        assert queued, "streams not yet acknowledged must still be in the spool"
        restarted = run_cli("agent", "--inbox", str(inbox), "--spool", str(spool), "--hub", hub.url,
                            "--once", "--settle", "0")
    finally:
        if agent.poll() is None:
            agent.kill()
        proxy.close()
        hub.stop()
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert _hub_ids(store) == ids
    assert len(list((store / "streams").iterdir())) == 4
    assert not list((spool / "queue").iterdir())


def test_unreadable_captures_are_set_aside_with_the_reason_and_the_rest_still_go(tmp_path):
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    (good,) = write_captures(inbox, n_fundus=0, n_oct=1)
    data = good.read_bytes()
    (inbox / "cut.png").write_bytes(data[: len(data) // 2])
    write_captures(tmp_path / "other", n_fundus=1, n_oct=0)
    (tmp_path / "other" / "photo0.png").rename(inbox / "photo0.png")
    (inbox / "photo0.json").write_text("{not json")
    proc = _agent_once_to_a_fresh_hub(inbox, tmp_path / "spool", store)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert _hub_ids(store) == [hashlib.sha256(data).hexdigest()]
    failed = inbox / "failed"
    assert sorted(p.name for p in failed.iterdir()) == ["cut.png", "cut.png.error.txt", "photo0.json",
                                                        "photo0.png", "photo0.png.error.txt"]
    assert "cut.png" in (failed / "cut.png.error.txt").read_text()
    assert "photo0.json: not valid JSON" in (failed / "photo0.png.error.txt").read_text()


def test_the_agent_runs_an_exported_int8_bundle_as_the_camera_does(tmp_path):
    """OCT camera profile (Raspberry Pi 5: LiteRT full-integer INT8): the bundle's quality model and
    encoder grade and encode; the hub's fp32 decoder decodes the stream."""
    bundle = tmp_path / "bundle"
    exported = run_cli("export", "--device", "raspberry-pi-5", "--tasks", "codec-encoder", "quality-oct",
                       "--heldout", "4", "--calib-size", "16", "--golden", "2", "--threads", "1", "--quiet",
                       "-o", str(bundle))
    assert exported.returncode == 0, exported.stderr[-2000:]
    from edgeret.build.data.oct import generate_oct

    inbox, store = tmp_path / "inbox", tmp_path / "store"
    inbox.mkdir()
    import cv2

    cv2.imwrite(str(inbox / "scan.png"), generate_oct(21, height=512, width=512, quality="good").image)
    cv2.imwrite(str(inbox / "small.png"), generate_oct(22, height=256, width=512, quality="good").image)
    ids = {p.name: _sha(p) for p in inbox.iterdir()}
    hub = start_hub(store)
    try:
        proc = run_cli("agent", "--inbox", str(inbox), "--spool", str(tmp_path / "spool"), "--hub", hub.url,
                       "--bundle", str(bundle), "--once", "--settle", "0")
    finally:
        hub.stop()
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the 256-row scan does not fit the bundle
    assert _hub_ids(store) == [ids["scan.png"]]
    record = _record(store, ids["scan.png"])
    assert record["device_quality"]["task"] == "quality-oct"
    assert record["findings"]["grade"] in ("good", "usable", "poor")
    assert record["stream"]["codec"].startswith("oct-factorized")
    reason = (inbox / "failed" / "small.png.error.txt").read_text()
    assert "small.png" in reason and "runs 512x512 images only" in reason


def test_with_the_spool_disk_nearly_full_captures_wait_in_the_inbox(tmp_path):
    inbox = tmp_path / "inbox"
    write_captures(inbox, n_fundus=0, n_oct=1)
    agent = make_agent(inbox, tmp_path / "spool", "http://127.0.0.1:1")
    agent.min_free = 2**62  # more free space than any disk has
    assert agent.run_once(max_wait=0) == 3
    assert [p.name for p in inbox.glob("*.png")] == ["scan0.png"] and agent.spool.pending() == []
    assert any("captures wait in" in line for line in agent.lines)
    agent.min_free = 0
    agent.ingest()
    assert len(agent.spool.pending()) == 1 and not list(inbox.glob("*.png"))


def test_a_hub_with_a_token_refuses_cameras_without_it_and_they_keep_their_streams(tmp_path):
    inbox, spool, store = tmp_path / "inbox", tmp_path / "spool", tmp_path / "store"
    ids = sorted(_sha(p) for p in write_captures(inbox, n_fundus=0, n_oct=1))
    token = "s3cret-token-for-this-clinic"
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "short").write_text("short\n")
    hub = start_hub(store, token=token)
    try:
        argv = ["agent", "--inbox", str(inbox), "--spool", str(spool), "--hub", hub.url, "--once",
                "--settle", "0"]
        without = run_cli(*argv, "--max-wait", "1", "--retry-first", "0.2")
        bad_file = run_cli(*argv, "--token-file", str(tmp_path / "short"))
        record = urllib.request.Request(f"{hub.url}/v1/captures/{ids[0]}")
        with_token = run_cli(*argv, "--token-file", str(tmp_path / "token"))
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(record, timeout=5)
        record.add_header("Authorization", f"Bearer {token}")
        fetched = json.loads(urllib.request.urlopen(record, timeout=5).read())
    finally:
        hub.stop()
    assert without.returncode == 3 and "HTTP 401" in without.stdout, without.stdout
    assert bad_file.returncode == 2 and "at least 16 printable" in bad_file.stderr
    assert with_token.returncode == 0, with_token.stdout + with_token.stderr
    assert _hub_ids(store) == ids and denied.value.code == 401 and fetched["capture_id"] == ids[0]


def test_a_dicom_capture_keeps_its_patient_at_the_hub(tmp_path):
    """A camera that writes DICOM already knows the patient: no side-car needed."""
    from edgeret.build.data.oct import generate_oct
    from edgeret.hub.dicom_out import capture_to_dicom

    inbox, store = tmp_path / "inbox", tmp_path / "store"
    inbox.mkdir()
    scan = generate_oct(31, height=256, width=512, quality="good").image
    patient = {"patient_id": "CAM-7", "patient_name": "Doe^Jane", "laterality": "R"}
    camera_dicom = capture_to_dicom(scan, capture_id="ab" * 32, modality="oct", bit_depth=8, patient=patient)
    (inbox / "scan.dcm").write_bytes(camera_dicom)
    capture_id = _sha(inbox / "scan.dcm")
    proc = _agent_once_to_a_fresh_hub(inbox, tmp_path / "spool", store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ds = pydicom.dcmread(store / "dicom" / f"{capture_id}.dcm")
    assert (ds.PatientID, str(ds.PatientName), ds.ImageLaterality) == ("CAM-7", "Doe^Jane", "R")
    assert _record(store, capture_id)["patient"]["patient_id"] == "CAM-7"


@pytest.mark.parametrize("extra, version", [((), 2), (("--full-scale",), 1)])
def test_an_oversampled_photo_at_a_low_rate_travels_at_half_scale_and_arrives_full_size(tmp_path, extra,
                                                                                        version):
    """The real scikit-image photograph at q2: halved on the device, doubled back at the hub (unless the
    agent runs with --full-scale). The whole photograph: the device halves only what it grades good,
    and a centre crop without the field's edge is graded usable by the real-trained quality model."""
    from skimage import data as skdata

    from edgeret.images.read_write import read_image, write_image

    inbox, store = tmp_path / "inbox", tmp_path / "store"
    inbox.mkdir()
    write_image(inbox / "photo.png", np.ascontiguousarray(skdata.retina()))
    capture_id = _sha(inbox / "photo.png")
    hub = start_hub(store)
    try:
        proc = run_cli("agent", "--inbox", str(inbox), "--spool", str(tmp_path / "spool"), "--hub", hub.url,
                       "--once", "--settle", "0", "--rate", "q2", *extra)
    finally:
        hub.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stream = store / "streams" / f"{capture_id}.ert"
    assert int.from_bytes(stream.read_bytes()[8:10], "little") == version  # .ert version 2: halved
    ds = pydicom.dcmread(store / "dicom" / f"{capture_id}.dcm")
    assert ds.pixel_array.shape == (1411, 1411, 3)
    assert ("coded at half resolution" in ds.DerivationDescription) == (version == 2)
    run_cli("decode", str(stream), "-o", str(tmp_path / "back.png"), check=True)
    np.testing.assert_array_equal(ds.pixel_array, read_image(tmp_path / "back.png"))


def test_several_cameras_at_once_and_the_same_capture_twice_at_once(tmp_path):
    """A hub serves clinics in parallel; two simultaneous uploads of one capture store it once."""
    import threading

    store = tmp_path / "store"
    for k in range(3):
        write_captures(tmp_path / f"camera{k}" / "inbox", n_fundus=1, n_oct=1, seed=100 + 10 * k)
    twin = tmp_path / "camera0" / "inbox" / "scan0.png"
    (tmp_path / "camera2" / "inbox" / "scan0.png").write_bytes(twin.read_bytes())  # same capture, 2 cameras
    ids = {_sha(p) for p in tmp_path.glob("camera*/inbox/*.png")}
    hub = start_hub(store)
    try:
        agents = [make_agent(tmp_path / f"camera{k}" / "inbox", tmp_path / f"camera{k}" / "spool", hub.url)
                  for k in range(3)]
        codes: list[int] = []
        threads = [threading.Thread(target=lambda a=a: codes.append(a.run_once(max_wait=60))) for a in agents]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        hub.stop()
    assert codes == [0, 0, 0], [a.lines for a in agents]
    assert _hub_ids(store) == sorted(ids) and len(ids) == 5
    statuses = [json.loads(line)["hub"]["status"] for k in range(3)
                for line in (tmp_path / f"camera{k}" / "spool" / "sent.jsonl").read_text().splitlines()]
    assert sorted(statuses).count("already stored") == 1 and len(statuses) == 6


def test_the_watching_agent_stops_cleanly_on_sigterm(tmp_path):
    """Camera firmware stops the agent with SIGTERM: it finishes the capture in hand and exits 0."""
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    inbox.mkdir()
    hub = start_hub(store)
    argv = ["agent", "--inbox", str(inbox), "--spool", str(tmp_path / "spool"), "--hub", hub.url,
            "--settle", "0", "--poll", "0.2"]
    agent = subprocess.Popen([sys.executable, "-m", "edgeret", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        (staged,) = write_captures(tmp_path / "staging", n_fundus=0, n_oct=1, seed=51)
        capture_id = _sha(staged)
        staged.rename(inbox / staged.name)  # whole, as a camera should hand over files (or use --settle)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _hub_ids(store) != [capture_id]:
            time.sleep(0.1)
        agent.send_signal(signal.SIGTERM)
        out, _ = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
        hub.stop()
    assert agent.returncode == 0, out
    assert _hub_ids(store) == [capture_id] and "watching" in out and "Traceback" not in out
