"""The reader app's reads and writes on the hub's database: worklist pages (keyset-paginated on indexed
columns, so page 1,000 of 100,000 captures costs what page 1 does), a capture's neighbours, decisions,
the audit log and the CSV export. The hub's rows are only read here."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import and_, case, exists, func, select, tuple_
from sqlalchemy.orm import Session

from edgeret.hub.db.models import Capture
from edgeret.reader.models import AuditEvent, Decision

QUEUES = ("work", "all")  # work: referable or ungradable, oldest first (what a reader does first)
SORTS = {"received": Capture.received_at, "bytes": Capture.stream_bytes}
PAGE = 100
COLUMNS = (Capture.capture_id, Capture.camera, Capture.received_at, Capture.modality, Capture.device_quality,
           Capture.device_gradable, Capture.hub_task, Capture.hub_result, Capture.hub_quality,
           Capture.ungradable, Capture.dr_grade, Capture.referable, Capture.p_referable, Capture.dme,
           Capture.oct_quality, Capture.codec_id, Capture.stream_bytes, Capture.pacs_status, Capture.status)
MAX_COMMENT = 2000
COUNT_CAP = 10_000  # the worklist says "more than 10,000" rather than count a large match exactly


def _flag(value: str | None) -> bool | None:
    return {"yes": True, "no": False}.get((value or "").lower())


def parse_day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Filters:
    """What the worklist shows, as its query string says (unknown or malformed values are ignored)."""

    queue: str = "work"
    site: str | None = None
    since: date | None = None  # received on or after this UTC day
    until: date | None = None  # received on or before this UTC day
    referable: bool | None = None
    ungradable: bool | None = None
    disagree: bool = False  # the device's gradable verdict differs from the hub's
    unreviewed: bool = False  # no reader decision yet
    sort: str = "received"
    desc: bool = False

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> Filters:
        queue = params.get("queue") if params.get("queue") in QUEUES else "work"
        sort = params.get("sort") if params.get("sort") in SORTS else "received"
        order = params.get("order")
        return cls(queue=queue, site=(params.get("site") or None), since=parse_day(params.get("since")),
                   until=parse_day(params.get("until")), referable=_flag(params.get("referable")),
                   ungradable=_flag(params.get("ungradable")), disagree=params.get("disagree") == "yes",
                   unreviewed=params.get("unreviewed") == "yes", sort=sort,
                   desc=order == "desc" if order in ("asc", "desc") else queue == "all")

    def params(self, **changes: Any) -> dict[str, str]:
        """The query-string parameters that give these filters back (defaults left out)."""
        data, out = replace(self, **changes), {}
        for f in fields(self):
            value = getattr(data, f.name)
            if f.name == "desc":
                out["order"] = "desc" if value else "asc"
            elif isinstance(value, bool) and f.name in ("disagree", "unreviewed"):
                if value:
                    out[f.name] = "yes"
            elif isinstance(value, bool):
                out[f.name] = "yes" if value else "no"
            elif value is not None:
                out[f.name] = value.isoformat() if isinstance(value, date) else str(value)
        return out

    def query(self, **changes: Any) -> str:
        return urlencode(self.params(**changes))

    def conditions(self) -> list:
        where = []
        if self.queue == "work":
            # one expression, not an OR of two indexed columns: SQLite would gather both index ranges
            # (a third of the table) and sort them; this way it walks the received_at index in order and
            # stops at the page's end (200 ms -> 5 ms at 100,000 captures)
            where.append(case((Capture.referable.is_(True), 1), (Capture.ungradable.is_(True), 1), else_=0)
                         == 1)
        if self.site:
            where.append(Capture.camera == self.site)
        if self.since:
            where.append(Capture.received_at >= datetime.combine(self.since, time(), timezone.utc))
        if self.until:
            where.append(Capture.received_at < datetime.combine(self.until + timedelta(days=1), time(),
                                                                timezone.utc))
        for column, value in ((Capture.referable, self.referable), (Capture.ungradable, self.ungradable)):
            if value is not None:
                where.append(column.is_(value))
        if self.disagree:  # device says gradable and hub ungradable, or the other way round
            where.append(and_(Capture.device_gradable.is_not(None), Capture.ungradable.is_not(None),
                              Capture.device_gradable == Capture.ungradable))
        if self.unreviewed:
            where.append(~exists().where(Decision.capture_id == Capture.capture_id))
        return where


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None  # the "after" of the next page
    prev_cursor: str | None  # the "before" of the previous page
    total: int


def _cursor(row: Mapping[str, Any], sort: str) -> str:
    value = row["received_at"] if sort == "received" else row["stream_bytes"]
    value = _aware(value).isoformat() if isinstance(value, datetime) else str(value)
    return f"{value}~{row['capture_id']}"


def _key(cursor: str | None, sort: str) -> tuple[Any, str] | None:
    value, _, capture_id = (cursor or "").rpartition("~")
    if not value or not capture_id:
        return None
    try:
        return (datetime.fromisoformat(value) if sort == "received" else int(value)), capture_id
    except ValueError:
        return None


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def page(engine, filters: Filters, *, after: str | None = None, before: str | None = None,
         limit: int = PAGE, count: bool = True) -> Page:
    """One worklist page after (or before) a cursor, with each row's newest reader decision."""
    column = SORTS[filters.sort]
    where = filters.conditions()
    key_after, key_before = _key(after, filters.sort), _key(before, filters.sort)
    backwards = key_before is not None and key_after is None
    key = key_before if backwards else key_after
    descending = filters.desc != backwards  # walk the other way to find the previous page
    if key is not None:
        pair, bound = tuple_(column, Capture.capture_id), tuple_(*key)
        where.append(pair < bound if descending else pair > bound)
    order = (column.desc(), Capture.capture_id.desc()) if descending else (column, Capture.capture_id)
    query = select(*COLUMNS).where(*where).order_by(*order).limit(limit + 1)
    with Session(engine) as session:
        rows = [dict(r._mapping) for r in session.execute(query)]
        more = len(rows) > limit
        rows = rows[:limit]
        if backwards:
            rows.reverse()
        total = _count(session, filters) if count else -1
        latest = latest_decisions(session, [r["capture_id"] for r in rows])
    for row in rows:
        row["received_at"] = _aware(row["received_at"])
        row["decision"] = latest.get(row["capture_id"])
    has_next = more if not backwards else key is not None
    has_prev = (key is not None) if not backwards else more
    return Page(rows, _cursor(rows[-1], filters.sort) if rows and has_next else None,
                _cursor(rows[0], filters.sort) if rows and has_prev else None, total)


