"""The hub's records and PACS outbox in a database (issue 24): migrations, the repository API a reader
app uses, SQLite's settings, a count over 100,000 rows, and importing an older hub's JSON store.
Real SQLite files, and a real PostgreSQL (tests/postgres_server.py) where one can be started."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import run_cli
from postgres_server import PostgresServer, missing_reason

from edgeret.hub.db import create_engine, migrate, open_repository, sqlite_url
from edgeret.hub.db.models import FAILED, GRADED, STORED, Base
from edgeret.hub.db.repository import AlreadyThere

pytest.importorskip("sqlalchemy")


def _id(n: int) -> str:
    return f"{n:064x}"


def _record(n: int, *, camera: str = "north-1", referable: bool | None = False, poor: bool = False,
            received: float | None = None) -> dict:
    findings = ({"task": "dr-grade", "quality": "poor", "result": "ungradable — retake", "dr_grade": None,
                 "referable": None} if poor else
                {"task": "dr-grade", "quality": "good", "result": "moderate" if referable else "none",
                 "dr_grade": 2 if referable else 0, "referable": referable, "p_referable": 0.9 if referable
                 else 0.1, "dme": False})
    return {"capture_id": _id(n), "stream_sha256": f"{n:064x}"[::-1], "camera": camera, "device": "cam",
            "received_at": received or time.time(), "modality": "fundus", "source_name": f"photo{n}.png",
            "device_quality": {"task": "quality-fundus", "quality": "good", "gradable": True, "p_poor": 0.02},
            "findings": findings, "patient": {"patient_id": f"P{n}"},
            "stream": {"bytes": 20000 + n, "bpp": 0.6, "codec": "fundus-factorized-q6", "height": 512,
                       "width": 512, "modality": "fundus"},
            "dicom": {"sop_instance_uid": f"1.2.{n}", "study_instance_uid": f"1.3.{n}"}}


@pytest.fixture(scope="module")
def postgres():
    reason = missing_reason()
    if reason:
        pytest.skip(f"no PostgreSQL for the test: {reason}")
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def repo(request, tmp_path):
    url = (sqlite_url(tmp_path) if request.param == "sqlite"
           else request.getfixturevalue("postgres").new_database())
    repository = open_repository(url)
    yield repository
    repository.close()


def test_the_migrations_make_exactly_the_models_schema(repo):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with repo.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert diff == [] and version == "0002_reader"  # the newest migration (0002_reader: the reader app)
    migrate(repo.engine)  # again: a no-op, as at every hub start


def test_captures_and_outbox_through_the_repository(repo):
    repo.add(_record(1), status=STORED)
    with pytest.raises(AlreadyThere):
        repo.add(_record(1), status=STORED)
    assert repo.get(_id(1))["status"] == STORED and repo.ids(STORED) == [_id(1)]
    repo.complete({**_record(1, referable=True), "pacs": {"pending": True}}, dicom_path="dicom/x.dcm",
                  forward=True)
    row = repo.row(_id(1))
    assert (row.status, row.referable, row.dr_grade, row.camera, row.device_quality, row.width) == (
        GRADED, True, 2, "north-1", "good", 512)
    assert row.pacs_status == "pending" and repo.outbox_ids() == [_id(1)] and repo.outbox_waiting() == 1
    (due,) = repo.outbox_due()
    assert (due.capture_id, due.dicom_path, due.attempts) == (_id(1), "dicom/x.dcm", 0)
    repo.outbox_retry(_id(1), "PACS down", delay=60)
    assert repo.outbox_due() == [] and repo.outbox_item(_id(1)).attempts == 1  # not due for a minute
    assert repo.outbox_item(_id(1)).last_error == "PACS down"
    repo.outbox_sent(_id(1), {"sop_instance_uid": "1.2.1", "url": "http://pacs"})
    assert repo.outbox_waiting() == 0 and repo.get(_id(1))["pacs"]["sop_instance_uid"] == "1.2.1"
    assert repo.row(_id(1)).pacs_status == "sent" and repo.outbox_item(_id(1)).sent_at is not None
    repo.add(_record(2), status=STORED)
    repo.fail(_id(2), "capture 000000000000: truncated stream")
    failed = repo.get(_id(2))
    assert failed["status"] == FAILED and "truncated" in failed["failure_reason"]
    repo.add(_record(3), status=GRADED, forward=True)
    repo.outbox_refused(_id(3), "HTTP 400")
    assert repo.get(_id(3))["pacs"] == {"refused": "HTTP 400"} and repo.outbox_ids() == []


def test_the_worklist_filters_and_sorts_on_indexed_columns(repo):
    start = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    for n in range(12):
        repo.add(_record(n, camera="south-2" if n % 3 == 0 else "north-1", referable=n % 2 == 0, poor=n == 5,
                         received=start + n * 3600), status=GRADED)
    newest = repo.worklist(limit=3)
    assert [r["capture_id"] for r in newest] == [_id(11), _id(10), _id(9)]
    assert {r["capture_id"] for r in repo.worklist(referable=True)} == {_id(n) for n in range(0, 12, 2)}
    assert [r["capture_id"] for r in repo.worklist(ungradable=True)] == [_id(5)]
    assert {r["capture_id"] for r in repo.worklist(camera="south-2")} == {_id(0), _id(3), _id(6), _id(9)}
    window = repo.worklist(since=datetime.fromtimestamp(start + 2 * 3600, timezone.utc),
                           until=datetime.fromtimestamp(start + 5 * 3600, timezone.utc), newest_first=False)
    assert [r["capture_id"] for r in window] == [_id(2), _id(3), _id(4)]
    assert [r["capture_id"] for r in repo.worklist(status=GRADED, limit=2, offset=10)] == [_id(1), _id(0)]


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    engine = create_engine(sqlite_url(tmp_path), busy_timeout_ms=1234)
    with engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        timeout = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    engine.dispose()
    assert (mode, timeout) == ("wal", 1234)


def test_counts_over_100000_captures_take_milliseconds(tmp_path):
    """What /v1/health asks at every call (the old hub listed a folder: 0.36 s at 100,000 records)."""
    from sqlalchemy import insert

    from edgeret.hub.db.models import Capture, OutboxItem
    from edgeret.hub.db.repository import columns

    repo = open_repository(sqlite_url(tmp_path))
    now = datetime.now(timezone.utc)
    rows = [{"capture_id": _id(n), "status": GRADED, "updated_at": now, "record": {}, "dicom_path": None,
             **columns(_record(n))} for n in range(100_000)]
    with repo.engine.begin() as conn:
        conn.execute(insert(Capture), rows)
        conn.execute(insert(OutboxItem), [{"capture_id": _id(n), "state": "pending", "attempts": 0,
                                           "created_at": now, "next_attempt_at": now}
                                          for n in range(0, 100_000, 50)])
    timings = []
    for _ in range(5):
        begun = time.perf_counter()
        counts = repo.count(), repo.outbox_waiting()
        timings.append(time.perf_counter() - begun)
    repo.close()
    print(f"health counts over 100,000 rows: median {sorted(timings)[2] * 1000:.1f} ms")
    assert counts == (100_000, 2000)
    assert sorted(timings)[2] < 0.1


def _old_store(root: Path) -> None:
    """A store as the JSON-record hub left it: two commits (one still due at the PACS), a partial record
    its forwarder wrote after a failed commit, a PACS refusal."""
    for name in ("streams", "dicom", "records", "outbox", "pacs-rejected"):
        (root / name).mkdir(parents=True)
    for n in (1, 2, 4):
        (root / "streams" / f"{_id(n)}.ert").write_bytes(b"stream")
        (root / "dicom" / f"{_id(n)}.dcm").write_bytes(b"dicom")
        (root / "records" / f"{_id(n)}.json").write_text(json.dumps(_record(n)))
    (root / "outbox" / _id(2)).write_bytes(b"")
    (root / "pacs-rejected" / f"{_id(4)}.txt").write_text("HTTP 400 refused\n")
    (root / "records" / f"{_id(3)}.json").write_text(json.dumps({"pacs": {"sop_instance_uid": "1.2.3"}}))


def test_migrate_store_imports_an_older_hubs_json_records_once(tmp_path):
    store = tmp_path / "store"
    _old_store(store)
    refused = run_cli("serve", "--store", str(store), "--port", "0")
    assert refused.returncode != 0 and "edgeret hub migrate-store" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (store / "hub.db").exists()
    first = run_cli("hub", "migrate-store", str(store))
    assert first.returncode == 0, first.stderr
    assert "3 records imported, 0 already in the database, 1 skipped" in first.stdout
    again = run_cli("hub", "migrate-store", str(store))
    assert again.returncode == 0 and "0 records imported" in again.stdout, again.stdout
    assert (store / "records.imported").is_dir() and not (store / "records").exists()
    repo = open_repository(sqlite_url(store), upgrade=False)
    try:
        assert repo.ids() and sorted(repo.ids()) == [_id(1), _id(2), _id(4)]
        assert repo.outbox_ids() == [_id(2)] and repo.get(_id(1))["findings"]["result"] == "none"
        assert repo.get(_id(4))["pacs"] == {"refused": "HTTP 400 refused"}
        assert repo.row(_id(1)).dicom_path == f"dicom/{_id(1)}.dcm"
    finally:
        repo.close()
    assert oct(os.stat(store / "hub.db").st_mode & 0o777) == "0o600"


def test_migrate_store_says_what_is_wrong_in_one_line(tmp_path):
    missing = run_cli("hub", "migrate-store", str(tmp_path / "nowhere"))
    assert missing.returncode != 0 and "no such hub store" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_a_locked_database_fails_a_write_after_the_busy_timeout(tmp_path):
    repo = open_repository(sqlite_url(tmp_path), busy_timeout_ms=200)
    blocker = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    from sqlalchemy.exc import OperationalError

    begun = time.monotonic()
    with pytest.raises(OperationalError, match="locked"):
        repo.add(_record(1))
    waited = time.monotonic() - begun
    assert repo.count() == 0  # reads go on meanwhile (WAL)
    blocker.execute("ROLLBACK")
    repo.add(_record(1))
    blocker.close()
    repo.close()
    assert 0.15 < waited < 5


def test_times_stay_utc(repo):
    received = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    repo.add(_record(7, received=received.timestamp()))
    got = repo.row(_id(7)).received_at
    assert (got.replace(tzinfo=got.tzinfo or timezone.utc) - received) == timedelta(0)
