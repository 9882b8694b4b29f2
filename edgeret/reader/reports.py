"""Programme reports per site and per day: captures, gradable, referable and retake rates, and how often
readers agree with the machine on referral (Cohen's kappa over the reviewed captures, each capture's
newest decision). Counts are grouped in the database; only reviewed captures are read row by row."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from edgeret.hub.db.models import Capture
from edgeret.reader.models import Decision


@dataclass
class Tally:
    captures: int = 0
    gradable: int = 0
    ungradable: int = 0
    referable: int = 0
    reviewed: int = 0
    retake: int = 0  # reviewed captures whose reader asked for a retake
    pairs: list[tuple[bool, bool]] = field(default_factory=list)  # (machine referable, reader referable)

    def rate(self, part: int, whole: int | None = None) -> float | None:
        whole = self.captures if whole is None else whole
        return part / whole if whole else None

    @property
    def gradable_rate(self) -> float | None:
        return self.rate(self.gradable, self.gradable + self.ungradable)

    @property
    def referable_rate(self) -> float | None:
        return self.rate(self.referable, self.gradable)

    @property
    def retake_rate(self) -> float | None:
        return self.rate(self.retake, self.reviewed)

    @property
    def kappa(self) -> float | None:
        return cohen_kappa(self.pairs)

    def add(self, other: Tally) -> None:
        for name in ("captures", "gradable", "ungradable", "referable", "reviewed", "retake"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.pairs += other.pairs


def cohen_kappa(pairs: list[tuple[bool, bool]]) -> float | None:
    """Cohen's kappa of two raters' yes/no answers; None without pairs or when chance agreement is 1."""
    n = len(pairs)
    if not n:
        return None
    observed = sum(a == b for a, b in pairs) / n
    yes_a, yes_b = sum(a for a, _ in pairs) / n, sum(b for _, b in pairs) / n
    expected = yes_a * yes_b + (1 - yes_a) * (1 - yes_b)
    return None if expected >= 1 else (observed - expected) / (1 - expected)


def _bounds(since: date, until: date) -> tuple[datetime, datetime]:
    return (datetime.combine(since, time(), timezone.utc),
            datetime.combine(until + timedelta(days=1), time(), timezone.utc))


def _day(value) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)[:10]


def site_days(engine, since: date, until: date) -> dict[tuple[str, str], Tally]:
    """{(site, UTC day): Tally} for captures received from ``since`` to ``until`` (both included)."""
    start, end = _bounds(since, until)
    day = func.date(Capture.received_at)
    counts = (select(Capture.camera, day,
                     func.count(),
                     func.sum(case((Capture.ungradable.is_(False), 1), else_=0)),
                     func.sum(case((Capture.ungradable.is_(True), 1), else_=0)),
                     func.sum(case((Capture.referable.is_(True), 1), else_=0)))
              .where(Capture.received_at >= start, Capture.received_at < end)
              .group_by(Capture.camera, day))
    newest = (select(func.max(Decision.id).label("id")).group_by(Decision.capture_id)).subquery()
    reviewed = (select(Capture.camera, day, Capture.referable, Decision.referable, Decision.retake)
                .join(Decision, Decision.capture_id == Capture.capture_id)
                .join(newest, newest.c.id == Decision.id)
                .where(Capture.received_at >= start, Capture.received_at < end))
    tallies: dict[tuple[str, str], Tally] = defaultdict(Tally)
    with Session(engine) as session:
        for site, when, n, good, bad, referable in session.execute(counts):
            tally = tallies[(site or "-", _day(when))]
            tally.captures, tally.gradable, tally.ungradable, tally.referable = \
                n, int(good or 0), int(bad or 0), int(referable or 0)
        for site, when, machine, reader, retake in session.execute(reviewed):
            tally = tallies[(site or "-", _day(when))]
            tally.reviewed += 1
            tally.retake += bool(retake)
            if machine is not None and reader is not None:
                tally.pairs.append((bool(machine), bool(reader)))
    return dict(sorted(tallies.items()))


def per_site(tallies: dict[tuple[str, str], Tally]) -> dict[str, Tally]:
    sites: dict[str, Tally] = defaultdict(Tally)
    for (site, _), tally in tallies.items():
        sites[site].add(tally)
    return dict(sorted(sites.items()))


def default_range(engine, days: int = 30) -> tuple[date, date]:
    """The last ``days`` days up to the newest capture (today without captures)."""
    with Session(engine) as session:
        newest = session.scalar(select(func.max(Capture.received_at)))
    until = newest.date() if newest else datetime.now(timezone.utc).date()
    return until - timedelta(days=days - 1), until
