"""The hub's HTTP endpoint (standard library ``http.server``; the protocol is in docs/upload.md).

``PUT /v1/captures/ID``  an ``.ert`` stream -> 201 stored / 200 already stored / 4xx why not
``GET /v1/captures/ID``  the record the hub keeps for a capture (404 if none)
``GET /v1/health``       liveness, and how many objects still wait for the PACS
``GET /metrics``         Prometheus metrics (counts and timings only: edgeret.hub.hub_metrics)
"""

from __future__ import annotations

import hmac
import io
import json
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from edgeret.codec.ert.container import MAX_STREAM
from edgeret.errors import one_line
from edgeret.hub.cameras import CameraKeys
from edgeret.hub.http_parts import DeadlineReader, InFlight, json_depth, safe_log
from edgeret.hub.intake import Intake, Refused

if TYPE_CHECKING:
    from edgeret.hub.hub_metrics import HubMetrics
from edgeret.link.protocol import (
    CAPTURE_ID,
    CAPTURE_PATH,
    DEFAULT_PORT,
    MAX_META_BYTES,
    MAX_META_DEPTH,
    META_HEADER,
    SHA_HEADER,
)

SOCKET_TIMEOUT = 60.0  # the longest wait for one read (and for a TLS handshake)
REQUEST_DEADLINE = 60.0  # request line, headers and body, from their first byte: a slow-loris client that
#                          trickles a byte at a time is cut off here, however often it sends
IDLE_TIMEOUT = 30.0  # a kept-alive connection with no new request is closed after this
MAX_CONNECTIONS = 64  # connections served at once (one thread each); more are answered 503 + Retry-After
BUSY_RETRY_AFTER = 5  # seconds, in that 503 (the agent honours it)
DIGITS = re.compile(r"[0-9]{1,15}")  # a Content-Length: ASCII digits only (str.isdigit() takes '²')
SINGLE_HEADERS = ("Content-Length", "Transfer-Encoding", "Authorization", "Host", META_HEADER, SHA_HEADER)


