"""One upload at the hub: the cheap checks and a durable store before the answer; decode, grade, DICOM
and the PACS outbox after it, in a worker (``edgeret.hub.workers``). No HTTP here (see server.py).

Every refusal is a :class:`Refused` with the HTTP status the camera should see
and one line saying what is wrong; nothing is written for a refused upload. A
capture the hub acknowledged (201) is on disk and in the database as
``stored``; its worker then makes it ``graded`` (DICOM written, outbox row
added) or ``failed`` with the reason (a stream that passes every cheap check
but does not decode), visible through ``GET /v1/captures/ID``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from edgeret.codec.session import CodecSession, stream_stats
from edgeret.errors import EdgeretError, one_line
from edgeret.hub.db.models import DECODED, STORED
from edgeret.hub.dicom_out import (
    JPEG_XL_METHOD,
    LOSSY_METHOD,
    capture_to_dicom,
    capture_uids,
    check_patient,
    pseudonymous_patient_id,
)
from edgeret.hub.store import PRIVATE_FILE, HubStore
from edgeret.hub.stream_check import StreamProblem, check_stream
from edgeret.hub.workers import WorkerPool
from edgeret.link.atomic import write_bytes_atomic
from edgeret.link.protocol import CAPTURE_ID
from edgeret.runtime.grading import Grader

QUEUE_RETRY_AFTER = 10  # seconds, in the 503 of a full queue (the agent honours it)
LOCAL_RETRY = 30.0  # seconds before a worker tries again a capture a local failure stopped
LOCAL = (OSError, SQLAlchemyError)  # the store's disk or its database, not the capture


class Refused(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


# The largest image a camera's header may declare: 4000 x 3000, a 12-megapixel fundus camera. The
# decoder works in tiles (edgeret.codec.session.run_decoder), so what grows with the image is the image
# itself and its latents: peak memory about 0.65 GB + 30 bytes per declared pixel, 1.0 GB at 12 MP
# (python tools/bench_hub_memory.py), per worker. `edgeret serve --max-pixels` sets another limit.
MAX_PIXELS = 4000 * 3000


class Intake:
    def __init__(self, store: HubStore, codec: CodecSession, grader: Grader, *, forward: bool,
                 on_commit: Callable[[str], None] = lambda capture_id: None, max_pixels: int = MAX_PIXELS,
                 log: Callable[[str], None] = print, local_retry: float = LOCAL_RETRY,
                 observe: Callable[[str, float], None] = lambda stage, seconds: None) -> None:
        """``on_commit``: told each capture that reached the outbox; ``observe``: (stage, seconds) of each
        decode and grade (the metrics)."""
        self.store, self.codec, self.grader, self.forward = store, codec, grader, forward
        self.max_pixels, self.on_commit, self.log = max_pixels, on_commit, log
        self.local_retry, self.observe = local_retry, observe
        self.pool: WorkerPool | None = None
        self.counted: Callable[[str], None] = lambda outcome: None  # graded / failed (the metrics)
        self.local_problem: str | None = None  # for health: a capture a local failure holds up
        self._lock = threading.Lock()  # one id's check-then-store at a time (no decoding inside: short)

    def attach(self, pool: WorkerPool) -> None:
        """The worker pool that processes what this intake stores; captures left ``stored`` by an
        earlier run are queued again now (nothing acknowledged is lost)."""
        self.pool = pool
        pool.requeue(self.store.db.ids(STORED) + self.store.db.ids(DECODED))

    # --- before the answer ------------------------------------------------------------------

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
        known = self.store.record(capture_id)  # a re-sent capture is answered without checking it again
        if known is not None:
            return _known(known, capture_id, digest)
        source = f"capture {capture_id[:12]} ({meta.get('source_name', 'unnamed')})"
        try:
            header = check_stream(self.codec, stream, source=source, max_pixels=self.max_pixels)
        except StreamProblem as exc:
            raise Refused(exc.status, str(exc)) from None
        with self._lock:
            known = self.store.record(capture_id)  # another upload of it may have been stored meanwhile
            if known is not None:
                return _known(known, capture_id, digest)
            if self.pool is None or not self.pool.reserve():
                raise Refused(503, f"the hub is busy: {self.pool.queue_limit if self.pool else 0} captures "
                                   f"wait for decoding; retry in {QUEUE_RETRY_AFTER} s", QUEUE_RETRY_AFTER)
            record = self._record(capture_id, stream, digest, meta, camera, patient, header)
            try:
                self.store.save(capture_id, stream, record)
            except BaseException:
                self.pool.release()
                raise
            self.pool.submit(capture_id)
        return 201, _answer(record, "stored")

    def _check_patient(self, capture_id: str, meta: dict[str, Any]) -> dict[str, str]:
        """The camera's patient fields as the DICOM will carry them, or 422 before anything is stored:
        a PACS must not get a silently dropped or altered identity."""
        patient = meta.get("patient")
        try:
            return check_patient({} if patient is None else patient)
        except ValueError as exc:
            raise Refused(422, f"capture {capture_id[:12]}: patient fields: {exc}") from None

    def _record(self, capture_id: str, stream: bytes, digest: str, meta: dict[str, Any],
                camera: str | None, patient: dict[str, str], header) -> dict[str, Any]:
        study_uid, _, sop_uid = capture_uids(capture_id)  # derived from the id: known before the DICOM
        return {
            "capture_id": capture_id, "stream_sha256": digest, "received_at": time.time(),
            "source_name": meta.get("source_name"), "device": meta.get("device"), "camera": camera,
            "modality": header.modality, "captured_at": meta.get("captured_at"),
            "device_quality": meta.get("device_quality"), "findings": None, "patient": patient,
            "codec_choice": meta.get("codec_choice"),  # what the camera sent and why (learned or JPEG XL)
            "stream": stream_stats(len(stream), header),
            "dicom": {"sop_instance_uid": sop_uid, "study_instance_uid": study_uid,
                      "patient_id": patient.get("patient_id") or pseudonymous_patient_id(capture_id)},
            "pacs": {"pending": True} if self.forward else None,
        }

    # --- after the answer (a worker) --------------------------------------------------------

    def process(self, capture_id: str) -> None:
        """Decode, grade, write the DICOM and queue it for the PACS; a stream fault makes the capture
        ``failed`` with its reason, a local fault (disk, database) is retried after ``local_retry``."""
        try:
            record = self.store.record(capture_id)
            if record is None or record.get("status") not in (STORED, DECODED):
                return  # finished already (queued twice: at start and by a retry)
            stream = self.store.stream_path(capture_id).read_bytes()
        except LOCAL as exc:
            return self._local_failure(capture_id, "reading it", exc)
        source = f"capture {capture_id[:12]} ({record.get('source_name') or 'unnamed'})"
        try:
            decoded = self.codec.decode_bytes(stream, source=source)
            self.observe("decode", decoded.seconds)
            self.store.db.mark(capture_id, DECODED)
            begun = time.perf_counter()
            findings = self.grader.grade(decoded.image, decoded.header.modality, source)
            self.observe("grade", time.perf_counter() - begun)
            method = JPEG_XL_METHOD if decoded.header.classical else LOSSY_METHOD
            dicom = capture_to_dicom(decoded.image, capture_id=capture_id, modality=decoded.header.modality,
                                     bit_depth=decoded.header.bit_depth, findings=findings,
                                     patient=record.get("patient") or {},
                                     acquired=_timestamp(record.get("captured_at")),
                                     coded_scale=decoded.header.scale, station=record.get("camera"),
                                     stream_bytes=len(stream), lossy_method=method)
        except (EdgeretError, ValueError) as exc:  # does not decode, cannot be graded or written as DICOM
            return self._failed(capture_id, one_line(exc, 400))
        except LOCAL as exc:  # the 'decoded' mark could not be written
            return self._local_failure(capture_id, "noting it decoded", exc)
        record = {**record, "findings": findings, "decode_ms": round(decoded.seconds * 1000, 2)}
        record.pop("status", None)
        try:
            path = self.store.dicom_path(capture_id)
            write_bytes_atomic(path, dicom, mode=PRIVATE_FILE)
            self.store.db.complete(record, dicom_path=str(path.relative_to(self.store.root)),
                                   forward=self.forward)
        except (*LOCAL, EdgeretError) as exc:  # EdgeretError here: write_bytes_atomic's InputError
            return self._local_failure(capture_id, "writing its DICOM or its row", exc)
        self.local_problem = None
        self.counted("graded")
        said = findings.get("result", findings.get("grade"))
        self.log(f"graded {capture_id[:12]} ({record.get('source_name') or '?'}): "
                 f"{findings.get('task')}: {said}")
        if self.forward:
            self.on_commit(capture_id)

    def _failed(self, capture_id: str, reason: str) -> None:
        self.log(f"failed {capture_id[:12]}: {reason}")
        self.counted("failed")
        try:
            self.store.db.fail(capture_id, reason)
        except LOCAL as exc:
            self._local_failure(capture_id, "noting its failure", exc)

    def _local_failure(self, capture_id: str, doing: str, exc: BaseException) -> None:
        self.local_problem = "a capture could not be finished: a file or the database cannot be written"
        self.log(f"hub error on {capture_id[:12]} while {doing}: {type(exc).__name__}: {one_line(exc, 400)}; "
                 f"trying again in {self.local_retry:g} s")
        if self.pool is not None:
            self.pool.retry_later(capture_id, self.local_retry)

    def problems(self) -> list[str]:
        """For the (unauthenticated) health answer: no ids, paths or messages."""
        return [f"workers: {self.local_problem} (see the hub's log)"] if self.local_problem else []


def _known(known: dict[str, Any], capture_id: str, digest: str) -> tuple[int, dict]:
    if known["stream_sha256"] != digest:
        raise Refused(409, f"capture {capture_id[:12]} is already stored with a different stream")
    return 200, _answer(known, "already stored")


def _answer(record: dict[str, Any], status: str) -> dict[str, Any]:
    keys = ("capture_id", "stream_sha256", "modality", "findings", "dicom")
    return {"status": status, "processing": record.get("status", STORED), **{k: record.get(k) for k in keys}}


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int | float) and 0 < value < 1e11:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    return None
