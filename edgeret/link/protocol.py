"""What the camera's agent and the hub agree on (docs/upload.md): both import it, not each other."""

from __future__ import annotations

import re

CAPTURE_ID = re.compile(r"^[0-9a-f]{64}$")  # sha256 of the capture file, lowercase hex
CAPTURE_PATH = re.compile(r"^/v1/captures/([^/?]+)$")  # PUT (upload) and GET (record)
CONTENT_TYPE = "application/vnd.edgeret.ert"
SHA_HEADER = "X-Edgeret-Stream-Sha256"  # hex sha256 of the body; the hub's answer echoes it
META_HEADER = "X-Edgeret-Meta"  # the capture's metadata, JSON (ASCII)
MAX_META_BYTES = 16384  # the hub refuses a larger metadata header (real ones are under 1 KB)
MAX_META_DEPTH = 8  # ... or one whose JSON nests deeper (real ones: 3 levels)
DEFAULT_PORT = 8470
# who grades what by default (`--quality` / `--grade` MODALITY=TASK override them)
DEVICE_TASKS = {"fundus": "quality-fundus", "oct": "quality-oct"}  # at the camera, on the original
HUB_TASKS = {"fundus": "dr-grade", "oct": "quality-oct"}  # at the hub, on the decoded image
TOKEN_ENV = "EDGERET_HUB_TOKEN"  # the shared secret, when not given with --token-file


def read_token(path: str | None) -> str | None:
    """The hub token from a file (first line) or $EDGERET_HUB_TOKEN; None when neither is set."""
    import os
    from pathlib import Path

    from edgeret.errors import InputError

    if path is None:
        return os.environ.get(TOKEN_ENV) or None
    try:
        token = Path(path).read_text(encoding="utf-8").strip().splitlines()[0].strip()
    except (OSError, IndexError, UnicodeDecodeError):
        raise InputError(path, "cannot read a token from this file (one line of text)") from None
    if len(token) < 16 or not token.isascii() or not token.isprintable():
        raise InputError(path, "the token must be at least 16 printable ASCII characters")
    return token


def check_capture_id(capture_id: str) -> str:
    """The id itself, or ValueError: ids become file names, so nothing else may pass."""
    if not isinstance(capture_id, str) or not CAPTURE_ID.match(capture_id):
        raise ValueError(f"not a capture id (64 lowercase hex digits): {capture_id!r}")
    return capture_id


def wait_for_hub(url: str, timeout: float = 30.0, tls=None) -> bool:
    """True once ``GET url/v1/health`` answers (a hub just started takes a moment), False at timeout;
    ``tls``: the ``ssl.SSLContext`` that verifies an https:// hub."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url.rstrip('/')}/v1/health", timeout=1, context=tls).read()
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
