"""The reader app's access rules over real HTTP on loopback (uvicorn, real SQLite, real DICOM): log-in,
session cookies, CSRF, the log-in rate limit, hub tokens refused, the audit log, decisions, CSV export."""

from __future__ import annotations

import csv
import io
import os
import shutil
import stat

import cv2
import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("argon2")

from reader_helpers import PASSWORD, Client, add_reader, start_reader, store_with_images  # noqa: E402

from edgeret.hub.db import create_engine, sqlite_url  # noqa: E402
from edgeret.reader import queries  # noqa: E402


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader") / "hub"
    records = store_with_images(root, n=10)
    add_reader(root, "alice")
    return root, records


@pytest.fixture
def store(made):
    return made[0]


@pytest.fixture
def records(made):
    return made[1]


@pytest.fixture
def app(store):
    server = start_reader(store)
    yield server
    server.stop()


@pytest.fixture
def engine(store):
    engine = create_engine(sqlite_url(store))
    yield engine
    engine.dispose()


def first(records) -> str:
    return records[0]["capture_id"]


@pytest.mark.parametrize("path", ["/", "/?queue=all", "/export.csv", "/reports", "/captures/{id}",
                                  "/captures/{id}/image"])
def test_a_logged_out_browser_is_sent_to_the_log_in_page(app, store, path, records):
    status, headers, _ = Client(app.url).request("GET", path.format(id=first(records)))
    assert (status, headers["location"]) == (303, "/login")


def test_a_hub_token_does_not_open_the_app_even_beside_a_session(app, store, records):
    client = Client(app.url)
    assert client.login() == 303
    assert client.request("GET", "/")[0] == 200
    for path in ("/", f"/captures/{first(records)}", "/export.csv"):
        status, _, body = client.request("GET", path, headers={"Authorization": "Bearer camera-token-123456"})
        assert status == 401, path
        assert b"hub token" in body


def test_log_in_sets_a_strict_http_only_session_cookie_and_logs_out(app, engine):
    client = Client(app.url)
    assert client.login() == 303
    session_line = next(line for line in client.set_cookies if line.startswith("edgeret_reader="))
    assert "HttpOnly" in session_line and "SameSite=strict" in session_line
    assert "Secure" not in session_line  # plain HTTP on loopback: a Secure cookie would never come back
    status, headers, body = client.request("GET", "/")
    assert status == 200 and b"alice" in body
    assert "no-store" in headers["cache-control"]
    assert "script-src 'self'" in headers["content-security-policy"]
    cookie = client.cookies["edgeret_reader"]
    assert client.request("POST", "/logout", {"csrf": client.csrf("/")})[0] == 303
    assert "edgeret_reader" not in client.cookies
    client.cookies["edgeret_reader"] = cookie  # the old cookie is dead on the server, not only deleted
    assert client.request("GET", "/")[0] == 303
    actions = [e.action for e in queries.audit_rows(engine, limit=50) if e.reader == "alice"]
    assert "login" in actions and "logout" in actions


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_under_tls_the_app_serves_https_and_its_cookies_are_secure(store, tmp_path):
    import ssl
    import subprocess

    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   cwd=tmp_path, check=True, capture_output=True)
    server = start_reader(store, tls_cert=tmp_path / "cert.pem", tls_key=tmp_path / "key.pem")
    try:
        assert server.url.startswith("https://")
        client = Client(server.url, tls=ssl.create_default_context(cafile=str(tmp_path / "cert.pem")))
        assert client.login() == 303
        for line in client.set_cookies:  # the log-in form's cookie and the session's
            assert "Secure" in line and "HttpOnly" in line and "SameSite=strict" in line, line
        assert client.request("GET", "/")[0] == 200
    finally:
        server.stop()


def test_the_session_store_keeps_only_a_hash_of_the_cookie(app, engine):
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from edgeret.reader.models import ReaderSession

    client = Client(app.url)
    client.login()
    with Session(engine) as session:
        hashes = set(session.scalars(select(ReaderSession.token_sha256)))
    assert client.cookies["edgeret_reader"] not in hashes
    import hashlib

    assert hashlib.sha256(client.cookies["edgeret_reader"].encode()).hexdigest() in hashes


