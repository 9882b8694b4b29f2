"""A throwaway PostgreSQL for the tests: the Debian ``postgresql`` server binaries run as the
``postgres`` user on a free loopback port, data in a temporary folder, stopped after the session.

``EDGERET_TEST_POSTGRES_URL`` (a SQLAlchemy URL, e.g. ``postgresql+psycopg://u:p@host/db``) uses an
existing server instead; each test then gets a database of its own created there.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

URL_ENV = "EDGERET_TEST_POSTGRES_URL"


def missing_reason() -> str | None:
    """Why no PostgreSQL can be started here (None: it can)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'edgeret[postgres]')"
    if os.environ.get(URL_ENV):
        return None
    if not _bin("initdb"):
        return f"PostgreSQL is not installed (Debian: apt-get install postgresql), and ${URL_ENV} is not set"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: initdb refuses root"
    return None


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PostgresServer:
    def __init__(self) -> None:
        self.external = os.environ.get(URL_ENV)
        self.root: Path | None = None
        if self.external:
            self.base_url = self.external
            return
        self.root = Path(tempfile.mkdtemp(prefix="edgeret-pg-"))
        os.chmod(self.root, 0o755)  # the postgres user must reach its data folder
        data = self.root / "data"
        data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        subprocess.run(_as_postgres([_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "edgeret",
                                     "--no-sync", "-E", "UTF8"]),
                       check=True, capture_output=True, timeout=120)
        options = f"-p {self.port} -k {data} -c listen_addresses=127.0.0.1 -F"
        subprocess.run(_as_postgres([_bin("pg_ctl"), "-D", str(data), "-o", options, "-l",
                                     str(data / "log"), "-w", "-t", "60", "start"]),
                       check=True, capture_output=True, timeout=120)
        self.data = data
        self.base_url = f"postgresql+psycopg://edgeret@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        """The URL of a fresh, empty database on this server."""
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(self.base_url)
        name = f"edgeret_test_{uuid.uuid4().hex[:12]}"
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return url.set(database=name).render_as_string(hide_password=False)

    def stop(self) -> None:
        if self.root is None:
            return
        subprocess.run(_as_postgres([_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=120)
        shutil.rmtree(self.root, ignore_errors=True)
