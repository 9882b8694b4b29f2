"""The hub on OpenVINO (the intel-x86 profile's first backend) against the hub on ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from hub_helpers import make_agent, start_hub, stored_record, write_captures

from edgeret.camera.upload import Uploader
from edgeret.plugin.host import get_host

pydicom = pytest.importorskip("pydicom")


def test_a_hub_on_openvino_stores_the_same_findings_and_pixels_within_a_grey_level(tmp_path):
    if not get_host().backend("openvino").available().ok:
        pytest.skip("OpenVINO is not installed here")
    write_captures(tmp_path / "inbox", n_fundus=1, n_oct=1)
    agent = make_agent(tmp_path / "inbox", tmp_path / "spool", "http://127.0.0.1:1")
    agent.ingest()
    items = agent.spool.pending()
    assert len(items) == 2
    stores = {}
    for backend in ("onnxruntime", "openvino"):
        stores[backend] = tmp_path / f"store-{backend}"
        hub = start_hub(stores[backend], backend=backend)
        try:
            for item in items:
                outcome = Uploader(hub.url).send(item.capture_id, item.read_stream(), item.meta)
                assert outcome.kind == "delivered", outcome
        finally:
            hub.stop()
    for item in items:
        records = {b: stored_record(s, item.capture_id)
                   for b, s in stores.items()}
        ort, ov = records["onnxruntime"]["findings"], records["openvino"]["findings"]
        assert ort["task"] == ov["task"]
        assert ort.get("result", ort.get("grade")) == ov.get("result", ov.get("grade")), (ort, ov)
        pixels = {b: pydicom.dcmread(s / "dicom" / f"{item.capture_id}.dcm").pixel_array.astype(np.int64)
                  for b, s in stores.items()}
        assert np.abs(pixels["onnxruntime"] - pixels["openvino"]).max() <= 1
