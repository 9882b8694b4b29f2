"""One upload at the hub: check, decode, grade, write DICOM, commit. No HTTP here (see server.py).

Every refusal is a :class:`Refused` with the HTTP status the camera should see
and one line saying what is wrong; nothing is written unless everything
succeeded, so a refused or interrupted upload leaves no trace in the store.
"""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime, timezone
from typing import Any

from edgeret.codec.ert.container import decode_header
from edgeret.codec.session import CodecSession, stream_stats
from edgeret.errors import EdgeretError
from edgeret.hub.dicom_out import (
    JPEG_XL_METHOD,
    LOSSY_METHOD,
    capture_to_dicom,
    capture_uids,
    check_patient,
    pseudonymous_patient_id,
)
from edgeret.hub.store import HubStore
from edgeret.link.protocol import CAPTURE_ID
from edgeret.runtime.grading import Grader


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# The largest image a camera's header may declare: 4000 x 3000, a 12-megapixel fundus camera. The
# decoder works in tiles (edgeret.codec.session.run_decoder), so what grows with the image is the image
# itself and its latents: peak memory about 0.65 GB + 30 bytes per declared pixel, 1.0 GB at 12 MP
# (python tools/bench_hub_memory.py). `edgeret serve --max-pixels` sets another limit.
MAX_PIXELS = 4000 * 3000


class Intake:
    def __init__(self, store: HubStore, codec: CodecSession, grader: Grader, *, forward: bool,
                 on_commit=lambda capture_id: None, max_pixels: int = MAX_PIXELS) -> None:
        self.store, self.codec, self.grader, self.forward = store, codec, grader, forward
        self.max_pixels = max_pixels
        self.on_commit = on_commit
        self._lock = threading.Lock()  # decoding is CPU-bound; one at a time keeps latency predictable

    def receive(self, capture_id: str, stream: bytes, claimed_sha: str,
                meta: dict[str, Any], camera: str | None = None) -> tuple[int, dict]:
        """(HTTP status, JSON answer) for a complete upload; raises Refused. ``camera``: the name the
        sender authenticated as (per-camera tokens), kept in the record and the DICOM."""
        if not CAPTURE_ID.match(capture_id):
            raise Refused(400, f"capture id {capture_id!r} is not 64 lowercase hex digits")
        digest = hashlib.sha256(stream).hexdigest()
        if claimed_sha != digest:
            raise Refused(400, f"capture {capture_id[:12]}: body sha256 {digest[:12]}... does not match the "
                               f"header's {claimed_sha[:12]}... (damaged in transit)")
        patient = self._check_patient(capture_id, meta)
        self._check_declared_size(capture_id, stream, meta)
        with self._lock:
            known = self.store.record(capture_id)
            if known is not None:
                if known["stream_sha256"] != digest:
                    raise Refused(409, f"capture {capture_id[:12]} is already stored with a different stream")
                return 200, _answer(known, "already stored")
            record = self._process(capture_id, stream, digest, meta, camera, patient)
            self.store.commit(capture_id, stream, record.pop("_dicom"), record, forward=self.forward)
        self.on_commit(capture_id)
        return 201, _answer(record, "stored")

    def _check_patient(self, capture_id: str, meta: dict[str, Any]) -> dict[str, str]:
        """The camera's patient fields as the DICOM will carry them, or 422 before any decoding: a PACS
        must not get a silently dropped or altered identity."""
        patient = meta.get("patient")
        try:
            return check_patient({} if patient is None else patient)
        except ValueError as exc:
            raise Refused(422, f"capture {capture_id[:12]}: patient fields: {exc}") from None

    def _check_declared_size(self, capture_id: str, stream: bytes, meta: dict[str, Any]) -> None:
        """Read the header only (no pixels allocated) and refuse an image over the hub's limit: a
        200-byte stream may declare any size, and decoding allocates for what it declares."""
        source = f"capture {capture_id[:12]} ({meta.get('source_name', 'unnamed')})"
        try:
            header, _, _ = decode_header(stream, source=source)
        except EdgeretError as exc:
            raise Refused(422, str(exc)) from None
        if header.height * header.width > self.max_pixels:
            raise Refused(413, f"{source}: declares a {header.width}x{header.height} image, more than "
                               f"this hub's limit of {self.max_pixels} pixels")
        if header.classical:
            from edgeret.codec.classical import unavailable_reason

            reason = unavailable_reason()
            if reason:  # the hub's installation, not the stream, is at fault: the camera keeps it and retries
                raise Refused(503, f"{source}: this hub cannot decode {header.codec} streams yet ({reason})")

    def _process(self, capture_id: str, stream: bytes, digest: str, meta: dict[str, Any],
                 camera: str | None, patient: dict[str, str]) -> dict[str, Any]:
        source = f"capture {capture_id[:12]} ({meta.get('source_name', 'unnamed')})"
        try:
            decoded = self.codec.decode_bytes(stream, source=source)
        except EdgeretError as exc:  # corrupt, truncated, another model's stream...
            raise Refused(422, str(exc)) from None
        modality = decoded.header.modality
        try:
            findings = self.grader.grade(decoded.image, modality, source)
        except EdgeretError as exc:
            raise Refused(422, str(exc)) from None
        acquired = _timestamp(meta.get("captured_at"))
        method = JPEG_XL_METHOD if decoded.header.classical else LOSSY_METHOD
        try:
            dicom = capture_to_dicom(decoded.image, capture_id=capture_id, modality=modality,
                                     bit_depth=decoded.header.bit_depth, findings=findings, patient=patient,
                                     acquired=acquired, coded_scale=decoded.header.scale, station=camera,
                                     stream_bytes=len(stream),
                                     lossy_method=method)
        except ValueError as exc:  # the camera's patient fields (too long, bad laterality...)
            raise Refused(422, f"{source}: cannot write DICOM: {exc}") from None
        study_uid, _, sop_uid = capture_uids(capture_id)  # the ones capture_to_dicom wrote
        return {
            "capture_id": capture_id, "stream_sha256": digest, "received_at": time.time(),
            "source_name": meta.get("source_name"), "device": meta.get("device"), "camera": camera,
            "modality": modality,
            "device_quality": meta.get("device_quality"), "findings": findings, "patient": patient,
            "codec_choice": meta.get("codec_choice"),  # what the camera sent and why (learned or JPEG XL)
            "stream": stream_stats(len(stream), decoded.header),
            "decode_ms": round(decoded.seconds * 1000, 2),
            "dicom": {"sop_instance_uid": sop_uid, "study_instance_uid": study_uid,
                      "patient_id": patient.get("patient_id") or pseudonymous_patient_id(capture_id)},
            "pacs": {"pending": True} if self.forward else None,
            "_dicom": dicom,
        }


def _answer(record: dict[str, Any], status: str) -> dict[str, Any]:
    keys = ("capture_id", "stream_sha256", "modality", "findings", "dicom")
    return {"status": status, **{k: record.get(k) for k in keys}}


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int | float) and 0 < value < 1e11:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    return None
