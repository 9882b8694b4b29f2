"""Prometheus metrics at GET /metrics (issue 24): captures received / stored / refused by reason, the
decode queue, decode and grade latency, the PACS outbox; nothing of the patient in them or in the log.
A real hub scraped over HTTP, parsed with prometheus_client's own parser."""

from __future__ import annotations

import hashlib
import urllib.request

import pytest
from hub_helpers import empty_stream, make_agent, start_hub, wait_for, write_captures

from edgeret.camera.upload import Uploader
from edgeret.codec.session import CodecCatalog
from edgeret.plugin.host import get_host

pytest.importorskip("pydicom")
parser = pytest.importorskip("prometheus_client.parser")

SECRET_ID, SECRET_NAME = "PID-7731-SECRET", "Doe^Secretia"


def _scrape(url: str) -> tuple[str, dict[tuple[str, tuple], float]]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in parser.text_string_to_metric_families(text) for s in family.samples}
    return text, samples


def test_metrics_count_what_the_hub_did_and_hold_nothing_of_the_patient(tmp_path):
    inbox = tmp_path / "inbox"
    paths = write_captures(inbox, n_fundus=1, n_oct=1, seed=70)
    ids = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    for path in paths:  # patient side-cars: these strings must appear in no metric and no log line
        path.with_suffix(".json").write_text(
            f'{{"patient_id": "{SECRET_ID}", "patient_name": "{SECRET_NAME}"}}')
    attack = empty_stream(CodecCatalog.of_plugin(get_host()), "fundus-factorized-q6", 4096, 4096)
    hub = start_hub(tmp_path / "store", pacs="http://127.0.0.1:9/dicom-web", max_pixels=2_000_000)
    try:
        _, before = _scrape(hub.url)
        agent = make_agent(inbox, tmp_path / "spool", hub.url)
        assert agent.run_once(max_wait=120) == 0, agent.lines
        uploader = Uploader(hub.url)
        garbage = uploader.send("ab" * 32, b"not a stream", {"source_name": "garbage.ert"})
        too_big = uploader.send(hashlib.sha256(attack).hexdigest(), attack, {"source_name": "attack.ert"})
        assert hub.wait_idle(120)
        assert wait_for(lambda: _scrape(hub.url)[1][("edgeret_hub_pacs_failures_total",
                                                     (("kind", "unreachable"),))] >= 1, 30)
        text, after = _scrape(hub.url)
    finally:
        hub.stop()
    assert (garbage.kind, too_big.kind) == ("rejected", "rejected")
    assert before[("edgeret_hub_captures_received_total", ())] == 0
    assert after[("edgeret_hub_captures_received_total", ())] == 4
    assert after[("edgeret_hub_captures_stored_total", ())] == 2
    assert after[("edgeret_hub_captures_refused_total", (("reason", "invalid_stream"),))] == 1
    assert after[("edgeret_hub_captures_refused_total", (("reason", "too_large"),))] == 1
    assert after[("edgeret_hub_captures_processed_total", (("outcome", "graded"),))] == 2
    assert after[("edgeret_hub_stage_seconds_count", (("stage", "decode"),))] == 2
    assert after[("edgeret_hub_stage_seconds_count", (("stage", "grade"),))] == 2
    assert after[("edgeret_hub_stage_seconds_sum", (("stage", "decode"),))] > 0
    assert after[("edgeret_hub_queue_depth", ())] == 0 and after[("edgeret_hub_workers_busy", ())] == 0
    assert after[("edgeret_hub_outbox_depth", ())] == 2  # this PACS never answers
    for secret in (SECRET_ID, SECRET_NAME, "garbage.ert", *(i[:12] for i in ids)):
        assert secret not in text
    assert not [line for line in hub.lines if SECRET_ID in line or SECRET_NAME in line]
