"""A fixed number of worker threads and a bounded queue: decode -> grade -> DICOM -> outbox, off the
request path (``edgeret serve --workers N --queue-limit N``).

The intake reserves a place in the queue *before* it stores a stream, so a
capture it acknowledges always has a place (a full queue is a 503 with
Retry-After, and nothing is stored). Captures found ``stored`` at start (the
hub stopped before their worker finished) are queued beyond the limit: they
were acknowledged already. ``stop`` lets the workers finish the capture each
is on; what is still queued stays ``stored`` in the database and is queued
again at the next start.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from edgeret.errors import one_line

DEFAULT_WORKERS = 1
DEFAULT_QUEUE_LIMIT = 32


class WorkerPool:
    def __init__(self, process: Callable[[str], None], *, workers: int = DEFAULT_WORKERS,
                 queue_limit: int = DEFAULT_QUEUE_LIMIT, log: Callable[[str], None] = print) -> None:
        if workers < 1 or queue_limit < 1:
            raise ValueError("workers and queue_limit must be at least 1")
        self.process, self.workers, self.queue_limit, self.log = process, workers, queue_limit, log
        self._queue: deque[str] = deque()
        self._reserved = 0  # places promised to intakes that are still storing
        self._busy = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._timers: set[threading.Timer] = set()

    def reserve(self) -> bool:
        """A place in the queue for one capture (False: full, answer 503). ``submit`` or ``release``."""
        with self._cond:
            if self._stopping or len(self._queue) + self._reserved >= self.queue_limit:
                return False
            self._reserved += 1
            return True

    def release(self) -> None:
        """The reserved place is not needed (the capture was not stored)."""
        with self._cond:
            self._reserved -= 1

    def submit(self, capture_id: str) -> None:
        """Queue a capture into its reserved place."""
        with self._cond:
            self._reserved -= 1
            self._queue.append(capture_id)
            self._cond.notify()

    def requeue(self, capture_ids: Iterable[str]) -> None:
        """Queue acknowledged captures beyond the limit (those found unfinished at start)."""
        with self._cond:
            self._queue.extend(capture_ids)
            self._cond.notify_all()

    def retry_later(self, capture_id: str, delay: float) -> None:
        """Queue it again after ``delay`` seconds (a local failure: a full disk, a locked database)."""
        def again() -> None:
            self._timers.discard(timer)
            if not self._stopping:
                self.requeue([capture_id])

        timer = threading.Timer(delay, again)
        timer.daemon = True
        self._timers.add(timer)
        timer.start()

    def depth(self) -> int:
        """Captures waiting for a worker (not counting those being processed)."""
        with self._cond:
            return len(self._queue)

    def busy(self) -> int:
        with self._cond:
            return self._busy

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._busy and not self._reserved

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing is queued or in progress (for tools and tests)."""
        deadline = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def start(self) -> WorkerPool:
        for n in range(self.workers):
            thread = threading.Thread(target=self._run, name=f"hub-worker-{n + 1}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 120.0) -> None:
        """Finish the captures in progress (up to ``timeout``); queued ones wait for the next start."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for timer in list(self._timers):
            timer.cancel()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                capture_id = self._queue.popleft()
                self._busy += 1
            try:
                self.process(capture_id)
            except Exception as exc:  # a bug must not end the worker: the capture stays 'stored'
                self.log(f"hub: worker error on {capture_id[:12]}: {type(exc).__name__}: "
                         f"{one_line(exc, 300)}")
            finally:
                with self._cond:
                    self._busy -= 1
