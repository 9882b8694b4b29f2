"""The worklist's queries on a real SQLite database of synthetic captures written through the hub's own
column mapping: the work-first queue, each filter, keyset pages in both directions, neighbours, decisions
that never touch the machine's answer, and query plans that use the indexes."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

pytest.importorskip("argon2")

from reader_helpers import T0, bulk_captures  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from edgeret.hub.db import create_engine, migrate, sqlite_url  # noqa: E402
from edgeret.hub.db.models import Capture  # noqa: E402
from edgeret.reader import accounts, queries  # noqa: E402
from edgeret.reader.queries import Filters  # noqa: E402

N = 700


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("worklist")
    engine = create_engine(sqlite_url(folder))
    migrate(engine)
    bulk_captures(engine, N, seed=3)
    accounts.add_reader(engine, "alice", "a long enough password")
    yield engine
    engine.dispose()


def everything(engine) -> list[Capture]:
    with Session(engine) as session:
        return list(session.scalars(select(Capture)))


def walk(engine, filters: Filters, limit: int = 37) -> list[str]:
    """Every capture id of a filtered worklist, page after page."""
    ids, after = [], None
    while True:
        page = queries.page(engine, filters, after=after, limit=limit)
        ids += [r["capture_id"] for r in page.rows]
        if page.next_cursor is None:
            return ids
        after = page.next_cursor


def test_the_default_queue_is_referable_and_ungradable_oldest_first(engine):
    rows = everything(engine)
    expected = sorted((r for r in rows if r.referable or r.ungradable),
                      key=lambda r: (r.received_at, r.capture_id))
    assert 0 < len(expected) < len(rows)
    assert walk(engine, Filters()) == [r.capture_id for r in expected]
    assert queries.page(engine, Filters()).total == len(expected)


def test_keyset_pages_cover_every_capture_once_in_each_order_and_back(engine):
    for sort in ("received", "bytes"):
        for desc in (False, True):
            filters = Filters(queue="all", sort=sort, desc=desc)
            ids = walk(engine, filters, limit=50)
            assert len(ids) == N and len(set(ids)) == N
            rows = {r.capture_id: r for r in everything(engine)}
            keys = [((rows[i].received_at if sort == "received" else rows[i].stream_bytes), i) for i in ids]
            assert keys == sorted(keys, reverse=desc)
    # and back: the page before page 3 is page 2
    filters = Filters(queue="all")
    one = queries.page(engine, filters, limit=40)
    two = queries.page(engine, filters, after=one.next_cursor, limit=40)
    three = queries.page(engine, filters, after=two.next_cursor, limit=40)
    back = queries.page(engine, filters, before=three.prev_cursor, limit=40)
    assert [r["capture_id"] for r in back.rows] == [r["capture_id"] for r in two.rows]
    assert queries.page(engine, filters, before=two.prev_cursor, limit=40).prev_cursor is None


@pytest.mark.parametrize("filters, keep", [
    (Filters(queue="all", referable=True), lambda r: r.referable is True),
    (Filters(queue="all", referable=False), lambda r: r.referable is False),
    (Filters(queue="all", ungradable=True), lambda r: r.ungradable is True),
    (Filters(queue="all", site="south"), lambda r: r.camera == "south"),
    (Filters(queue="all", disagree=True),
     lambda r: None not in (r.device_gradable, r.ungradable) and r.device_gradable == r.ungradable),
    (Filters(queue="all", since=date(2026, 11, 3), until=date(2026, 11, 4)),
     lambda r: date(2026, 11, 3) <= r.received_at.date() <= date(2026, 11, 4)),
    (Filters(site="north", referable=True), lambda r: r.camera == "north" and r.referable is True),
])
def test_each_filter_keeps_exactly_its_captures(engine, filters, keep):
    expected = {r.capture_id for r in everything(engine) if keep(r)}
    assert expected, "the synthetic data should have some of each"
    assert set(walk(engine, filters)) == expected
    assert queries.page(engine, filters).total == len(expected)


def test_filters_survive_their_query_string(engine):
    filters = Filters(queue="all", site="east", since=date(2026, 11, 2), referable=True, ungradable=False,
                      disagree=True, unreviewed=True, sort="bytes", desc=True)
    from urllib.parse import parse_qsl

    assert Filters.from_query(dict(parse_qsl(filters.query()))) == filters
    assert Filters.from_query({"queue": "nope", "sort": "x; drop table", "since": "never"}) == Filters()


def test_decisions_are_new_rows_shown_in_the_list_and_unreviewed_leaves_them_out(engine):
    filters = Filters(queue="all", unreviewed=True)
    first = queries.page(engine, filters, limit=3).rows
    machine = {r.capture_id: (r.dr_grade, r.referable, r.record) for r in everything(engine)}
    target = first[0]["capture_id"]
    queries.decide(engine, target, "alice", {"action": "override", "dr_grade": "2", "referable": "yes"})
    queries.decide(engine, target, "alice", {"action": "confirm"})
    assert target not in walk(engine, filters)
    listed = queries.page(engine, Filters(queue="all"), limit=N).rows
    row = next(r for r in listed if r["capture_id"] == target)
    assert row["decision"].action == "confirm"  # the newest decision is the one the list shows
    assert [d.action for d in queries.decisions(engine, target)] == ["confirm", "override"]
    after = {r.capture_id: (r.dr_grade, r.referable, r.record) for r in everything(engine)}
    assert after == machine  # the machine's answers are as they were


def test_neighbours_follow_the_list_order(engine):
    filters = Filters(referable=True)
    ids = walk(engine, filters)
    previous, following = queries.neighbours(engine, filters, ids[5])
    assert (previous, following) == (ids[4], ids[6])
    assert queries.neighbours(engine, filters, ids[0])[0] is None
    assert queries.neighbours(engine, filters, ids[-1])[1] is None


def test_a_date_range_and_a_cursor_past_the_end_give_empty_pages(engine):
    late = T0 + timedelta(days=365)
    assert queries.page(engine, Filters(queue="all", since=late.date())).rows == []
    assert queries.page(engine, Filters(queue="all"), after=f"{late.isoformat()}~{'f' * 64}").rows == []
    assert len(queries.page(engine, Filters(queue="all"), after="garbage").rows) == queries.PAGE


def test_the_worklist_queries_use_the_indexes(engine):
    """No full scan of the captures table for a filtered page (what keeps 100,000 rows fast)."""
    from sqlalchemy.dialects import sqlite

    for filters in (Filters(queue="all"), Filters(queue="all", referable=True),
                    Filters(queue="all", site="north"), Filters(queue="all", sort="bytes", desc=True)):
        column = queries.SORTS[filters.sort]
        query = (select(*queries.COLUMNS).where(*filters.conditions())
                 .order_by(column.desc() if filters.desc else column, Capture.capture_id).limit(101))
        sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
        with engine.connect() as conn:
            plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
        assert "USING INDEX ix_captures_" in plan, (filters, plan)


def test_csv_export_rows_pair_reader_and_machine(engine):
    rows = list(queries.export_rows(engine))
    assert rows[0] == queries.CSV_HEADER
    assert len(rows) >= 3 and all(len(r) == len(queries.CSV_HEADER) for r in rows)
    assert {r[rows[0].index("reader")] for r in rows[1:]} == {"alice"}


def test_a_large_match_is_counted_only_up_to_the_cap(engine, monkeypatch):
    monkeypatch.setattr(queries, "COUNT_CAP", 50)
    assert queries.page(engine, Filters(queue="all")).total == 51  # "more than 50": no scan to the end
    assert queries.page(engine, Filters(queue="all", site="north", since=date(2026, 11, 2),
                                        until=date(2026, 11, 2))).total < 50


def test_cohen_kappa():
    from edgeret.reader.reports import cohen_kappa

    assert cohen_kappa([(True, True), (True, False), (False, False), (False, False)]) == pytest.approx(0.5)
    assert cohen_kappa([(True, True), (False, False)]) == pytest.approx(1.0)
    assert cohen_kappa([]) is None and cohen_kappa([(True, True)]) is None  # chance agreement is 1


def test_reports_per_site_and_day_match_the_rows(engine):
    from collections import Counter

    from edgeret.reader import reports

    rows = everything(engine)
    for i, row in enumerate(r for r in rows if r.referable is not None):  # a few reviews on day one
        if i == 6:
            break
        queries.decide(engine, row.capture_id, "alice", {"action": "override", "referable": "yes",
                                                        "retake": "yes" if i % 2 else ""})
    since, until = date(2026, 11, 2), date(2026, 11, 3)
    days = reports.site_days(engine, since, until)
    inside = [r for r in rows if since <= r.received_at.date() <= until]
    assert Counter({key: t.captures for key, t in days.items()}) == \
        Counter((r.camera, r.received_at.date().isoformat()) for r in inside)
    sites = reports.per_site(days)
    north = [r for r in inside if r.camera == "north"]
    assert sites["north"].captures == len(north)
    assert sites["north"].gradable == sum(r.ungradable is False for r in north)
    assert sites["north"].referable == sum(r.referable is True for r in north)
    newest = {r.capture_id: queries.decisions(engine, r.capture_id) for r in inside}
    reviewed = [(r, d[0]) for r in inside if (d := newest[r.capture_id])]
    assert sum(t.reviewed for t in sites.values()) == len(reviewed) > 0
    assert sum(t.retake for t in sites.values()) == sum(d.retake for _, d in reviewed)
    pairs = [(bool(r.referable), bool(d.referable)) for r, d in reviewed
             if r.referable is not None and d.referable is not None]
    all_sites = reports.Tally()
    for tally in sites.values():
        all_sites.add(tally)
    assert sorted(all_sites.pairs) == sorted(pairs)