def test_wrong_password_is_refused_and_audited_then_rate_limited(app, engine):
    client = Client(app.url)
    for _ in range(5):
        assert client.login(password="not-the-password") == 401
    fresh = Client(app.url)
    assert fresh.login() == 429  # the right password too, from this address, until the window passes
    assert int(fresh.request("GET", "/login")[0]) == 200
    failures = [e for e in queries.audit_rows(engine, limit=50) if e.action == "login_failed"]
    assert len(failures) >= 5 and failures[0].reader == "alice"
    assert any(e.action == "login_limited" for e in queries.audit_rows(engine, limit=50))


def test_log_in_without_the_form_token_is_refused(app):
    client = Client(app.url)
    client.request("GET", "/login")  # gets the pre-session cookie, but the form's token is left out
    status, _, body = client.request("POST", "/login", {"name": "alice", "password": PASSWORD})
    assert status == 403 and b"CSRF" in body
    assert "edgeret_reader" not in client.cookies
    other = Client(app.url)  # a forged page's token does not match this browser's cookie
    other.request("GET", "/login")
    forged = Client(app.url).csrf("/login")
    assert other.request("POST", "/login", {"csrf": forged, "name": "alice", "password": PASSWORD})[0] == 403


def test_a_forged_decision_without_the_csrf_token_is_refused(app, store, engine, records):
    client = Client(app.url)
    client.login()
    capture_id = first(records)
    before = len(queries.decisions(engine, capture_id))
    form = {"action": "override", "dr_grade": "4", "referable": "yes"}
    assert client.request("POST", f"/captures/{capture_id}/decision", form)[0] == 403
    assert client.request("POST", f"/captures/{capture_id}/decision", {**form, "csrf": "x" * 43})[0] == 403
    assert len(queries.decisions(engine, capture_id)) == before
    # and a browser without a session gets 401, with or without a token
    assert Client(app.url).request("POST", f"/captures/{capture_id}/decision", form)[0] == 401


def test_a_decision_is_a_new_row_beside_the_machine_answer_and_is_audited(app, store, engine, records):
    client = Client(app.url)
    client.login()
    capture_id = records[1]["capture_id"]
    from edgeret.hub.db.repository import HubRepository

    machine = HubRepository(engine).row(capture_id)
    csrf = client.csrf(f"/captures/{capture_id}")
    form = {"csrf": csrf, "action": "override", "gradable": "yes", "dr_grade": "3", "dme": "yes",
            "referable": "yes", "comment": "=HYPERLINK(1) haemorrhages in 4 quadrants"}
    status, headers, _ = client.request("POST", f"/captures/{capture_id}/decision", form)
    assert status == 303 and headers["location"].startswith(f"/captures/{capture_id}")
    (decision, *_) = queries.decisions(engine, capture_id)
    assert (decision.reader, decision.action, decision.dr_grade, decision.dme, decision.referable) == \
        ("alice", "override", 3, True, True)
    after = HubRepository(engine).row(capture_id)
    assert (after.dr_grade, after.referable, after.record) == (machine.dr_grade, machine.referable,
                                                                machine.record)
    events = [(e.action, e.reader) for e in queries.audit_rows(engine, capture_id=capture_id)]
    assert ("view", "alice") in events and ("decision", "alice") in events
    rows = list(csv.reader(io.StringIO(client.request("GET", "/export.csv")[2].decode())))
    assert rows[0] == list(queries.CSV_HEADER)
    mine = [r for r in rows[1:] if r[0] == capture_id]
    assert mine and mine[-1][rows[0].index("reader_dr_grade")] == "3"
    assert mine[-1][-1].startswith("'=HYPERLINK")  # a spreadsheet shows it, does not run it
    assert any(e.action == "export" for e in queries.audit_rows(engine, limit=20))


def test_a_bad_decision_is_refused(app, store, engine, records):
    client = Client(app.url)
    client.login()
    capture_id = records[2]["capture_id"]
    csrf = client.csrf(f"/captures/{capture_id}")
    for form in ({"action": "override", "dr_grade": "7"}, {"action": "delete"}):
        assert client.request("POST", f"/captures/{capture_id}/decision", {"csrf": csrf, **form})[0] == 400
    assert client.request("POST", f"/captures/{'0' * 64}/decision",
                          {"csrf": csrf, "action": "confirm"})[0] == 400
    assert client.request("GET", "/captures/not-an-id")[0] == 404


