"""What the camera's agent and the hub agree on (docs/upload.md): both import it, not each other."""

from __future__ import annotations

import re

CAPTURE_ID = re.compile(r"^[0-9a-f]{64}$")  # sha256 of the capture file, lowercase hex
CAPTURE_PATH = re.compile(r"^/v1/captures/([^/?]+)$")  # PUT (upload) and GET (record)
CONTENT_TYPE = "application/vnd.edgeret.ert"
SHA_HEADER = "X-Edgeret-Stream-Sha256"  # hex sha256 of the body; the hub's answer echoes it
META_HEADER = "X-Edgeret-Meta"  # the capture's metadata, JSON (ASCII)
DEFAULT_PORT = 8470


def check_capture_id(capture_id: str) -> str:
    """The id itself, or ValueError: ids become file names, so nothing else may pass."""
    if not isinstance(capture_id, str) or not CAPTURE_ID.match(capture_id):
        raise ValueError(f"not a capture id (64 lowercase hex digits): {capture_id!r}")
    return capture_id
