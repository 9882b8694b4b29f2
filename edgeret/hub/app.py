"""Wire one hub together: store, intake, worker pool, HTTP server and (with a PACS) the forwarder."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

from edgeret.codec.session import CodecSession
from edgeret.errors import EdgeretError
from edgeret.hub.intake import LOCAL_RETRY, MAX_PIXELS, Intake
from edgeret.hub.pacs import StowClient
from edgeret.hub.server import HubServer, safe_log
from edgeret.hub.store import HubStore
from edgeret.hub.workers import DEFAULT_QUEUE_LIMIT, DEFAULT_WORKERS, WorkerPool
from edgeret.link.protocol import DEFAULT_PORT
from edgeret.link.retry import Backoff
from edgeret.runtime.grading import Grader


def build_hub(store_dir: str | Path, codec: CodecSession, grader: Grader, *, bind: str = "127.0.0.1",
              port: int = DEFAULT_PORT, pacs: StowClient | None = None, token: str | None = None,
              log: Callable[[str], None] = print, backoff: Backoff | None = None,
              poll: float = 5.0, tls: ssl.SSLContext | None = None,
              cameras: str | Path | None = None, max_pixels: int = MAX_PIXELS,
              database_url: str | None = None, busy_timeout_ms: int | None = None,
              workers: int = DEFAULT_WORKERS, queue_limit: int = DEFAULT_QUEUE_LIMIT,
              local_retry: float = LOCAL_RETRY, **limits: float) -> HubServer:
    """A bound HubServer (OSError if the port is taken); with ``pacs`` its forwarder is running and
    stops with the server (``stop`` / ``close``); with ``tls`` it serves HTTPS; ``cameras``: a file of
    per-camera tokens (``edgeret.hub.cameras``) instead of one shared ``token``; ``max_pixels``: the
    largest image a stream's header may declare (checked before decoding); ``database_url``: where the
    records and the PACS outbox live (a SQLAlchemy URL; default SQLite in the store);
    ``busy_timeout_ms``: how long a database write waits for another's lock; ``workers``: decode and
    grade threads, fed by a queue of at most ``queue_limit`` captures (more: 503 Retry-After);
    ``local_retry``: seconds before a capture a full disk held up is tried again; ``limits``: the HTTP
    server's ``max_connections``, ``request_deadline``, ``idle_timeout`` and ``read_timeout``
    (``HubServer``)."""
    from edgeret.hub.cameras import CameraKeys
    from edgeret.hub.forwarder import PacsForwarder

    if cameras is not None and token is not None:
        raise EdgeretError("give either per-camera tokens (--cameras) or one shared token (--token-file or "
                           "$EDGERET_HUB_TOKEN), not both")
    from edgeret.hub.hub_metrics import HubMetrics

    log = safe_log(log)  # every line: cameras' file names and metadata end up in some of them
    metrics = HubMetrics()
    keys = CameraKeys(cameras, log=log) if cameras is not None else None
    store = HubStore(store_dir, database_url=database_url, busy_timeout_ms=busy_timeout_ms)
    forwarder = PacsForwarder(store, pacs, log=log, backoff=backoff) if pacs else None
    intake = Intake(store, codec, grader, forward=forwarder is not None,
                    on_commit=forwarder.notify if forwarder else lambda capture_id: None,
                    max_pixels=max_pixels, log=log, local_retry=local_retry, observe=metrics.observe)
    intake.counted = lambda outcome: metrics.processed.labels(outcome).inc()
    if forwarder:
        forwarder.counted = lambda outcome: (metrics.pacs_sent.inc() if outcome == "sent"
                                             else metrics.pacs_failures.labels(outcome).inc())
    pool = WorkerPool(intake.process, workers=workers, queue_limit=queue_limit, log=log)
    intake.attach(pool)  # captures an earlier run acknowledged but did not finish are queued again
    metrics.gauges(queue_depth=pool.depth, workers_busy=pool.busy, outbox_depth=store.db.outbox_waiting)

    def on_stop() -> None:
        pool.stop()  # the captures being decoded are finished; queued ones stay 'stored' for the next start
        if forwarder:
            forwarder.stop()
        store.close()

    try:
        server = HubServer(intake, bind, port, log=log, token=token, tls=tls, cameras=keys, on_stop=on_stop,
                           problems=forwarder.problems if forwarder else list, metrics=metrics, **limits)
    except BaseException:
        store.close()  # the port was taken: leave the store free for the next try
        raise
    pool.start()
    if forwarder:
        forwarder.start(poll)
    return server
