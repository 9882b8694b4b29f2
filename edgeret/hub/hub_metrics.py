"""The hub's Prometheus metrics (``GET /metrics``): counts and timings only, nothing of a patient, no
capture ids, no paths. One registry per hub (tests run several hubs in one process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# why an upload was refused, by HTTP status (a fixed set: label values never come from a request)
REFUSAL_REASONS = {400: "malformed_request", 401: "unauthorized", 404: "not_found", 408: "too_slow",
                   409: "id_clash", 411: "no_length", 413: "too_large", 422: "invalid_stream",
                   500: "hub_error", 503: "busy"}
# decoding a 512x512 fundus takes ~0.4 s, a 1024x640 B-scan 1.3-2 s on two shared cores
SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


class HubMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.received = Counter("edgeret_hub_captures_received", "PUT requests for a capture",
                                registry=registry)
        self.stored = Counter("edgeret_hub_captures_stored", "captures stored (201)", registry=registry)
        self.refused = Counter("edgeret_hub_captures_refused", "uploads refused, by reason", ["reason"],
                               registry=registry)
        self.processed = Counter("edgeret_hub_captures_processed", "captures a worker finished, by outcome",
                                 ["outcome"], registry=registry)
        self.seconds = Histogram("edgeret_hub_stage_seconds", "time of each decode and grade", ["stage"],
                                 buckets=SECONDS, registry=registry)
        self.turned_away = Counter("edgeret_hub_connections_turned_away", "connections over the cap (503)",
                                   registry=registry)
        self.pacs_sent = Counter("edgeret_hub_pacs_sent", "objects the PACS confirmed", registry=registry)
        self.pacs_failures = Counter("edgeret_hub_pacs_failures", "failed PACS sends, by kind", ["kind"],
                                     registry=registry)
        for reason in REFUSAL_REASONS.values():
            self.refused.labels(reason)  # present at 0 from the start: a rate over a missing series is empty
        for outcome in ("graded", "failed"):
            self.processed.labels(outcome)
        for kind in ("unreachable", "refused", "local"):
            self.pacs_failures.labels(kind)

    def gauges(self, *, queue_depth: Callable[[], float], workers_busy: Callable[[], float],
               outbox_depth: Callable[[], float]) -> None:
        """Read when scraped (the database's outbox count is one indexed query)."""
        for name, doc, read in (("edgeret_hub_queue_depth", "captures waiting for a worker", queue_depth),
                                ("edgeret_hub_workers_busy", "workers decoding or grading", workers_busy),
                                ("edgeret_hub_outbox_depth", "objects still to send to the PACS",
                                 outbox_depth)):
            Gauge(name, doc, registry=self.registry).set_function(read)

    def refusal(self, status: int) -> None:
        self.refused.labels(REFUSAL_REASONS.get(status, "other")).inc()

    def observe(self, stage: str, seconds: float) -> None:
        self.seconds.labels(stage).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
