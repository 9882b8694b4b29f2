"""Agent -> hub -> a real Orthanc PACS over DICOMweb, including a PACS outage."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from hub_helpers import make_agent, pacs_waiting, start_hub, stored_record, wait_for, write_captures

pydicom = pytest.importorskip("pydicom")



def _record(store: Path, capture_id: str) -> dict:
    return stored_record(store, capture_id)


def _from_orthanc(orthanc, sop_uid: str):
    req = urllib.request.Request(f"{orthanc.url}/tools/lookup", data=sop_uid.encode(), method="POST")
    (found,) = json.loads(urllib.request.urlopen(req, timeout=10).read())
    data = urllib.request.urlopen(f"{orthanc.url}/instances/{found['ID']}/file", timeout=10).read()
    import io

    return pydicom.dcmread(io.BytesIO(data))


def test_the_hub_forwards_every_capture_to_the_pacs_and_rides_out_an_outage(orthanc, tmp_path):
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    first = write_captures(inbox, n_fundus=1, n_oct=1, seed=11)
    ids = [hashlib.sha256(p.read_bytes()).hexdigest() for p in first]
    hub = start_hub(store, pacs=orthanc.dicomweb)
    try:
        agent = make_agent(inbox, tmp_path / "spool", hub.url)
        assert agent.run_once(max_wait=30) == 0, agent.lines
        assert wait_for(lambda: all(_record(store, i).get("pacs", {}).get("sop_instance_uid") for i in ids))
        for capture_id in ids:
            record = _record(store, capture_id)
            assert record["pacs"]["sop_instance_uid"] == record["dicom"]["sop_instance_uid"]
            in_pacs = _from_orthanc(orthanc, record["dicom"]["sop_instance_uid"])
            ours = pydicom.dcmread(store / "dicom" / f"{capture_id}.dcm")
            np.testing.assert_array_equal(in_pacs.pixel_array, ours.pixel_array)
            assert in_pacs.ImageComments == ours.ImageComments
            assert record["findings"]["task"] in ours.ImageComments

        orthanc.stop()  # the PACS goes down; the hub keeps accepting and keeps the objects
        (late,) = write_captures(tmp_path / "more", n_fundus=0, n_oct=1, seed=12)
        late_id = hashlib.sha256(late.read_bytes()).hexdigest()
        late.rename(inbox / "late.png")
        assert agent.run_once(max_wait=30) == 0, agent.lines
        assert wait_for(lambda: any("PACS:" in line and "waiting" in line for line in hub.lines), 20)
        health = json.loads(urllib.request.urlopen(f"{hub.url}/v1/health", timeout=5).read())
        assert health["pacs_waiting"] == 1 and pacs_waiting(store) == [late_id]

        orthanc.start()  # back: the outbox drains on its own
        assert wait_for(lambda: not pacs_waiting(store), 30), hub.lines[-5:]
        uid = _record(store, late_id)["pacs"]["sop_instance_uid"]
        assert _from_orthanc(orthanc, uid).SOPInstanceUID == uid
    finally:
        hub.stop()


def test_a_restarted_hub_forwards_what_it_could_not_before(orthanc, tmp_path):
    """The outbox is in the hub's database: objects that waited for a PACS outage survive a hub restart."""
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    (scan,) = write_captures(inbox, n_fundus=0, n_oct=1, seed=13)
    capture_id = hashlib.sha256(scan.read_bytes()).hexdigest()
    orthanc.stop()
    try:
        hub = start_hub(store, pacs=orthanc.dicomweb)
        try:
            assert make_agent(inbox, tmp_path / "spool", hub.url).run_once(max_wait=30) == 0
            assert wait_for(lambda: any("PACS:" in line for line in hub.lines), 20)
        finally:
            hub.stop()
        assert pacs_waiting(store) == [capture_id]
    finally:
        orthanc.start()
    again = start_hub(store, pacs=orthanc.dicomweb)  # a new process would do the same: all state is on disk
    try:
        assert wait_for(lambda: not pacs_waiting(store), 30), again.lines[-5:]
    finally:
        again.stop()
    uid = _record(store, capture_id)["pacs"]["sop_instance_uid"]
    assert _from_orthanc(orthanc, uid).SOPInstanceUID == uid
