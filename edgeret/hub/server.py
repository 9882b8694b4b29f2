"""The hub's HTTP endpoint (standard library ``http.server``; the protocol is in docs/upload.md).

``PUT /v1/captures/ID``  an ``.ert`` stream -> 201 stored / 200 already stored / 4xx why not
``GET /v1/captures/ID``  the record the hub keeps for a capture (404 if none)
``GET /v1/health``       liveness, and how many objects still wait for the PACS
"""

from __future__ import annotations

import hmac
import json
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgeret.bitstream import MAX_STREAM
from edgeret.errors import one_line
from edgeret.hub.cameras import CameraKeys
from edgeret.hub.intake import Intake, Refused
from edgeret.upload_protocol import CAPTURE_ID, CAPTURE_PATH, DEFAULT_PORT, META_HEADER, SHA_HEADER

SOCKET_TIMEOUT = 60.0  # a camera that stops sending mid-body must not hold a thread forever


class HubServer:
    """Binds at construction (port 0 picks a free one); ``serve_forever`` or ``start`` in a thread.

    With ``tls`` (``edgeret.tls.server_context``) it serves HTTPS only; with ``cameras`` each camera
    has its own token and is named in its captures' records (else ``token``: one shared secret)."""

    def __init__(self, intake: Intake, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 log: Callable[[str], None] = print, on_stop: Callable[[], None] = lambda: None,
                 token: str | None = None, tls: ssl.SSLContext | None = None,
                 cameras: CameraKeys | None = None) -> None:
        attrs = {"intake": intake, "log": staticmethod(log), "token": token, "cameras": cameras}
        handler = type("HubHandler", (_Handler,), attrs)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.scheme = "https" if tls else "http"
        if tls:
            # the handshake runs in the connection's own thread (see _Handler.handle), under its socket
            # timeout: a client that connects and says nothing must not stall the accept loop
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True,
                                                do_handshake_on_connect=False)
        self.intake, self.on_stop, self.cameras = intake, on_stop, cameras
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

    def close(self) -> None:
        """Release the socket and stop what runs beside the server (the PACS forwarder)."""
        self.httpd.server_close()
        self.on_stop()


class _Handler(BaseHTTPRequestHandler):
    intake: Intake
    log: Callable[[str], None]
    token: str | None = None  # when set, every request must carry "Authorization: Bearer <token>"
    cameras: CameraKeys | None = None  # per-camera tokens instead
    camera: str | None = None  # the camera this request authenticated as
    timeout = SOCKET_TIMEOUT
    protocol_version = "HTTP/1.1"
    server_version = "edgeret-hub"

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError) as e:  # plain HTTP, an untrusted client, a silent one
                self.log(f"hub: TLS handshake with {self.client_address[0]} failed: {one_line(e)}")
                return
        super().handle()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # one line per capture comes from do_PUT instead of one per request

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, sort_keys=True).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
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

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != "/v1/health" and not self._authorised():
            return
        if self.path == "/v1/health":
            store = self.intake.store
            self._send(200, {"status": "ok", "captures": len(store.ids()),
                             "pacs_waiting": len(store.outbox_ids())})
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

    def do_PUT(self) -> None:  # noqa: N802
        if not self._authorised():  # before reading a byte of the body
            return
        match = CAPTURE_PATH.match(self.path)
        if not match:
            self._refuse(404, f"no such endpoint: PUT {self.path}")
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._refuse(411, "Content-Length is required")
            return
        if int(length) > MAX_STREAM:
            self._refuse(413, f"{length} bytes is larger than any .ert stream (limit {MAX_STREAM})")
            return
        body = self.rfile.read(int(length))
        if len(body) < int(length):  # the camera's connection broke mid-body: nothing to answer, nothing kept
            self.close_connection = True
            return
        try:
            meta = json.loads(self.headers.get(META_HEADER) or "{}")
            if not isinstance(meta, dict):
                raise ValueError("not an object")
        except ValueError as e:
            self._refuse(400, f"header {META_HEADER} is not a JSON object ({e})")
            return
        try:
            status, answer = self.intake.receive(match.group(1), body, self.headers.get(SHA_HEADER, ""), meta,
                                                 camera=self.camera)
        except Refused as exc:
            self._refuse(exc.status, str(exc), meta)
            return
        except Exception as exc:  # a hub bug must answer 500 (the camera retries), not drop the socket
            self._refuse(500, f"hub error: {type(exc).__name__}: {exc}", meta)
            return
        findings = answer.get("findings") or {}
        said = findings.get("result", findings.get("grade"))
        sender = f"camera {self.camera} at " if self.camera else ""
        self.log(f"{answer['status']} {match.group(1)[:12]} ({meta.get('source_name', '?')}) from "
                 f"{sender}{self.client_address[0]}: {findings.get('task')}: {said}")
        self._send(status, answer)

    def _refuse(self, status: int, message: str, meta: dict | None = None) -> None:
        self.log(f"refused {self.path} ({(meta or {}).get('source_name', '?')}): HTTP {status}: {message}")
        self.close_connection = True  # the body may be unread; do not reuse the connection
        self._send(status, {"error": message})
