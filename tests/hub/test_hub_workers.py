"""Decoding and grading off the request path (issue 24): the hub answers once the stream is stored, a
fixed pool of workers with a bounded queue does the rest, a full queue is a 503 with Retry-After, and
what the hub acknowledged survives a stop. Real hub, real HTTP on loopback, real codec and graders."""

from __future__ import annotations

import hashlib
import http.client
import json
import urllib.request

import pytest
from hub_helpers import make_agent, start_hub, stored_records, write_captures

from edgeret.link.protocol import CONTENT_TYPE, META_HEADER, SHA_HEADER

pytest.importorskip("pydicom")


def _spooled(tmp_path, n_fundus: int, seed: int):
    """Captures graded, encoded and spooled by a real agent (not uploaded)."""
    write_captures(tmp_path / "inbox", n_fundus=n_fundus, n_oct=0, seed=seed)
    agent = make_agent(tmp_path / "inbox", tmp_path / "spool", "http://127.0.0.1:1")
    agent.ingest()
    items = agent.spool.pending()
    agent.spool.close()
    return items


def _put(url: str, item) -> tuple[int, dict[str, str], dict]:
    stream = item.read_stream()
    host, port = url.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("PUT", f"/v1/captures/{item.capture_id}", body=stream,
                     headers={"Content-Type": CONTENT_TYPE, SHA_HEADER: hashlib.sha256(stream).hexdigest(),
                              META_HEADER: json.dumps(item.meta)})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()


def _get(url: str, capture_id: str) -> dict:
    return json.loads(urllib.request.urlopen(f"{url}/v1/captures/{capture_id}", timeout=10).read())


def test_the_answer_comes_before_decoding_and_a_full_queue_is_503_with_retry_after(tmp_path):
    """One worker, a queue of one: of five uploads sent at once, the first is being decoded, the second
    waits, the others are refused with 503 + Retry-After and nothing of them is stored; each accepted
    one is answered before it is graded (no findings in the answer) and graded after."""
    items = _spooled(tmp_path, n_fundus=5, seed=40)
    store = tmp_path / "store"
    hub = start_hub(store, workers=1, queue_limit=1)
    try:
        answers = [_put(hub.url, item) for item in items]
        busy = [(s, h, b) for s, h, b in answers if s == 503]
        accepted = [b for s, _, b in answers if s == 201]
        health = json.loads(urllib.request.urlopen(f"{hub.url}/v1/health", timeout=10).read())
        assert hub.wait_idle(120)
        later = {b["capture_id"]: _get(hub.url, b["capture_id"]) for b in accepted}
        retried = []
        for i, (status, _, _) in enumerate(answers):
            if status == 503:  # a camera's retry, once the queue has room again
                retried.append(_put(hub.url, items[i]))
                hub.wait_idle(120)
    finally:
        hub.stop()
    assert len(accepted) >= 2 and busy, [s for s, _, _ in answers]  # decode is ~0.4 s, a PUT milliseconds
    assert all(h["Retry-After"] == "10" and "busy" in b["error"] for _, h, b in busy)
    assert all(b["findings"] is None and b["processing"] == "stored" and b["dicom"]["sop_instance_uid"]
               for b in accepted)
    assert health["queued"] >= 1
    assert all(r["status"] == "graded" and r["findings"]["task"] == "dr-grade" for r in later.values())
    assert [s for s, _, _ in retried] == [201] * len(busy)  # the cameras' retries are stored
    assert sorted(stored_records(store)) == sorted(i.capture_id for i in items)


def test_captures_acknowledged_before_a_stop_are_decoded_at_the_next_start(tmp_path):
    """A hub stopped at once (no drain) leaves queued captures 'stored'; a hub started on the same store
    queues them again: nothing acknowledged is lost."""
    items = _spooled(tmp_path, n_fundus=4, seed=50)
    store = tmp_path / "store"
    hub = start_hub(store, workers=1, queue_limit=8)
    try:
        answers = [_put(hub.url, item)[0] for item in items]
    finally:
        hub.stop_at_once()  # the worker finishes the capture it is on; the queue stays in the database
    left = {i: r["status"] for i, r in stored_records(store, settled=False).items()}
    again = start_hub(store, workers=2)
    try:
        records = stored_records(store)
    finally:
        again.stop()
    assert answers == [201] * 4
    assert sorted(left) == sorted(i.capture_id for i in items) and "stored" in left.values(), left
    assert {r["status"] for r in records.values()} == {"graded"} and len(records) == 4
    assert len(list((store / "dicom").iterdir())) == 4


def test_kill_9_of_the_hub_after_its_answers_loses_nothing(tmp_path):
    """`edgeret serve` killed with SIGKILL right after acknowledging four captures (their decoding still
    queued): the hub started again on the store decodes every one, once."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from net_faults import free_port

    from edgeret.link.protocol import wait_for_hub

    items = _spooled(tmp_path, n_fundus=4, seed=60)
    store, port = tmp_path / "store", free_port()
    repo = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-m", "edgeret", "serve", "--store", str(store), "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    url = f"http://127.0.0.1:{port}"
    hub = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=repo)
    try:
        assert wait_for_hub(url, timeout=120)
        answers = [_put(url, item)[0] for item in items]
    finally:
        hub.send_signal(signal.SIGKILL)
        hub.wait(timeout=60)
    left = {r["status"] for r in stored_records(store, settled=False).values()}
    again = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=repo)
    try:
        assert wait_for_hub(url, timeout=120)
        records = stored_records(store)
        resent = _put(url, items[0])[2]  # the camera had its answer; a resend is still known
    finally:
        again.terminate()
        again.wait(timeout=120)
    assert answers == [201] * 4 and left & {"stored", "decoded"}, left
    assert sorted(records) == sorted(i.capture_id for i in items)
    assert {r["status"] for r in records.values()} == {"graded"}
    assert len(list((store / "dicom").iterdir())) == len(list((store / "streams").iterdir())) == 4
    assert resent["status"] == "already stored" and resent["processing"] == "graded"
