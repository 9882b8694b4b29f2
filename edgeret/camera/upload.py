"""Send one spooled stream to the hub and say whether it arrived (standard library only).

``PUT {hub}/v1/captures/{capture_id}`` with the stream as the body, its
sha256 and the capture's metadata in headers (see ``docs/upload.md``). The
answer is one of three outcomes, because the spool must know which:

* ``delivered``: 200/201 and the hub echoes the stream's sha256 -> forget it;
* ``retry``: no answer, a cut connection, a timeout, 408/429/5xx -> keep it;
* ``rejected``: any other 4xx (the hub will never accept these bytes) -> set aside.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from edgeret.errors import EdgeretError
from edgeret.link.protocol import CONTENT_TYPE, META_HEADER, SHA_HEADER

# 401/403: our credentials are wrong -- a person must fix the token; the stream itself is fine, so it
# stays queued instead of being set aside
TRANSIENT_STATUS = {401, 403, 408, 425, 429}


@dataclass(frozen=True)
class Outcome:
    kind: str  # "delivered", "retry" or "rejected"
    detail: str  # one line: the hub's answer or what went wrong
    receipt: dict[str, Any] | None = None  # the hub's JSON answer when delivered


def hub_address(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path prefix) of a hub URL; a one-line error when it is not one."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EdgeretError(f"--hub {url!r} is not an http:// or https:// URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


class Uploader:
    """One hub; a fresh connection per upload, so a half-dead socket never lingers."""

    def __init__(self, hub_url: str, *, timeout: float = 30.0, token: str | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        """``tls``: how an https:// hub is verified (``edgeret.link.tls.client_context``; default: the
        system's certificate authorities)."""
        self.url = hub_url.rstrip("/")
        self.scheme, self.host, self.port, self.prefix = hub_address(hub_url)
        if tls is not None and self.scheme != "https":
            raise EdgeretError(f"--hub {hub_url!r}: a CA file is for https:// hubs; this one is plain http")
        self.timeout = timeout
        self.token = token
        self.tls = tls

    def _connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def send(self, capture_id: str, stream: bytes, meta: dict[str, Any]) -> Outcome:
        digest = hashlib.sha256(stream).hexdigest()
        headers = {"Content-Type": CONTENT_TYPE, "Content-Length": str(len(stream)), SHA_HEADER: digest,
                   META_HEADER: json.dumps(meta, sort_keys=True, ensure_ascii=True)}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn = self._connection()
        try:
            conn.request("PUT", f"{self.prefix}/v1/captures/{capture_id}", body=stream, headers=headers)
            response = conn.getresponse()
            status, body = response.status, response.read(1 << 20)
        except (OSError, http.client.HTTPException) as e:  # refused, reset, cut, timed out
            return Outcome("retry", f"{self.url}: {_describe(e)}")
        finally:
            conn.close()
        return _classify(status, body, digest, self.url)


def _classify(status: int, body: bytes, digest: str, url: str) -> Outcome:
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    said = answer.get("error") if isinstance(answer, dict) else None
    said = said or body[:200].decode("utf-8", "replace").strip() or "(empty body)"
    if status in (200, 201):
        if not isinstance(answer, dict) or answer.get("stream_sha256") != digest:
            # a proxy or a wrong server said OK: not proof the hub has our bytes
            return Outcome("retry", f"{url}: HTTP {status} without the stream's sha256 in the answer")
        return Outcome("delivered", f"HTTP {status}", answer)
    if status in TRANSIENT_STATUS or status >= 500:
        return Outcome("retry", f"{url}: HTTP {status}: {said}")
    return Outcome("rejected", f"{url}: HTTP {status}: {said}")


def _describe(e: BaseException) -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        hint = "" if "mismatch" in str(e.verify_message) else "; give its CA with --ca-file"
        return f"TLS: the hub's certificate does not verify ({e.verify_message}){hint}"
    if isinstance(e, socket.timeout | TimeoutError):
        return "no answer before the timeout"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (hub down?)"
    text = str(e) or type(e).__name__
    return text.splitlines()[0]
