"""TLS for the camera -> hub link (standard library ``ssl``): the hub's certificate, the camera's trust.

Captures are patient images; on any network but loopback they must not travel
in clear. The hub serves HTTPS itself (``edgeret serve --tls-cert --tls-key``)
so a clinic needs no reverse proxy, and a camera trusts either the system's
certificate authorities or one CA file (``edgeret agent --ca-file``): a hub with
a self-signed or private-CA certificate is the usual case in a screening
programme. TLS 1.2 is the floor on both sides.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from edgeret.errors import EdgeretError, InputError, one_line


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """The hub's context: its certificate chain and private key (PEM); a one-line error naming the file."""
    for path, what in ((cert, "certificate"), (key, "private key")):
        if not Path(path).is_file():
            raise InputError(path, f"TLS {what} file not found")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as e:
        raise InputError(cert, f"cannot use this TLS certificate with the key {key} "
                               f"({one_line(e.reason or e)})") from None
    except OSError as e:
        raise InputError(cert, f"cannot read the TLS certificate or key ({one_line(e)})") from None
    return context


def client_context(ca_file: str | Path | None = None) -> ssl.SSLContext:
    """The camera's context: verify the hub's certificate and name against ``ca_file`` (PEM) or, without
    one, the system's certificate authorities."""
    if ca_file is not None and not Path(ca_file).is_file():
        raise InputError(ca_file, "CA certificate file not found")
    try:
        context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    except ssl.SSLError as e:
        raise InputError(ca_file or "<system CAs>", f"not a PEM CA certificate ({one_line(e.reason or e)})") \
            from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def check_pair(cert: Path | None, key: Path | None) -> None:
    """``--tls-cert`` and ``--tls-key`` come together or not at all."""
    if (cert is None) != (key is None):
        raise EdgeretError("--tls-cert and --tls-key go together: give both (PEM files) or neither")
