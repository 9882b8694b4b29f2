"""Readers' passwords (argon2id via argon2-cffi), server-side sessions and the log-in rate limit.

A session is a random 256-bit cookie value; the database keeps only its SHA-256, with the reader's name
and the CSRF token of its forms. Sessions end on log-out, after ``IDLE`` without a request and after
``LIFETIME`` in any case.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from edgeret.errors import EdgeretError
from edgeret.reader.models import Reader, ReaderSession

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 10
IDLE = timedelta(minutes=30)
LIFETIME = timedelta(hours=12)


def _hasher():
    try:
        from argon2 import PasswordHasher
    except ImportError:
        raise EdgeretError("the reader app needs the 'reader' extra: pip install 'edgeret[reader]'") from None
    return PasswordHasher()  # argon2id with the library's current RFC 9106 low-memory parameters


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def check_name(name: str) -> str:
    if not NAME.fullmatch(name or ""):
        raise EdgeretError(f"reader name {name[:70]!r}: 1 to 64 letters, digits and . _ @ -, starting with a "
                           "letter or digit")
    return name


def add_reader(engine, name: str, password: str, *, replace: bool = False) -> None:
    """Create reader ``name`` (with ``replace``: or set a new password, ending its sessions)."""
    check_name(name)
    if len(password) < MIN_PASSWORD:
        raise EdgeretError(f"the password has {len(password)} characters; at least {MIN_PASSWORD} are needed")
    digest = _hasher().hash(password)
    with Session(engine) as session, session.begin():
        row = session.get(Reader, name)
        if row is not None and not replace:
            raise EdgeretError(f"reader {name} exists already (--replace sets a new password)")
        if row is None:
            session.add(Reader(name=name, password_hash=digest, created_at=_utcnow(), disabled=False))
        else:
            row.password_hash, row.disabled = digest, False
            session.execute(delete(ReaderSession).where(ReaderSession.reader == name))


def disable_reader(engine, name: str) -> bool:
    """Disable ``name`` and end its sessions; False if there is no such reader."""
    with Session(engine) as session, session.begin():
        row = session.get(Reader, name)
        if row is None:
            return False
        row.disabled = True
        session.execute(delete(ReaderSession).where(ReaderSession.reader == name))
        return True


def list_readers(engine) -> list[tuple[str, bool]]:
    with Session(engine) as session:
        return [(r.name, r.disabled) for r in session.scalars(select(Reader).order_by(Reader.name))]


# a hash to verify against when the name is unknown, so that a wrong name and a wrong password take the
# same time (no way to learn which readers exist)
_DUMMY: list[str] = []


def verify(engine, name: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = _hasher()
    with Session(engine) as session:
        row = session.get(Reader, name) if NAME.fullmatch(name or "") else None
    if not _DUMMY:
        _DUMMY.append(hasher.hash(secrets.token_hex(16)))
    try:
        ok = hasher.verify(row.password_hash if row else _DUMMY[0], password)
    except (VerificationError, InvalidHashError):
        return False
    if row is None or row.disabled:
        return False
    if ok and hasher.check_needs_rehash(row.password_hash):  # the library's parameters grew
        with Session(engine) as session, session.begin():
            session.get(Reader, name).password_hash = hasher.hash(password)
    return ok


@dataclass(frozen=True)
class Login:
    reader: str
    csrf: str


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(engine, reader: str) -> tuple[str, Login]:
    """(cookie value, the session) for a reader who just gave the right password."""
    token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), _utcnow()
    with Session(engine) as session, session.begin():
        session.execute(delete(ReaderSession).where(ReaderSession.last_seen < now - LIFETIME))
        session.add(ReaderSession(token_sha256=_sha(token), reader=reader, csrf=csrf, created_at=now,
                                  last_seen=now))
    return token, Login(reader, csrf)


def session_of(engine, token: str | None) -> Login | None:
    """The live session this cookie value names (its last-seen time moved on), or None."""
    if not token or len(token) > 128:
        return None
    now = _utcnow()
    with Session(engine) as session, session.begin():
        row = session.get(ReaderSession, _sha(token))
        if row is None:
            return None
        if _aware(row.last_seen) < now - IDLE or _aware(row.created_at) < now - LIFETIME:
            session.delete(row)
            return None
        reader = session.get(Reader, row.reader)
        if reader is None or reader.disabled:
            return None
        if now - _aware(row.last_seen) > timedelta(seconds=30):  # one write per half minute, not per request
            row.last_seen = now
        return Login(row.reader, row.csrf)


def end_session(engine, token: str | None) -> None:
    if token:
        with Session(engine) as session, session.begin():
            session.execute(delete(ReaderSession).where(ReaderSession.token_sha256 == _sha(token)))


class LoginLimiter:
    """At most ``attempts`` failed log-ins per ``window`` seconds per client address and per reader name
    (a password-guessing browser, or many addresses guessing one reader's password). In memory: a
    restart forgets the count, which costs a guesser a restart of the hub per few guesses."""

    def __init__(self, attempts: int = 5, window: float = 300.0) -> None:
        self.attempts, self.window = attempts, window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, *keys: str) -> int:
        """Seconds until another attempt is allowed for all of ``keys`` (0: now)."""
        now = time.monotonic()
        wait = 0.0
        with self._lock:
            for key in keys:
                times = self._failures.get(key)
                while times and times[0] < now - self.window:
                    times.popleft()
                if times and len(times) >= self.attempts:
                    wait = max(wait, times[0] + self.window - now)
        return int(wait) + 1 if wait else 0

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._failures.setdefault(key, deque()).append(now)
            if len(self._failures) > 10_000:  # bounded memory under a spray of names
                self._failures.clear()

    def succeeded(self, name_key: str) -> None:
        with self._lock:
            self._failures.pop(name_key, None)