def _count(session: Session, filters: Filters) -> int:
    """How many captures match, counted up to COUNT_CAP + 1 (a filter that needs a scan stops there)."""
    matching = select(Capture.capture_id).where(*filters.conditions()).limit(COUNT_CAP + 1).subquery()
    return int(session.scalar(select(func.count()).select_from(matching)) or 0)


def neighbours(engine, filters: Filters, capture_id: str) -> tuple[str | None, str | None]:
    """(previous, next) capture ids in the worklist's order, for the capture view's shortcuts."""
    with Session(engine) as session:
        row = session.execute(select(Capture.received_at, Capture.stream_bytes, Capture.capture_id)
                              .where(Capture.capture_id == capture_id)).first()
    if row is None:
        return None, None
    cursor = _cursor(dict(row._mapping), filters.sort)
    before = page(engine, filters, before=cursor, limit=1, count=False).rows
    after = page(engine, filters, after=cursor, limit=1, count=False).rows
    return (before[0]["capture_id"] if before else None), (after[0]["capture_id"] if after else None)


def sites(engine) -> list[str]:
    with Session(engine) as session:
        return [s for s in session.scalars(select(Capture.camera).distinct().order_by(Capture.camera)) if s]


def latest_decisions(session: Session, capture_ids: list[str]) -> dict[str, Decision]:
    if not capture_ids:
        return {}
    query = (select(Decision).where(Decision.capture_id.in_(capture_ids))
             .order_by(Decision.decided_at, Decision.id))
    return {d.capture_id: d for d in session.scalars(query)}


