"""Patient data on disk (file modes) and a full disk at the hub (issue 24), with real processes, real
files and a real small file system (a tmpfs whose inode count is set so that exactly the Nth new file
fails with ENOSPC, as on a full disk)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from hub_helpers import one_spooled_scan, start_hub, stored_record, wait_for, write_captures

from edgeret.camera.upload import Uploader

pytest.importorskip("pydicom")

REPO = Path(__file__).resolve().parents[2]


def _modes(root: Path) -> dict[str, str]:
    """'folder/' or 'file' -> octal mode, for everything under root but the lock file."""
    return {str(p.relative_to(root)) + ("/" if p.is_dir() else ""): oct(p.stat().st_mode & 0o777)
            for p in [root, *root.rglob("*")] if p.name != ".lock"}


def _health(hub) -> dict:
    return json.loads(urllib.request.urlopen(f"{hub.url}/v1/health", timeout=10).read())



def test_the_hub_store_and_the_spool_are_private_whatever_the_umask(tmp_path):
    """0600 files in 0700 folders; a store an older hub made 0755 is tightened when opened."""
    store, spool = tmp_path / "store", tmp_path / "spool"
    (store / "streams").mkdir(parents=True, mode=0o755)
    os.chmod(store, 0o755)
    old_umask = os.umask(0o022)
    try:
        item = one_spooled_scan(tmp_path)  # the agent's spool, written by a real agent
        spool_modes = _modes(spool)
        (spool / "queue").rename(tmp_path / "queue")  # keep it for the upload below
        hub = start_hub(store)
        try:
            sent = Uploader(hub.url).send(item.capture_id, (tmp_path / "queue" / f"{item.capture_id}.ert")
                                          .read_bytes(), item.meta)
            running = _modes(store)  # with the database's -wal and -shm files, which go at its close
        finally:
            hub.stop()
    finally:
        os.umask(old_umask)
    assert sent.kind == "delivered"
    store_modes = _modes(store)
    for modes in (spool_modes, store_modes, running):
        assert {m for name, m in modes.items() if name.endswith("/") or name == "."} == {"0o700"}, modes
        assert {m for name, m in modes.items() if not name.endswith("/") and name != "."} == {"0o600"}, modes
    assert f"dicom/{item.capture_id}.dcm" in store_modes and "hub.db" in store_modes
    assert "hub.db-wal" in running and "hub.db-shm" in running


def test_edgeret_serve_and_agent_run_with_a_private_umask(tmp_path):
    """What the programs create beyond the stores (the agent's inbox/done, sent.jsonl...) is private too;
    the hub warns at start that it has no token."""
    write_captures(tmp_path / "inbox", n_fundus=0, n_oct=1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    agent = subprocess.run([sys.executable, "-m", "edgeret", "agent", "--inbox", str(tmp_path / "inbox"),
                            "--spool", str(tmp_path / "spool"), "--hub", "http://127.0.0.1:9", "--once",
                            "--max-wait", "0", "--settle", "0"], capture_output=True, text=True, env=env,
                           timeout=300, cwd=REPO)
    assert agent.returncode == 3, agent.stdout + agent.stderr  # queued: the hub is not there
    done = tmp_path / "inbox" / "done"
    assert oct(done.stat().st_mode & 0o777) == "0o700"
    hub = subprocess.Popen([sys.executable, "-m", "edgeret", "serve", "--store", str(tmp_path / "store"),
                            "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=env, cwd=REPO)
    try:
        first, second = hub.stdout.readline(), hub.stdout.readline()
        status = Path(f"/proc/{hub.pid}/status").read_text()
    finally:
        hub.terminate()
        hub.wait(timeout=60)
    assert "listening on" in first, first
    assert "Umask:\t0077" in status
    assert "WARNING: no camera token" in second, second  # said at start: anyone on the port may upload


@pytest.fixture
def tiny_fs(tmp_path):
    """A tmpfs of its own, whose number of files can be limited (``_allow_new_files``)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,nr_inodes=100000", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _allow_new_files(fs: Path, n: int) -> None:
    """From now on, exactly ``n`` more files (inodes) fit on ``fs``: the next one fails with ENOSPC."""
    st = os.statvfs(fs)
    used = st.f_files - st.f_ffree
    subprocess.run(["mount", "-o", f"remount,nr_inodes={used + n}", str(fs)], check=True)


def test_a_full_disk_at_the_stream_leaves_nothing_queued_and_the_retry_is_stored(tiny_fs, tmp_path):
    """The old hub answered 500 but still sent the DICOM to the PACS, and answered every retry '500
    KeyError: stream_sha256' for ever; its 500 showed the store's path to the camera. Now the database row
    is the commit mark: a stream that cannot be written leaves no row, no outbox entry and no file."""
    item = one_spooled_scan(tmp_path)
    store = tiny_fs / "store"
    hub = start_hub(store, pacs="http://127.0.0.1:9/dicom-web")  # forwarding on; this PACS never answers
    try:
        _allow_new_files(tiny_fs, 0)  # not even the stream fits
        failed = Uploader(hub.url).send(item.capture_id, item.read_stream(), item.meta)
        after_failure = _health(hub)
        left = sorted(str(p.relative_to(store)) for p in store.rglob("*")
                      if p.is_file() and p.parent.name in ("streams", "dicom"))
        _allow_new_files(tiny_fs, 1000)  # space again
        retry = Uploader(hub.url).send(item.capture_id, item.read_stream(), item.meta)
        record = stored_record(store, item.capture_id)
        after_retry = _health(hub)
    finally:
        hub.stop()
    assert failed.kind == "retry" and "HTTP 500" in failed.detail and "hub error" in failed.detail, failed
    assert str(tiny_fs) not in failed.detail and "/" not in failed.detail.split("HTTP 500")[1]
    error_id = failed.detail.split("hub error ")[1].split(":")[0]
    logged = [line for line in hub.lines if f"hub error {error_id}" in line]
    assert logged and "No space left on device" in logged[0] and str(store) in logged[0]
    assert left == [] and after_failure["pacs_waiting"] == 0 and after_failure["captures"] == 0
    assert retry.kind == "delivered" and retry.receipt["status"] == "stored", retry
    assert record["stream_sha256"] == retry.receipt["stream_sha256"] and record["status"] == "graded"
    assert (after_retry["captures"], after_retry["pacs_waiting"], after_retry["queued"]) == (1, 1, 0)


def test_a_full_disk_at_the_dicom_holds_the_capture_until_there_is_space(tiny_fs, tmp_path):
    """The capture was acknowledged (its stream and row are safe) when the worker cannot write its DICOM:
    it stays unfinished, health says 'degraded' without a path, and the worker tries again until it can."""
    item = one_spooled_scan(tmp_path)
    store = tiny_fs / "store"
    hub = start_hub(store, local_retry=0.5)
    try:
        _allow_new_files(tiny_fs, 1)  # the stream fits; the DICOM does not
        sent = Uploader(hub.url).send(item.capture_id, item.read_stream(), item.meta)
        assert wait_for(lambda: any("while writing its DICOM" in line for line in hub.lines), 60), hub.lines
        held = stored_record(store, item.capture_id, settled=False)
        degraded = _health(hub)
        _allow_new_files(tiny_fs, 1000)
        record = stored_record(store, item.capture_id)
        healthy = _health(hub)
    finally:
        hub.stop()
    assert sent.kind == "delivered" and sent.receipt["status"] == "stored", sent
    assert held["status"] in ("stored", "decoded") and degraded["status"] == "degraded", (held, degraded)
    assert degraded["problems"] == ["workers: a capture could not be finished: a file or the database "
                                    "cannot be written (see the hub's log)"]
    assert record["status"] == "graded" and record["findings"]["task"] == "quality-oct"
    assert healthy == {"status": "ok", "captures": 1, "pacs_waiting": 0, "queued": 0}
    assert (store / "dicom" / f"{item.capture_id}.dcm").is_file()


def test_the_forwarder_survives_a_locked_database_after_the_pacs_took_the_object(orthanc, tmp_path):
    """The old forwarder thread died when it could not note a delivery (a full disk): nothing more reached
    the PACS until a restart and /v1/health still said "ok". Now the note is a database write, and another
    process holding the database's write lock (a reader app's long transaction, a backup) makes it fail
    the same way: health says "degraded" and the forwarder retries until it can note it."""
    import sqlite3

    item = one_spooled_scan(tmp_path)
    store = tmp_path / "store"
    orthanc.stop()  # the object waits in the outbox while the lock is taken
    hub = start_hub(store, pacs=orthanc.dicomweb, busy_timeout_ms=300)
    blocker = None
    try:
        sent = Uploader(hub.url).send(item.capture_id, item.read_stream(), item.meta)
        assert sent.kind == "delivered", sent
        assert hub.wait_idle(120)  # graded, its DICOM in the outbox (the answer came before decoding)
        blocker = sqlite3.connect(store / "hub.db", timeout=10, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the write lock, held as another process's transaction would
        orthanc.start()
        assert wait_for(lambda: any("its record cannot be updated" in line for line in hub.lines),
                        60), hub.lines
        degraded = _health(hub)
        sop_uid = sent.receipt["dicom"]["sop_instance_uid"]
        lookup = urllib.request.Request(f"{orthanc.url}/tools/lookup", data=sop_uid.encode(), method="POST")
        in_pacs = json.loads(urllib.request.urlopen(lookup, timeout=10).read())
        blocker.execute("ROLLBACK")
        noted = wait_for(lambda: (stored_record(store, item.capture_id).get("pacs") or {}).get(
            "sop_instance_uid"), 60)
        healthy = _health(hub)
    finally:
        if blocker is not None:
            blocker.close()
        hub.stop()
        orthanc.start()
    assert degraded["status"] == "degraded" and degraded["pacs_waiting"] == 1, degraded
    assert degraded["problems"] == ["PACS forwarder: a file in the hub's store cannot be written or read "
                                    "(a full disk?) (see the hub's log)"]  # no paths: health is public
    assert len(in_pacs) == 1  # the PACS had it all along
    assert noted and healthy == {"status": "ok", "captures": 1, "pacs_waiting": 0, "queued": 0}
    assert stored_record(store, item.capture_id)["pacs"]["sop_instance_uid"] == sop_uid


def test_the_hub_warns_about_no_token_no_tls_off_loopback_and_a_readable_key(tmp_path):
    from edgeret.cli.upload_cmd import serve_warnings

    key = tmp_path / "hub.key"
    key.write_text("not really a key")
    os.chmod(key, 0o644)
    assert serve_warnings("127.0.0.1", token=True, tls=False, key=None) == []
    said = serve_warnings("0.0.0.0", token=False, tls=True, key=key)
    assert len(said) == 2 and "no camera token" in said[0] and "readable by other users" in said[1]
    os.chmod(key, 0o600)
    (said,) = serve_warnings("10.0.0.5", token=True, tls=False, key=None)
    assert "without TLS" in said
    assert serve_warnings("::1", token=True, tls=True, key=key) == []
