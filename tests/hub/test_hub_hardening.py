"""The hub against hostile or broken clients (issue 24): strict request framing, bounded metadata,
a deadline per request, a cap on connections, health without folder listings, patient fields checked
before decoding, no forged log lines. Real sockets on loopback, a real hub."""

from __future__ import annotations

import hashlib
import json
import select
import socket
import threading
import time
import urllib.request

import pytest
from hub_helpers import make_agent, one_spooled_scan, start_hub, stored_records, write_captures

from edgeret.camera.upload import Uploader
from edgeret.hub.dicom_out import pseudonymous_patient_id
from edgeret.link.protocol import META_HEADER, SHA_HEADER

pydicom = pytest.importorskip("pydicom")

ID = "ab" * 32
BODY = b"x" * 10


def _port(hub) -> int:
    return int(hub.url.rsplit(":", 1)[1])


def _exchange(port: int, request: bytes, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the hub closes: (status, headers, body) of its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def _put(headers: list[str], body: bytes = BODY) -> bytes:
    sha = hashlib.sha256(body).hexdigest()
    lines = [f"PUT /v1/captures/{ID} HTTP/1.1", "Host: 127.0.0.1", f"{SHA_HEADER}: {sha}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    server = start_hub(store)
    server.store_dir = store
    yield server
    server.stop()


@pytest.mark.parametrize(("headers", "says"), [
    (["Content-Length: 10", "Content-Length: 10"], "Content-Length given more than once"),
    (["Content-Length: 10", "Content-Length: 4"], "Content-Length given more than once"),
    (["Content-Length: 10", "Transfer-Encoding: chunked"], "Transfer-Encoding is not accepted"),
    (["Transfer-Encoding: chunked"], "Transfer-Encoding is not accepted"),
    (["Content-Length: \u00b2"], "is not a number of bytes"),  # str.isdigit() says yes; int() raises
    (["Content-Length: 1_0"], "is not a number of bytes"),
    (["Content-Length: 10", f"{META_HEADER}: {{}}", f"{META_HEADER}: {{}}"], "given more than once"),
    (["Content-Length: 10", f'{META_HEADER}: {{"a": {"[" * 985}{"]" * 985}}}'], "nested"),
    (["Content-Length: 10", f'{META_HEADER}: {{"a": {"[" * 20}{"]" * 20}}}'], "nested more than 8 levels"),
    (["Content-Length: 10", f'{META_HEADER}: {{"a": "{"x" * 20000}"}}'], "more than 16384"),
    (["Content-Length: 10", f"{META_HEADER}: [1, 2]"], "is not a JSON object"),
])
def test_ambiguous_framing_and_hostile_metadata_get_a_400_with_one_line(hub, capfd, headers, says):
    status, answer_headers, body = _exchange(_port(hub), _put(headers))
    error = json.loads(body)["error"]
    assert status == 400 and says in error, (status, body)
    assert "\n" not in error and answer_headers["Connection"] == "close"
    assert "Traceback" not in capfd.readouterr().err
    assert not stored_records(hub.store_dir)  # nothing of it was stored


def test_a_get_with_a_body_is_refused_rather_than_read_as_the_next_request(hub):
    smuggled = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
    request = (b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled)) + smuggled
    status, _, body = _exchange(_port(hub), request)
    assert status == 400 and "has no body" in json.loads(body)["error"]


def _trickle(sockets: list[socket.socket], guard: float) -> list[float]:
    """One byte per socket every 0.1 s until the hub closes each; the time each was closed (inf: open
    when the guard ran out)."""
    start, closed = time.monotonic(), [float("inf")] * len(sockets)
    while time.monotonic() - start < guard and float("inf") in closed:
        for i, sock in enumerate(sockets):
            if closed[i] != float("inf"):
                continue
            try:
                if select.select([sock], [], [], 0)[0] and not sock.recv(4096):
                    raise ConnectionResetError("closed by the hub")
                sock.sendall(b"a")
            except OSError:
                closed[i] = time.monotonic() - start
        time.sleep(0.1)
    return closed


def test_slow_loris_connections_are_cut_at_the_request_deadline_and_others_still_served(tmp_path):
    """The old hub's 60 s timeout was per read: a byte every 0.1 s kept a connection (and its thread)
    for ever. Now the request line, headers and body must arrive within the request deadline."""
    hub = start_hub(tmp_path / "store", request_deadline=1.5, read_timeout=10, idle_timeout=10)
    try:
        sockets = [socket.create_connection(("127.0.0.1", _port(hub)), timeout=5) for _ in range(20)]
        for sock in sockets:
            sock.sendall(f"PUT /v1/captures/{ID} HTTP/1.1\r\nX-Pad: ".encode())
        served = []
        checker = threading.Thread(target=lambda: served.append(
            _exchange(_port(hub), b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0]))
        checker.start()
        closed = _trickle(sockets, guard=30.0)
        checker.join(30)
        for sock in sockets:
            sock.close()
    finally:
        hub.stop()
    print(f"slow connections closed by the hub after {min(closed):.1f}-{max(closed):.1f} s")
    assert float("inf") not in closed, f"{closed.count(float('inf'))} of 20 still open after 30 s"
    assert served == [200]


def test_connections_over_the_cap_get_503_with_retry_after_and_threads_stay_bounded(tmp_path):
    hub = start_hub(tmp_path / "store", max_connections=3, idle_timeout=30)
    port = _port(hub)
    idle = []
    try:
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        turned_away = [_exchange(port, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n") for _ in range(5)]
        workers = [t for t in threading.enumerate() if "process_request_thread" in t.name]
        for sock in idle:
            sock.close()  # their threads end; the slots come back
        deadline, status, busy_polls = time.monotonic() + 30, None, 0
        while time.monotonic() < deadline and status != 200:
            status = _exchange(port, b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0]
            busy_polls += status == 503  # on a busy machine the idle ones' slots come back slowly
            time.sleep(0.05)
        metrics = urllib.request.urlopen(f"{hub.url}/metrics", timeout=10).read().decode()
    finally:
        for sock in idle:
            sock.close()
        hub.stop()
    assert [s for s, _, _ in turned_away] == [503] * 5
    assert all(h["Retry-After"] == "5" and "busy" in json.loads(b)["error"] for _, h, b in turned_away)
    assert len(workers) <= 3, [t.name for t in workers]
    assert status == 200  # once the idle ones left, the hub serves again
    assert any("connections open (the limit)" in line for line in hub.lines)
    assert f"edgeret_hub_connections_turned_away_total {5 + busy_polls}.0" in metrics


def _health(hub) -> dict:
    return json.loads(urllib.request.urlopen(f"{hub.url}/v1/health", timeout=10).read())


@pytest.fixture(scope="module")
def uploaded(tmp_path_factory):
    """A hub that received two captures (no patient fields) from a real agent."""
    root = tmp_path_factory.mktemp("uploaded")
    write_captures(root / "inbox", n_fundus=1, n_oct=1, seed=3)
    hub = start_hub(root / "store")
    agent = make_agent(root / "inbox", root / "spool", hub.url)
    assert agent.run_once(max_wait=120) == 0, agent.lines
    agent.spool.close()
    assert hub.wait_idle(180)  # decoded and graded after the answers
    hub.root = root
    yield hub
    hub.stop()


def test_health_counts_come_from_the_database_not_from_listing_folders(uploaded):
    """The old hub listed every record per health call (0.36 s at 100,000). Structural check: with the
    stream and DICOM folders moved away the counts are unchanged, so the call did not look at them; they
    agree with the database (tests/hub/test_hub_db.py times a count over 100,000 rows)."""
    store = uploaded.root / "store"
    before = _health(uploaded)
    for name in ("streams", "dicom"):
        (store / name).rename(store / f"{name}.away")
    try:
        without_folders = _health(uploaded)
    finally:
        for name in ("streams", "dicom"):
            (store / f"{name}.away").rename(store / name)
    assert before == without_folders == {"status": "ok", "captures": 2, "pacs_waiting": 0, "queued": 0}
    assert before["captures"] == len(stored_records(store))


def test_captures_without_patient_fields_get_distinct_pseudonymous_patient_ids(uploaded):
    store = uploaded.root / "store"
    records = list(stored_records(store).values())
    ids = {r["dicom"]["patient_id"] for r in records}
    assert len(ids) == 2 and all(i.startswith("EDGERET-") for i in ids), ids
    for record in records:
        ds = pydicom.dcmread(store / "dicom" / f"{record['capture_id']}.dcm")
        assert ds.PatientID == record["dicom"]["patient_id"] == pseudonymous_patient_id(record["capture_id"])
        assert ds.PatientID != "ANONYMOUS"
        uncompressed = ds.Rows * ds.Columns * ds.SamplesPerPixel * ds.BitsStored / 8
        assert float(ds.LossyImageCompressionRatio) == pytest.approx(uncompressed / record["stream"]["bytes"],
                                                                     abs=0.01)


@pytest.mark.parametrize(("patient", "says"), [
    ("Jane Doe", "patient must be an object"),
    (["Jane"], "patient must be an object"),
    ({"patient_id": 12345}, "patient_id must be a string"),
    ({"patient_id": "x" * 65}, "at most 64 printable"),
    ({"patient_name": "Doe\nJane"}, "at most 64 printable"),
    ({"laterality": "left"}, "laterality must be 'L' or 'R'"),
    ({"birth_date": "19700101"}, "unknown patient keys"),
])
def test_malformed_patient_fields_are_refused_before_decoding(tmp_path, uploaded, patient, says):
    """A truncated stream: had the hub decoded it, it would say so; it names the patient field instead.
    (The old hub stored a capture whose patient was a string, silently without the patient.)"""
    item = one_spooled_scan(tmp_path)
    stream = item.read_stream()[:-40]
    sent = Uploader(uploaded.url).send(hashlib.sha256(stream).hexdigest(), stream,
                                       {**item.meta, "patient": patient})
    assert sent.kind == "rejected" and "HTTP 422" in sent.detail and says in sent.detail, sent
    assert "patient fields" in sent.detail and "truncated" not in sent.detail


def test_camera_text_cannot_forge_log_lines(uploaded):
    """A newline (or an escape sequence) in what a camera sends is escaped in every log line."""
    item_id = "cd" * 32
    forged = "photo.png\nrefused /v1/captures/x: HTTP 401: fake line\x1b[2J"
    sent = Uploader(uploaded.url).send(item_id, b"not a stream", {"source_name": forged})
    assert sent.kind == "rejected"
    lines = [line for line in uploaded.lines if "photo.png" in line]
    assert lines and all("\n" not in line and "\x1b" not in line for line in uploaded.lines)
    assert "photo.png\\nrefused" in lines[0] and "\\x1b[2J" in lines[0]