def decisions(engine, capture_id: str) -> list[Decision]:
    """Every decision on a capture, newest first (none is ever overwritten)."""
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(select(Decision).where(Decision.capture_id == capture_id)
                                    .order_by(Decision.decided_at.desc(), Decision.id.desc())))


class BadDecision(ValueError):
    pass


def decide(engine, capture_id: str, reader: str, form: Mapping[str, str]) -> int:
    """Store a reader's decision (a new row; the machine's answer is left as it was); its id.

    ``confirm`` takes the machine's answer as the reader's; ``override`` takes the form's fields."""
    action = form.get("action")
    if action not in ("confirm", "override"):
        raise BadDecision("action must be confirm or override")
    comment = (form.get("comment") or "").strip()[:MAX_COMMENT] or None
    with Session(engine) as session, session.begin():
        capture = session.get(Capture, capture_id)
        if capture is None:
            raise BadDecision("no such capture")
        if action == "confirm":
            values = {"gradable": None if capture.ungradable is None else not capture.ungradable,
                      "dr_grade": capture.dr_grade, "dme": capture.dme, "referable": capture.referable,
                      "retake": bool(capture.ungradable)}
        else:
            grade = form.get("dr_grade") or ""
            if grade and grade not in ("0", "1", "2", "3", "4"):
                raise BadDecision("ICDR grade must be 0 to 4")
            values = {"gradable": _flag(form.get("gradable")), "dr_grade": int(grade) if grade else None,
                      "dme": _flag(form.get("dme")), "referable": _flag(form.get("referable")),
                      "retake": form.get("retake") == "yes"}
        row = Decision(capture_id=capture_id, reader=reader, decided_at=datetime.now(timezone.utc),
                       action=action, comment=comment, **values)
        session.add(row)
        session.flush()
        return int(row.id)


def audit(engine, reader: str | None, action: str, *, capture_id: str | None = None,
          client: str | None = None, detail: str | None = None) -> None:
    """One audit row (who, what, which capture, from where, when): written before the page is sent."""
    with Session(engine) as session, session.begin():
        session.add(AuditEvent(at=datetime.now(timezone.utc), reader=reader, action=action,
                               capture_id=capture_id, client=(client or "")[:64] or None,
                               detail=(detail or "")[:1000] or None))


def audit_rows(engine, *, capture_id: str | None = None, limit: int = 1000) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if capture_id is not None:
        query = query.where(AuditEvent.capture_id == capture_id)
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(query))


CSV_HEADER = ("capture_id", "site", "received_at", "modality", "machine_quality", "machine_ungradable",
              "machine_dr_grade", "machine_dme", "machine_referable", "reader", "decided_at", "action",
              "reader_gradable", "reader_dr_grade", "reader_dme", "reader_referable", "retake", "comment")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return _aware(value).isoformat()
    text = str(value)
    # a spreadsheet runs a cell that starts like a formula: a comment must stay text
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_rows(engine) -> Iterator[tuple[str, ...]]:
    """Every decision beside the machine's answer, oldest first (the CSV export's rows)."""
    query = (select(Capture.capture_id, Capture.camera, Capture.received_at, Capture.modality,
                    Capture.hub_quality, Capture.ungradable, Capture.dr_grade, Capture.dme, Capture.referable,
                    Decision.reader, Decision.decided_at, Decision.action, Decision.gradable,
                    Decision.dr_grade, Decision.dme, Decision.referable, Decision.retake, Decision.comment)
             .join(Capture, Capture.capture_id == Decision.capture_id)
             .order_by(Decision.decided_at, Decision.id))
    yield CSV_HEADER
    with Session(engine) as session:
        for row in session.execute(query).yield_per(1000):
            yield tuple(_cell(v) for v in row)
