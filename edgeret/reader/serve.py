"""Run the reader app beside the hub: uvicorn in a thread of the hub's process, on its own port and its
own database engine (the hub's SQLite in WAL mode: the app's reads never block the hub's writes)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edgeret.errors import EdgeretError


def reader_extra_missing() -> str | None:
    """Why the reader app cannot run here (a missing package), or None."""
    for module in ("starlette", "jinja2", "uvicorn", "python_multipart", "argon2"):
        try:
            __import__(module)
        except ImportError:
            return f"the '{module}' package is missing: pip install 'edgeret[reader]'"
    return None


class ReaderServer:
    """The app bound at construction (port 0: any free one); ``start`` serves it in a thread."""

    def __init__(self, database_url: str, store: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                 tls_cert: Path | None = None, tls_key: Path | None = None,
                 log: Callable[[str], None] = print) -> None:
        missing = reader_extra_missing()
        if missing:
            raise EdgeretError(f"reader app: {missing}")
        import uvicorn

        from edgeret.hub.db import create_engine
        from edgeret.reader.web import create_app

        self.engine = create_engine(database_url)
        app = create_app(self.engine, store, secure=tls_cert is not None, log=log)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as e:
            self.sock.close()
            self.engine.dispose()
            raise EdgeretError(f"reader app: cannot listen on {host}:{port} ({e.strerror})") from None
        self.sock.listen(128)
        ssl = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)} if tls_cert else {}
        # access_log off: the app writes its own audit log; uvicorn's lines would repeat capture ids
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                server_header=False, **ssl)
        self.server = uvicorn.Server(config)
        self.scheme = "https" if tls_cert else "http"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"{self.scheme}://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self) -> ReaderServer:
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                        name="reader-app", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise EdgeretError("reader app: the server did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sock.close()
        self.engine.dispose()


def serve_options(parser) -> None:
    """``edgeret serve``'s reader-app options."""
    parser.add_argument("--reader-port", default="auto", metavar="PORT",
                        help="serve the reader app (docs/reader.md) on this port: 'auto' (default) is the "
                             "hub's port + 1 (any free port when that is taken or --port is 0), 'off' does "
                             "not start it")
    parser.add_argument("--reader-host", metavar="ADDRESS",
                        help="address the reader app listens on (default: the hub's --host)")


def start_beside_hub(args, hub_port: int, log: Callable[[str], None]) -> ReaderServer | None:
    """The reader app on the hub's database and store as ``edgeret serve``'s options say, started, its
    URL logged; None (with the reason logged) when it is off or its packages are missing."""
    choice = str(args.reader_port)
    if choice == "off":
        return None
    missing = reader_extra_missing()
    if missing:
        log(f"reader app: not started ({missing})")
        return None
    if choice == "auto":
        port = hub_port + 1 if args.port else 0
    elif choice.isdigit() and int(choice) <= 65535:
        port = int(choice)
    else:
        raise EdgeretError(f"--reader-port {choice!r}: a TCP port, 'auto' or 'off'")
    from edgeret.hub.db import sqlite_url

    def bind(port: int) -> ReaderServer:
        return ReaderServer(args.database or sqlite_url(args.store), args.store,
                            host=args.reader_host or args.bind, port=port, tls_cert=args.tls_cert,
                            tls_key=args.tls_key, log=log)

    try:
        server = bind(port)
    except EdgeretError:
        if choice != "auto" or port == 0:
            raise
        server = bind(0)  # hub port + 1 is taken: any free one (the URL is logged below)
    server.start()
    log(f"reader app: {server.url}/ (readers: edgeret readers add NAME --store {args.store})")
    return server
