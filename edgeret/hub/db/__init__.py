"""The hub's records and PACS outbox in a database (SQLAlchemy 2.x, Alembic migrations).

SQLite is the embedded default: one file beside the store (``STORE/hub.db``), WAL mode
(readers such as a reader app never block the hub's writes), ``busy_timeout`` so two
writers wait for each other instead of failing, ``synchronous=FULL`` (a capture the
camera was told is stored survives a power cut). PostgreSQL works with the same code
(``postgresql+psycopg://...``). The schema is brought to the newest migration when the
hub opens it (``alembic upgrade head``, no alembic.ini needed).
"""

from __future__ import annotations

from pathlib import Path

from edgeret.errors import EdgeretError

DB_FILE = "hub.db"
BUSY_TIMEOUT_MS = 10_000  # a writer waits this long for another before the write fails
MIGRATIONS = Path(__file__).with_name("migrations")


def sqlite_url(store_dir: str | Path) -> str:
    return f"sqlite:///{Path(store_dir).resolve() / DB_FILE}"


def create_engine(url: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS):
    """An engine for ``url``; for SQLite with WAL, busy_timeout, foreign keys and IMMEDIATE write
    transactions (a deferred one that reads first can fail at once with 'database is locked' when it
    wants to write, whatever the busy timeout)."""
    try:
        from sqlalchemy import create_engine as sa_create_engine
        from sqlalchemy import event
    except ImportError:
        raise EdgeretError("the hub's database needs the 'hub' extra: pip install 'edgeret[hub]'") from None
    if not url.startswith("sqlite"):
        return sa_create_engine(url, pool_pre_ping=True)
    engine = sa_create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, not by the driver
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", f"busy_timeout={int(busy_timeout_ms)}", "foreign_keys=ON",
                       "synchronous=FULL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        immediate = connection.get_execution_options().get("sqlite_immediate")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def migrate(engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (what ``alembic upgrade head`` does), in one transaction."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def open_repository(url: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS, upgrade: bool = True):
    """A :class:`~edgeret.hub.db.repository.HubRepository` on ``url``, its schema migrated first."""
    from edgeret.hub.db.repository import HubRepository

    engine = create_engine(url, busy_timeout_ms=busy_timeout_ms)
    try:
        if upgrade:
            migrate(engine)
    except Exception as exc:
        engine.dispose()
        from edgeret.errors import one_line

        raise EdgeretError(f"hub database: cannot open or migrate it ({one_line(exc, 200)})") from None
    return HubRepository(engine)
