"""A hub that stops finishes what it acknowledged and what is in flight (issue 24: graceful shutdown):
an upload whose body is still arriving when the stop begins is answered and stored, and the stop
returns once it is decoded. Real hub, a raw socket on loopback."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time

import pytest
from hub_helpers import one_spooled_scan, start_hub, stored_records

from edgeret.link.protocol import CONTENT_TYPE, META_HEADER, SHA_HEADER

pytest.importorskip("pydicom")


def test_a_stop_finishes_the_upload_in_flight_and_its_decoding(tmp_path):
    item = one_spooled_scan(tmp_path)
    stream = item.read_stream()
    store = tmp_path / "store"
    hub = start_hub(store)
    port = int(hub.url.rsplit(":", 1)[1])
    head = (f"PUT /v1/captures/{item.capture_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: {CONTENT_TYPE}\r\nContent-Length: {len(stream)}\r\n"
            f"{SHA_HEADER}: {hashlib.sha256(stream).hexdigest()}\r\n"
            f"{META_HEADER}: {json.dumps(item.meta)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head + stream[: len(stream) // 2])
        time.sleep(0.5)  # the hub is reading the body
        stopper = threading.Thread(target=hub.stop)
        stopper.start()
        time.sleep(1.0)
        still_stopping = stopper.is_alive()  # it waits for the upload
        sock.sendall(stream[len(stream) // 2:])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    stopper.join(120)
    assert still_stopping and not stopper.is_alive()
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
    records = stored_records(store, settled=False)
    assert list(records) == [item.capture_id] and records[item.capture_id]["status"] == "graded"