class _ThreadingServer(ThreadingHTTPServer):
    """One thread per connection, at most ``max_connections`` at once: over that, a plain-HTTP client
    gets 503 with Retry-After (a TLS one is closed: no handshake is spent on it) and the accept loop
    goes on. Without a cap, every slow or idle connection cost a thread for ever."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, *, max_connections: int,
                 log: Callable[[str], None], turned_away: Callable[[], None] = lambda: None) -> None:
        super().__init__(address, handler)
        self.max_connections, self.turned_away = max_connections, turned_away
        self._slots = threading.BoundedSemaphore(max_connections)
        self._log, self._busy_logged = log, 0.0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._turn_away(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _turn_away(self, request: socket.socket) -> None:
        self.turned_away()
        now = time.monotonic()
        if now - self._busy_logged > 10:  # one line per 10 s however many are turned away
            self._busy_logged = now
            self._log(f"hub: {self.max_connections} connections open (the limit); turning new ones away "
                      f"with 503 Retry-After {BUSY_RETRY_AFTER}")
        if isinstance(request, ssl.SSLSocket):
            return
        body = json.dumps({"error": f"the hub is busy ({self.max_connections} connections open); "
                                    f"retry in {BUSY_RETRY_AFTER} s"}).encode()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: {BUSY_RETRY_AFTER}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        try:
            request.settimeout(1.0)  # a few hundred bytes into an empty send buffer: does not block
            request.sendall(head.encode() + body)
        except OSError:
            pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """An exception a handler did not answer: one log line, no traceback on stderr."""
        import sys

        self._log(f"hub: connection from {client_address[0]} ended by {one_line(sys.exc_info()[1] or '?')}")


class HubServer:
    """Binds at construction (port 0 picks a free one); ``serve_forever`` or ``start`` in a thread.

    With ``tls`` (``edgeret.link.tls.server_context``) it serves HTTPS only; with ``cameras`` each camera
    has its own token and is named in its captures' records (else ``token``: one shared secret)."""

    def __init__(self, intake: Intake, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 log: Callable[[str], None] = print, on_stop: Callable[[], None] = lambda: None,
                 token: str | None = None, tls: ssl.SSLContext | None = None,
                 cameras: CameraKeys | None = None, max_connections: int = MAX_CONNECTIONS,
                 request_deadline: float = REQUEST_DEADLINE, idle_timeout: float = IDLE_TIMEOUT,
                 read_timeout: float = SOCKET_TIMEOUT, problems: Callable[[], list[str]] = list,
                 metrics: HubMetrics | None = None) -> None:
        log = safe_log(log)
        self.requests = InFlight()
        attrs = {"intake": intake, "log": staticmethod(log), "token": token, "cameras": cameras,
                 "problems": staticmethod(problems), "metrics": metrics, "requests": self.requests,
                 "timeout": read_timeout, "request_deadline": request_deadline, "idle_timeout": idle_timeout}
        handler = type("HubHandler", (_Handler,), attrs)
        self.httpd = _ThreadingServer((host, port), handler, max_connections=max_connections, log=log,
                                      turned_away=metrics.turned_away.inc if metrics else lambda: None)
        self.scheme = "https" if tls else "http"
        if tls:
            # the handshake runs in the connection's own thread (see _Handler.handle), under its socket
            # timeout: a client that connects and says nothing must not stall the accept loop
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True,
                                                do_handshake_on_connect=False)
        self.intake, self.on_stop, self.cameras, self.log = intake, on_stop, cameras, log
        self.grace = request_deadline + 30  # a request in flight: its body's deadline, then storing it
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="hub-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """From another thread: end ``serve_forever``, then ``close``."""
        self.httpd.shutdown()
        self.close()

    def wait_idle(self, timeout: float) -> bool:
        """Wait (up to ``timeout``) until the workers have finished every capture queued; True if they
        did (the hub goes on serving: for tools and tests)."""
        pool = self.intake.pool
        return pool is None or pool.wait_idle(timeout)

    def drain(self, timeout: float) -> bool:
        """For a stop: finish the requests in flight (no new ones: 503), then wait (up to ``timeout``)
        until the workers have finished every capture queued; True if they did. What is left stays
        ``stored`` in the database and is queued again at the next start."""
        self.requests.finish(self.grace)
        return self.wait_idle(timeout)

    def close(self) -> None:
        """Finish the requests in flight, release the socket and stop what runs beside the server (the
        workers finish the capture each is on; the PACS forwarder)."""
        if not self.requests.finish(self.grace):
            self.log(f"hub: requests still in flight after {self.grace:g} s; closing anyway")
        self.httpd.server_close()
        self.on_stop()


class _Handler(BaseHTTPRequestHandler):
    intake: Intake
    log: Callable[[str], None]
    token: str | None = None  # when set, every request must carry "Authorization: Bearer <token>"
    cameras: CameraKeys | None = None  # per-camera tokens instead
    camera: str | None = None  # the camera this request authenticated as
    problems: Callable[[], list[str]]  # what is wrong beside the intake (the PACS forwarder), for health
    metrics: HubMetrics | None = None
    requests: InFlight  # the server's, to finish them at a stop
    timeout = SOCKET_TIMEOUT  # per read (StreamRequestHandler sets it on the socket)
    request_deadline = REQUEST_DEADLINE
    idle_timeout = IDLE_TIMEOUT
    protocol_version = "HTTP/1.1"
    server_version = "edgeret-hub"

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the base class's reader: replaced by one with a deadline per request
        self._reader = DeadlineReader(self.connection, idle=self.idle_timeout, per_read=self.timeout,
                                       whole=self.request_deadline)
        self.rfile = io.BufferedReader(self._reader)

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:  # the handshake has one overall deadline (ssl's do_handshake under a socket timeout)
                self.connection.settimeout(min(self.timeout, self.request_deadline))
                self.connection.do_handshake()
            except (ssl.SSLError, OSError) as e:  # plain HTTP, an untrusted client, a silent one
                self.log(f"hub: TLS handshake with {self.client_address[0]} failed: {one_line(e)}")
                return
        super().handle()

    def handle_one_request(self) -> None:
        self._reader.deadline = None  # idle until the next request's first byte
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # one line per capture comes from do_PUT instead of one per request

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(body, sort_keys=True).encode(), "application/json", headers)

    def _send_raw(self, status: int, data: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> None:
        try:
            self.connection.settimeout(self.timeout)  # the reads left it at what remained of the deadline
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except OSError as e:  # the camera's timeout ran out while the hub graded: it asks again
            self.close_connection = True
            self.log(f"hub: {self.client_address[0]} closed the connection before the HTTP {status} answer "
                     f"({one_line(e)}); its retry will be answered")

    def _authorised(self) -> bool:
        given = self.headers.get("Authorization", "")
        if self.cameras is not None:
            self.camera = self.cameras.identify(given)
            if self.camera is not None:
                return True
        elif not self.token or hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return True
        self._refuse(401, "missing or wrong hub token (Authorization: Bearer ...)")
        return False

    def _framing(self) -> int | None:
        """The body's length from strictly parsed framing headers, or None when refused (answered).

        One Content-Length of plain ASCII digits, no Transfer-Encoding (chunked beside a length is how
        requests are smuggled past a proxy that reads the other one), no second copy of a header that
        decides what the request is."""
        for name in SINGLE_HEADERS:
            if len(self.headers.get_all(name) or []) > 1:
                self._refuse(400, f"header {name} given more than once")
                return None
        if self.headers.get("Transfer-Encoding") is not None:
            self._refuse(400, "Transfer-Encoding is not accepted; send the body with a Content-Length")
            return None
        length = self.headers.get("Content-Length")
        if length is None:
            if self.command == "PUT":
                self._refuse(411, "Content-Length is required")
                return None
            return 0
        if not DIGITS.fullmatch(length):
            self._refuse(400, f"Content-Length {length[:20]!r} is not a number of bytes")
            return None
        return int(length)

    def _meta(self) -> dict[str, Any] | None:
        """The capture's metadata header as a JSON object of bounded size and depth, or None (answered)."""
        raw = self.headers.get(META_HEADER) or "{}"
        problem = None
        if len(raw) > MAX_META_BYTES:
            problem = f"is {len(raw)} bytes, more than {MAX_META_BYTES}"
        else:
            try:
                meta = json.loads(raw)
            except RecursionError:  # nested ~1000 levels: the parser gives up
                problem = f"is nested more than {MAX_META_DEPTH} levels deep"
            except ValueError as e:
                problem = f"is not JSON ({one_line(e, 80)})"
            else:
                if not isinstance(meta, dict):
                    problem = "is not a JSON object"
                elif json_depth(meta) > MAX_META_DEPTH:
                    problem = f"is nested more than {MAX_META_DEPTH} levels deep"
        if problem:
            self._refuse(400, f"header {META_HEADER} {problem}")
            return None
        return meta

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._served(self._get)

    def do_PUT(self) -> None:  # noqa: N802
        self._served(self._put)

    def _served(self, handle: Callable[[], None]) -> None:
        if not self.requests.begin():  # a kept-alive connection's request while the hub stops
            self._refuse(503, f"the hub is stopping; retry in {BUSY_RETRY_AFTER} s",
                         retry_after=BUSY_RETRY_AFTER)
            return
        try:
            handle()
        finally:
            self.requests.end()

    def _get(self) -> None:
        length = self._framing()
        if length is None:
            return
        if length:  # a GET's body would be read as the next request
            self._refuse(400, "a GET request has no body")
            return
        if self.path == "/metrics" and self.metrics is not None:  # counts only, like health: no token
            self._send_raw(200, self.metrics.render(), self.metrics.content_type)
            return
        if self.path != "/v1/health" and not self._authorised():
            return
        if self.path == "/v1/health":
            intake = self.intake
            problems = self.problems() + intake.problems()  # counts from the database: no folder listing
            pool = intake.pool
            answer = {"status": "degraded" if problems else "ok", "captures": intake.store.count(),
                      "pacs_waiting": intake.store.db.outbox_waiting(),
                      "queued": pool.depth() + pool.busy() if pool else 0}
            self._send(200, {**answer, "problems": problems} if problems else answer)
            return
        match = CAPTURE_PATH.match(self.path)
        record = None
        if match and CAPTURE_ID.match(match.group(1)):
            record = self.intake.store.record(match.group(1))
        if record is not None and self.cameras is not None and record.get("camera") != self.camera:
            record = None  # a camera reads only what it sent (records hold patient data)
        if record is None:
            self._send(404, {"error": f"no capture at {self.path}"})
            return
        self._send(200, record)

    def _put(self) -> None:
        if self.metrics is not None:
            self.metrics.received.inc()
        length = self._framing()  # nothing of the body is read before these checks
        if length is None or not self._authorised():
            return
        match = CAPTURE_PATH.match(self.path)
        if not match:
            self._refuse(404, f"no such endpoint: PUT {self.path}")
            return
        if length > MAX_STREAM:
            self._refuse(413, f"{length} bytes is larger than any .ert stream (limit {MAX_STREAM})")
            return
        meta = self._meta()
        if meta is None:
            return
        try:
            body = self.rfile.read(length)
        except TimeoutError as e:  # the request's deadline passed mid-body (or one read waited too long)
            self._refuse(408, f"the body did not arrive in time ({one_line(e)})", meta)
            return
        if len(body) < length:  # the camera's connection broke mid-body: nothing to answer, nothing kept
            self.close_connection = True
            return
        try:
            status, answer = self.intake.receive(match.group(1), body, self.headers.get(SHA_HEADER, ""), meta,
                                                 camera=self.camera)
        except Refused as exc:
            self._refuse(exc.status, str(exc), meta, retry_after=exc.retry_after)
            return
        except Exception as exc:  # a hub bug or a full disk: 500 (the camera retries), not a dropped socket
            error_id = secrets.token_hex(4)  # the camera sees the id, only the log sees paths and details
            source = meta.get("source_name", "?")
            self.log(f"hub error {error_id} on capture {match.group(1)[:12]} ({source}): "
                     f"{type(exc).__name__}: {one_line(exc, 400)}")
            self._refuse(500, f"hub error {error_id}: the capture was not stored; it will be stored when "
                              f"sent again (the hub's log has the details under this id)", meta)
            return
        if status == 201 and self.metrics is not None:
            self.metrics.stored.inc()
        sender = f"camera {self.camera} at " if self.camera else ""
        self.log(f"{answer['status']} {match.group(1)[:12]} ({meta.get('source_name', '?')}) from "
                 f"{sender}{self.client_address[0]}: "
                 + ("queued for decoding" if status == 201 else f"it is {answer.get('processing')}"))
        self._send(status, answer)

    def _refuse(self, status: int, message: str, meta: dict | None = None,
                retry_after: int | None = None) -> None:
        self.log(f"refused {self.path} ({(meta or {}).get('source_name', '?')}): HTTP {status}: {message}")
        if self.command == "PUT" and self.metrics is not None:
            self.metrics.refusal(status)
        self.close_connection = True  # the body may be unread; do not reuse the connection
        self._send(status, {"error": message}, {"Retry-After": str(retry_after)} if retry_after else None)
