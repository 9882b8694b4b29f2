"""Forward DICOM instances to a PACS over DICOMweb (STOW-RS to store, QIDO-RS to check).

Stdlib HTTP only (urllib): the hub must not need `requests`. Every failure is a
PacsError whose `transient` flag tells the store-and-forward queue whether a
retry can help (PACS down, overloaded) or not (rejected, unauthorised).
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from edgeret.errors import one_line

REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
SOP_INSTANCE_UID = "00080018"
DUPLICATE_SOP_INSTANCE = 0x0111  # already stored: for a re-forward that is success


class PacsError(Exception):
    """The PACS did not take the instance; one line naming the PACS URL and what happened."""

    def __init__(self, url: str, problem: str, *, transient: bool) -> None:
        self.url = url
        self.problem = problem
        self.transient = transient  # True: worth retrying later; False: a retry gets the same answer
        super().__init__(f"PACS {url}: {problem}")


def _seq(obj: Any, tag: str) -> list[Any]:
    """Items of sequence `tag` in a DICOM JSON object; [] when absent or empty (Orthanc sends
    an empty FailedSOPSequence with every success)."""
    element = obj.get(tag) if isinstance(obj, dict) else None
    values = element.get("Value") if isinstance(element, dict) else None
    return values if isinstance(values, list) else []


def _first(obj: Any, tag: str) -> Any:
    """First value of `tag` in a DICOM JSON object, None when absent."""
    values = _seq(obj, tag)
    return values[0] if values else None


def _reasons(failed: list[Any]) -> str:
    return ", ".join(f"0x{r:04X}" if isinstance(r, int) else "none given"
                     for r in (_first(item, FAILURE_REASON) for item in failed))


def _error_detail(raw: bytes) -> str:
    """The useful part of an error body: a STOW answer's failure reasons, a JSON "Message"
    (Orthanc's REST errors) or the text itself."""
    text = raw.decode("utf-8", "replace")
    try:
        answer = json.loads(text)
    except ValueError:
        return one_line(text)
    if isinstance(answer, dict) and FAILED_SOP_SEQUENCE in answer:
        failed = _seq(answer, FAILED_SOP_SEQUENCE)
        # Orthanc 1.10 answers a file it cannot parse with 400 and two empty sequences.
        return f"instance refused (failure reason {_reasons(failed)})" if failed else "no instance stored"
    message = answer.get("Message") if isinstance(answer, dict) else None
    return one_line(str(message) if message else text)


class StowClient:
    """DICOMweb client for one PACS, e.g. StowClient("http://pacs:8042/dicom-web")."""

    def __init__(self, base_url: str, *, timeout: float = 30.0, user: str | None = None,
                 password: str | None = None) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"PACS URL must be http(s)://host[:port]/path, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._auth: str | None = None
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
            self._auth = f"Basic {token}"

    def _request(self, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str],
                 keep: tuple[int, ...] = ()) -> tuple[int, bytes]:
        """(status, body) for answers below 400 and those in `keep`; PacsError for the rest."""
        if self._auth:
            headers = {**headers, "Authorization": self._auth}
        req = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            try:
                raw = e.read() if e.fp else b""
            except (OSError, http.client.HTTPException):
                raw = b""
            if e.code in keep:
                return e.code, raw
            detail = _error_detail(raw)
            # 5xx: the PACS is broken or busy; 408/429: come back later. Other 4xx: our request is wrong.
            transient = e.code >= 500 or e.code in (408, 429)
            what = f"{method} {path.split('?')[0]} -> HTTP {e.code} {e.reason}"
            what += f": {detail}" if detail else ""
            raise PacsError(self.base_url, what, transient=transient) from None
        except urllib.error.URLError as e:
            reason = e.reason
            # A certificate that does not verify stays wrong; refused/reset/DNS/unreachable may recover.
            transient = not isinstance(reason, ssl.SSLCertVerificationError)
            text = one_line(str(getattr(reason, "strerror", None) or reason))
            raise PacsError(self.base_url, f"cannot reach ({text})", transient=transient) from None
        except TimeoutError:  # raised while waiting for or reading the answer
            raise PacsError(self.base_url, f"no answer within {self.timeout:g} s", transient=True) from None
        except (OSError, http.client.HTTPException) as e:  # reset, or the connection dropped mid-answer
            what = one_line(e)
            raise PacsError(self.base_url, f"connection failed ({what})", transient=True) from None

    def _json(self, raw: bytes, what: str) -> Any:
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            detail = one_line(raw[:200].decode("utf-8", "replace")) or "empty body"
            raise PacsError(self.base_url, f"{what}: answer is not DICOM JSON ({detail})",
                            transient=False) from None

    def store(self, dicom: bytes) -> str:
        """STOW-RS one Part-10 instance; returns the SOP Instance UID the PACS stored."""
        boundary = f"edgeret-{uuid.uuid4().hex}"
        body = b"".join([
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii"),
            dicom,
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        ])
        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        }
        where = "POST /studies"
        # 409: every instance failed; the body says why (a duplicate is success for us)
        status, raw = self._request("POST", "/studies", body=body, headers=headers, keep=(409,))
        if status not in (200, 202, 409):
            raise PacsError(self.base_url, f"{where} -> unexpected HTTP {status}", transient=False)
        answer = self._json(raw, where)
        if not isinstance(answer, dict):
            raise PacsError(self.base_url, f"{where}: answer is not a DICOM JSON object", transient=False)
        failed, stored = _seq(answer, FAILED_SOP_SEQUENCE), _seq(answer, REFERENCED_SOP_SEQUENCE)
        if failed:
            reasons = [_first(item, FAILURE_REASON) for item in failed]
            uid = _first(failed[0], REFERENCED_SOP_INSTANCE_UID)
            if not stored and uid and all(r == DUPLICATE_SOP_INSTANCE for r in reasons):
                return str(uid)  # the PACS has this exact instance already (deterministic UIDs)
            # 0xA7xx means "out of resources": a later retry may succeed.
            busy = all(isinstance(r, int) and r & 0xFF00 == 0xA700 for r in reasons)
            raise PacsError(self.base_url, f"{where} -> HTTP {status}: instance refused "
                                           f"(failure reason {_reasons(failed)})", transient=busy)
        uid = _first(stored[0], REFERENCED_SOP_INSTANCE_UID) if stored else None
        if not uid:
            raise PacsError(self.base_url, f"{where}: HTTP {status} but no stored instance in the answer",
                            transient=False)
        return str(uid)

    def instance_exists(self, sop_instance_uid: str) -> bool:
        """QIDO-RS: does the PACS hold an instance with this SOP Instance UID?"""
        query = urllib.parse.urlencode({"SOPInstanceUID": sop_instance_uid})
        accept = {"Accept": "application/dicom+json"}
        status, raw = self._request("GET", f"/instances?{query}", headers=accept)
        if status == 204 or not raw.strip():  # some servers answer "no match" with No Content
            return False
        matches = self._json(raw, "GET /instances")
        if not isinstance(matches, list):
            raise PacsError(self.base_url, "GET /instances: answer is not a DICOM JSON list",
                            transient=False)
        # A server that ignores the filter lists everything: only count real matches.
        return any(_first(m, SOP_INSTANCE_UID) in (sop_instance_uid, None) for m in matches)
