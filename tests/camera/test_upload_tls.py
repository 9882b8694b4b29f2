"""The camera -> hub link over TLS: a real hub serving HTTPS on loopback, certificates made by openssl."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli
from hub_helpers import make_agent, one_spooled_scan, start_hub, stored_records, write_captures

from edgeret.camera.upload import Uploader
from edgeret.errors import EdgeretError, InputError
from edgeret.link.protocol import wait_for_hub
from edgeret.link.tls import check_pair, client_context, server_context

pytest.importorskip("pydicom")
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="needs the openssl command to make the test certificates")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(folder: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN=edgeret test {name}",
             "-days", "2", cwd=folder)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A private CA and a hub certificate it signed for 127.0.0.1 / localhost; a second, unrelated CA."""
    d = tmp_path_factory.mktemp("tls")
    _ca(d, "ca")
    _ca(d, "other-ca")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "hub.key", "-out", "hub.csr", "-subj", "/CN=hub", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "hub.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "hub.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    return d


@pytest.fixture
def tls_hub(tmp_path, certs):
    hub = start_hub(tmp_path / "store", tls=server_context(certs / "hub.pem", certs / "hub.key"))
    yield hub
    hub.stop()


def test_a_capture_goes_over_https_to_a_hub_with_a_private_ca(tmp_path, certs, tls_hub):
    item = one_spooled_scan(tmp_path)
    assert tls_hub.url.startswith("https://127.0.0.1:")
    assert wait_for_hub(tls_hub.url, timeout=5, tls=client_context(certs / "ca.pem"))
    outcome = Uploader(tls_hub.url, tls=client_context(certs / "ca.pem")).send(
        item.capture_id, item.read_stream(), item.meta)
    assert (outcome.kind, outcome.receipt["status"]) == ("delivered", "stored"), outcome
    assert list(stored_records(tmp_path / "store")) == [item.capture_id]


@pytest.mark.parametrize("ca", [None, "other-ca.pem"], ids=["system CAs", "another CA"])
def test_an_untrusted_hub_certificate_is_a_retry_with_a_clear_reason(tmp_path, certs, tls_hub, ca):
    item = one_spooled_scan(tmp_path)
    tls = client_context(certs / ca) if ca else None
    outcome = Uploader(tls_hub.url, tls=tls, timeout=5).send(item.capture_id, item.read_stream(), item.meta)
    assert outcome.kind == "retry", outcome  # the stream stays queued: a person fixes the trust
    assert "certificate does not verify" in outcome.detail and "--ca-file" in outcome.detail, outcome.detail
    assert not stored_records(tmp_path / "store")


def test_the_agent_keeps_captures_queued_until_the_hub_is_trusted(tmp_path, certs, tls_hub):
    inbox, spool = tmp_path / "inbox", tmp_path / "spool"
    write_captures(inbox, n_fundus=0, n_oct=1)
    untrusted = make_agent(inbox, spool, tls_hub.url, tls=client_context(certs / "other-ca.pem"))
    assert untrusted.run_once(max_wait=0.5) != 0
    assert len(untrusted.spool.pending()) == 1
    assert any("certificate does not verify" in line for line in untrusted.lines), untrusted.lines
    untrusted.spool.close()  # the camera restarts with the right CA file
    trusted = make_agent(inbox, spool, tls_hub.url, tls=client_context(certs / "ca.pem"))
    assert trusted.run_once(max_wait=10) == 0, trusted.lines
    assert not trusted.spool.pending()
    assert len(stored_records(tmp_path / "store")) == 1


def test_plain_http_and_silent_clients_do_not_stop_a_tls_hub(tmp_path, certs, tls_hub):
    item = one_spooled_scan(tmp_path)
    port = int(tls_hub.url.rsplit(":", 1)[1])
    silent = socket.create_connection(("127.0.0.1", port))  # connects, never says hello
    try:
        plain = Uploader(f"http://127.0.0.1:{port}", timeout=5).send(
            item.capture_id, item.read_stream(), item.meta)
        assert plain.kind == "retry", plain
        good = Uploader(tls_hub.url, tls=client_context(certs / "ca.pem"), timeout=10).send(
            item.capture_id, item.read_stream(), item.meta)
        assert good.kind == "delivered", good
    finally:
        silent.close()
    assert any("TLS handshake with 127.0.0.1 failed" in line for line in tls_hub.lines), tls_hub.lines


def test_bad_tls_files_are_one_line_errors_naming_the_file(tmp_path, certs):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(InputError, match="missing.pem: TLS certificate file not found"):
        server_context(tmp_path / "missing.pem", certs / "hub.key")
    with pytest.raises(InputError, match="garbage.pem: cannot"):
        server_context(garbage, certs / "hub.key")
    with pytest.raises(InputError, match="hub.pem: cannot use this TLS certificate with the key"):
        server_context(certs / "hub.pem", certs / "ca.key")  # a key that is not the certificate's
    with pytest.raises(InputError, match="missing-ca.pem: CA certificate file not found"):
        client_context(tmp_path / "missing-ca.pem")
    with pytest.raises(InputError, match="garbage.pem: not a PEM CA certificate"):
        client_context(garbage)
    with pytest.raises(EdgeretError, match="--tls-cert and --tls-key go together"):
        check_pair(certs / "hub.pem", None)
    with pytest.raises(EdgeretError, match="a CA file is for https:// hubs"):
        Uploader("http://127.0.0.1:1", tls=client_context(certs / "ca.pem"))


def test_cli_refuses_half_a_tls_configuration(tmp_path, certs):
    serve = run_cli("serve", "--store", str(tmp_path / "store"), "--tls-cert", str(certs / "hub.pem"))
    assert serve.returncode != 0 and "--tls-cert and --tls-key go together" in serve.stderr, serve.stderr
    assert len(serve.stderr.strip().splitlines()) == 1
    agent = run_cli("agent", "--inbox", str(tmp_path / "in"), "--spool", str(tmp_path / "spool"),
                    "--hub", "http://127.0.0.1:1", "--ca-file", str(tmp_path / "nope.pem"), "--once")
    assert agent.returncode != 0 and "nope.pem: CA certificate file not found" in agent.stderr, agent.stderr
    assert not (tmp_path / "store").exists()
