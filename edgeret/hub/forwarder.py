"""Send the hub's DICOM objects to the PACS, in the background, until the PACS has each one.

The outbox is in the hub's database (``edgeret.hub.db``), so a hub restart resumes where it
stopped; a PACS that is down is retried with back-off; a PACS that refuses an
object for good (4xx) gets it set aside with its reason, not retried forever.
The DICOM UIDs are derived from the capture id, so sending an object twice
(a crash between the PACS's answer and our note of it) stores it once.

Nothing ends the forwarder's thread but ``stop``: a local failure (the disk
full when the record notes a delivery, a DICOM file that cannot be read) is
logged and retried with the same back-off, and ``problem`` says what is wrong
until a delivery succeeds again (``GET /v1/health`` reports it as "degraded").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from edgeret.errors import EdgeretError, one_line
from edgeret.hub.pacs import PacsError, StowClient
from edgeret.hub.store import HubStore
from edgeret.link.retry import Backoff

LOCAL = "a file in the hub's store cannot be written or read (a full disk?)"
LOCAL_ERRORS = (OSError, EdgeretError, SQLAlchemyError)  # the store's files or its database


class PacsForwarder:
    def __init__(self, store: HubStore, client: StowClient, *, backoff: Backoff | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.store, self.client, self.log = store, client, log
        self.backoff = backoff or Backoff(first=1.0, cap=120.0)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.next_attempt = 0.0  # monotonic; a new upload does not shorten a back-off
        self.problem: str | None = None  # what the last pass failed on (for the log)
        self.problem_kind: str | None = None  # the same without details (for health); None once delivered
        self.counted: Callable[[str], None] = lambda outcome: None  # sent / unreachable / refused / local

    def problems(self) -> list[str]:
        """For the (unauthenticated) health answer: why objects are not reaching the PACS now (empty: they
        are). No URLs, paths or messages: those are in the log."""
        if self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
            return ["PACS forwarder: its thread has stopped"]
        return [f"PACS forwarder: {self.problem_kind} (see the hub's log)"] if self.problem_kind else []

    def _failed(self, problem: str, kind: str) -> int:
        """Note a failure, back off, log one line; returns how many objects wait."""
        self.counted("local" if kind in (LOCAL, "internal error") else "unreachable")
        delay = self.backoff.failed()
        self.next_attempt = time.monotonic() + delay
        self.problem, self.problem_kind = problem, kind
        waiting = len(self.store.outbox_ids())
        self.log(f"PACS: {problem}; {waiting} waiting, next try in {delay:.1f} s")
        return waiting

    def notify(self, capture_id: str = "") -> None:
        """A new object is in the outbox: try now rather than at the next poll."""
        self._wake.set()

    def forward_pending(self) -> int:
        """One pass over the outbox; returns how many objects are still waiting."""
        if time.monotonic() < self.next_attempt:
            return len(self.store.outbox_ids())
        for capture_id in self.store.outbox_ids():
            if self._stop.is_set():
                break
            try:
                dicom = self.store.dicom_path(capture_id).read_bytes()
            except OSError as exc:  # one unreadable file must not hold up the others behind it
                self.problem = f"cannot read the DICOM of {capture_id[:12]} ({one_line(exc)})"
                self.problem_kind = LOCAL
                self.log(f"PACS: {self.problem}; skipped this pass")
                continue
            try:
                uid = self.client.store(dicom)
            except PacsError as exc:
                if exc.transient:
                    waiting = self._failed(str(exc), "the PACS is unreachable or busy")
                    self._note_attempt(capture_id, str(exc))
                    return waiting
                try:
                    self.store.pacs_refused(capture_id, str(exc))
                except LOCAL_ERRORS as local:
                    return self._failed(f"cannot set {capture_id[:12]} aside ({one_line(local)})", LOCAL)
                self.counted("refused")
                self.log(f"PACS refused {capture_id[:12]}: {exc}; set aside (outbox row 'refused')")
                continue
            try:
                self.store.forwarded(capture_id, {"sop_instance_uid": uid, "forwarded_at": time.time(),
                                                  "url": self.client.base_url})
            except LOCAL_ERRORS as exc:  # a full disk, a locked database...: the PACS gets it once more
                return self._failed(f"the PACS has {capture_id[:12]} but its record cannot be updated "
                                    f"({one_line(exc)}); sending it again later", LOCAL)
            self.backoff.succeeded()
            self.counted("sent")
            self.problem = self.problem_kind = None
            self.log(f"PACS: stored {capture_id[:12]} as {uid}")
        return len(self.store.outbox_ids())

    def _note_attempt(self, capture_id: str, error: str) -> None:
        """The outbox row counts the failed attempt and keeps its error (for a reader app)."""
        try:
            self.store.db.outbox_retry(capture_id, error, max(0.0, self.next_attempt - time.monotonic()))
        except LOCAL_ERRORS as exc:
            self.log(f"PACS: cannot note the attempt on {capture_id[:12]} ({one_line(exc)})")

    def _loop(self, poll: float) -> None:
        while not self._stop.is_set():
            try:
                waiting = self.forward_pending()
            except Exception as exc:  # a bug must not end deliveries until a restart
                waiting = self._failed(f"forwarder error {type(exc).__name__}: {one_line(exc)}",
                                       "internal error")
            backing_off = waiting and self.backoff.failures
            wait = max(0.05, self.next_attempt - time.monotonic()) if backing_off else poll
            self._wake.wait(timeout=wait)
            self._wake.clear()

    def start(self, poll: float = 5.0) -> None:
        self._thread = threading.Thread(target=self._loop, args=(poll,), name="pacs-forwarder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
