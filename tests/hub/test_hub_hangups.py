"""A camera that hangs up before the hub answers (its timeout ran out while the hub graded)."""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import time

import pytest
from hub_helpers import one_spooled_scan, start_hub, stored_records

from edgeret.camera.upload import Uploader
from edgeret.link.protocol import CONTENT_TYPE, META_HEADER, SHA_HEADER

pytest.importorskip("pydicom")


def _put_then_reset(port: int, capture_id: str, stream: bytes, meta: dict) -> None:
    """The whole request, then a TCP reset before any answer can arrive."""
    head = (f"PUT /v1/captures/{capture_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {CONTENT_TYPE}\r\n"
            f"Content-Length: {len(stream)}\r\n{SHA_HEADER}: {hashlib.sha256(stream).hexdigest()}\r\n"
            f"{META_HEADER}: {json.dumps(meta, sort_keys=True)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + stream)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_a_camera_hanging_up_costs_one_log_line_and_its_retry_finds_the_capture(tmp_path, capfd):
    item = one_spooled_scan(tmp_path)
    store = tmp_path / "store"
    hub = start_hub(store)
    try:
        _put_then_reset(int(hub.url.rsplit(":", 1)[1]), item.capture_id, item.read_stream(), item.meta)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("closed the connection" in line for line in hub.lines):
            time.sleep(0.05)
        retry = Uploader(hub.url).send(item.capture_id, item.read_stream(), item.meta)
    finally:
        hub.stop()
    hung_up = [line for line in hub.lines if "closed the connection" in line]
    assert len(hung_up) == 1 and "before the HTTP 201 answer" in hung_up[0], hub.lines
    assert "Traceback" not in capfd.readouterr().err  # no stack dump in the hub's log for a normal event
    assert retry.kind == "delivered" and retry.receipt["status"] == "already stored", retry
    assert list(stored_records(store)) == [item.capture_id]