def test_the_image_is_a_scaled_png_of_the_stored_dicom_and_is_audited(app, store, engine, records):
    client = Client(app.url)
    client.login()
    capture_id = first(records)
    status, headers, body = client.request("GET", f"/captures/{capture_id}/image?w=320")
    assert status == 200 and headers["content-type"] == "image/png"
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image.shape[1] == 320  # from the 512-pixel DICOM, never the original object
    status, _, body = client.request("GET", f"/captures/{capture_id}/image?w=4000")
    assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED).shape[1] == 512  # not enlarged
    assert any(e.action == "image" for e in queries.audit_rows(engine, capture_id=capture_id))


def test_the_capture_page_shows_verdicts_charts_and_stream_facts(app, store, records):
    client = Client(app.url)
    client.login()
    rec = next(r for r in records if r["findings"].get("referable"))
    status, _, body = client.request("GET", f"/captures/{rec['capture_id']}")
    page = body.decode()
    assert status == 200
    assert "<svg" in page and "ICDR 4" in page and "Referral" in page
    assert f"{rec['stream']['bytes']:,} bytes" in page and "compression" in page
    assert 'id="next"' in page or 'id="prev"' in page


def test_the_reports_page_shows_each_site_and_is_audited(app, engine, records):
    client = Client(app.url)
    client.login()
    status, _, body = client.request("GET", "/reports?since=2026-11-01&until=2026-11-30")
    page = body.decode()
    assert status == 200 and 'id="per-site"' in page and "<svg" in page
    for site in {r["camera"] for r in records}:
        assert f"<td>{site}</td>" in page
    assert any(e.action == "report" and e.detail == "2026-11-01..2026-11-30"
               for e in queries.audit_rows(engine, limit=20))


def test_readers_cli_hashes_the_password_and_keeps_the_database_private(tmp_path, monkeypatch):
    from inprocess_cli import cli, error_line
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from edgeret.reader.models import Reader

    store = tmp_path / "hub"
    secret = tmp_path / "pw"
    secret.write_text("a long enough password\n")
    assert cli("readers", "add", "bob", "--store", str(store), "--password-file", str(secret))[0] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("another long password\n"))
    assert cli("readers", "add", "carol", "--store", str(store))[0] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    code, _, err = cli("readers", "add", "dave", "--store", str(store))
    assert code != 0 and "at least" in error_line(err)
    assert stat.S_IMODE(os.stat(store / "hub.db").st_mode) == 0o600
    engine = create_engine(sqlite_url(store))
    with Session(engine) as session:
        hashes = {r.name: r.password_hash for r in session.scalars(select(Reader))}
    engine.dispose()
    assert set(hashes) == {"bob", "carol"} and hashes["bob"].startswith("$argon2id$")
    assert "a long enough password" not in hashes["bob"]
    assert cli("readers", "disable", "bob", "--store", str(store))[0] == 0
    assert cli("readers", "list", "--store", str(store))[1].splitlines() == ["bob  (disabled)", "carol"]


@pytest.mark.slow  # a real `edgeret serve` process
def test_edgeret_serve_prints_the_app_url_and_a_reader_session_cannot_upload(tmp_path):
    import re
    import subprocess
    import sys
    import threading

    from edgeret.link.protocol import wait_for_hub

    store = tmp_path / "hub"
    token = tmp_path / "token"
    token.write_text("camera-token-0123456789\n")
    add_reader(store, "alice")
    hub = subprocess.Popen([sys.executable, "-m", "edgeret", "serve", "--store", str(store), "--port", "0",
                            "--token-file", str(token)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in hub.stdout:
            lines.append(line)
            if "reader app:" in line:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert found.wait(90), "".join(lines)
        text = "".join(lines)
        hub_url = re.search(r"hub: listening on (http://[0-9.:]+)", text).group(1)
        app_url = re.search(r"reader app: (http://[0-9.:]+)/", text).group(1)
        wait_for_hub(hub_url, timeout=10)
        client = Client(app_url)
        assert client.login() == 303
        # the camera's token opens no page of the app
        camera = {"Authorization": "Bearer camera-token-0123456789"}
        assert client.request("GET", "/", headers=camera)[0] == 401
        # the reader's session cookie uploads nothing to the hub
        uploader = Client(hub_url)
        uploader.cookies = dict(client.cookies)
        status, _, _ = uploader.request("PUT", f"/v1/captures/{'a' * 64}",
                                        headers={"Content-Length": "0"})
        assert status == 401
        assert uploader.request("GET", f"/v1/captures/{'a' * 64}")[0] == 401
    finally:
        hub.terminate()
        hub.wait(timeout=30)
