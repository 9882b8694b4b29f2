"""The agent's spool and the hub's store on real files: commit order, recovery after a crash."""

from __future__ import annotations

import hashlib
import os

import pytest

from edgeret.camera.spool import Spool
from edgeret.errors import InputError
from edgeret.hub.store import HubStore


def _id(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def test_spool_is_fifo_and_put_is_idempotent(tmp_path):
    spool = Spool(tmp_path)
    assert spool.put(_id(1), b"one", {"source_name": "a.png"})
    assert spool.put(_id(2), b"two", {"source_name": "b.png"})
    assert not spool.put(_id(1), b"one", {"source_name": "a.png"})  # a re-run after a crash
    items = spool.pending()
    assert [i.capture_id for i in items] == [_id(1), _id(2)]
    assert items[0].read_stream() == b"one" and items[0].meta["stream_bytes"] == 3
    spool.ack(_id(1))
    assert [i.capture_id for i in spool.pending()] == [_id(2)]
    assert not (tmp_path / "queue" / f"{_id(1)}.ert").exists()


def test_spool_recovers_from_an_interrupted_put(tmp_path):
    spool = Spool(tmp_path)
    spool.put(_id(1), b"kept", {})
    # a crash after the stream and before its record, and one inside a temp-file write
    (tmp_path / "queue" / f"{_id(2)}.ert").write_bytes(b"orphan")
    (tmp_path / "queue" / f".{_id(3)}.ert.abc.tmp").write_bytes(b"half")
    spool.close()  # the crashed agent's lock died with it
    again = Spool(tmp_path)
    assert [i.capture_id for i in again.pending()] == [_id(1)]
    assert sorted(p.name for p in (tmp_path / "queue").iterdir()) == [f"{_id(1)}.ert", f"{_id(1)}.json"]


def test_a_rejected_stream_is_kept_with_its_reason(tmp_path):
    spool = Spool(tmp_path)
    spool.put(_id(1), b"bytes", {})
    spool.reject(_id(1), "hub: HTTP 422: corrupt")
    assert spool.pending() == [] and spool.rejected_ids() == [_id(1)]
    assert (tmp_path / "rejected" / f"{_id(1)}.ert").read_bytes() == b"bytes"
    assert "HTTP 422" in (tmp_path / "rejected" / f"{_id(1)}.reason.txt").read_text()


def test_spool_refuses_ids_that_could_escape_its_folder(tmp_path):
    with pytest.raises(ValueError, match="capture id"):
        Spool(tmp_path).put("../../etc/passwd", b"x", {})


def test_hub_store_commits_its_row_last_and_recovers_half_commits(tmp_path):
    store = HubStore(tmp_path)
    store.save(_id(1), b"stream", {"stream_sha256": "x"})
    store.db.complete({**store.record(_id(1)), "findings": {}}, dicom_path="dicom/x.dcm", forward=True)
    assert store.ids() == [_id(1)] and store.outbox_ids() == [_id(1)]
    # a crash after the stream and DICOM of capture 2 were written, before its row
    (tmp_path / "streams" / f"{_id(2)}.ert").write_bytes(b"s")
    (tmp_path / "dicom" / f"{_id(2)}.dcm").write_bytes(b"d")
    store.close()
    again = HubStore(tmp_path)
    assert again.ids() == [_id(1)] and again.outbox_ids() == [_id(1)]
    assert sorted(p.name for p in (tmp_path / "streams").iterdir()) == [f"{_id(1)}.ert"]
    again.forwarded(_id(1), {"sop_instance_uid": "1.2.3"})
    assert again.outbox_ids() == []
    record = again.record(_id(1))
    assert record["pacs"]["sop_instance_uid"] == "1.2.3" and record["stream_sha256"] == "x"


def test_a_second_agent_or_hub_on_the_same_folder_stops_before_touching_it(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.put(_id(1), b"kept", {})
    (tmp_path / "spool" / "queue" / f"{_id(2)}.ert").write_bytes(b"a put in flight")  # record not yet
    with pytest.raises(InputError, match=f"this spool is in use by process {os.getpid()}"):
        Spool(tmp_path / "spool")
    # the second one's recover never ran: the first agent's write in flight is still there
    assert (tmp_path / "spool" / "queue" / f"{_id(2)}.ert").read_bytes() == b"a put in flight"
    store = HubStore(tmp_path / "store")
    with pytest.raises(InputError, match="this hub store is in use by process"):
        HubStore(tmp_path / "store")
    spool.close()
    store.close()
    assert [i.capture_id for i in Spool(tmp_path / "spool").pending()] == [_id(1)]
    assert HubStore(tmp_path / "store").ids() == []
