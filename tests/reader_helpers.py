"""Hub stores for the reader app's tests, benchmark and demo: synthetic capture records written through the
hub's own code (``HubRepository.add`` / ``columns``, ``capture_to_dicom``) into a real SQLite database, and
the reader app served by uvicorn on loopback."""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

PASSWORD = "reader-test-password"
SITES = ("north", "south", "east")
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)


def capture_id(i: int) -> str:
    return hashlib.sha256(f"synthetic capture {i}".encode()).hexdigest()


def record(i: int, rng: random.Random, *, received: datetime | None = None) -> dict[str, Any]:
    """A record as the hub's intake writes it (fundus dr-grade or OCT quality-oct findings)."""
    cid = capture_id(i)
    received = received or T0 + timedelta(minutes=7 * i)
    modality = "oct" if i % 5 == 4 else "fundus"
    device_gradable = rng.random() > 0.12
    if modality == "oct":
        p = [rng.random() for _ in range(3)]
        p = [v / sum(p) for v in p]
        grade = ("good", "usable", "poor")[max(range(3), key=p.__getitem__)]
        findings = {"task": "quality-oct", "grade": grade, "gradable": grade != "poor",
                    "p_good": p[0], "p_usable": p[1], "p_poor": p[2],
                    "sublabels": {"low_signal": rng.random(), "off_centre": rng.random(),
                                  "motion": rng.random(), "cut_edge": rng.random()}, "flags": []}
        device = {"task": "quality-oct", "grade": grade if device_gradable else "poor",
                  "gradable": device_gradable}
        width, height, codec = 512, 256, "oct-factorized-q4"
    else:
        poor = rng.random() < 0.15
        dr = [rng.random() ** 3 for _ in range(5)]
        dr = [v / sum(dr) for v in dr]
        grade = max(range(5), key=dr.__getitem__)
        quality = "poor" if poor else rng.choice(("good", "usable"))
        findings = {"task": "dr-grade", "quality": quality, "p_quality_good": 0.6, "p_quality_usable": 0.3,
                    "p_quality_poor": 0.1, "gradable": not poor}
        if poor:
            findings.update(result="retake", dr_grade=None, referable=None, dme=None)
        else:
            p_dme = rng.random() * 0.6
            findings.update(result=("no DR", "mild", "moderate", "severe", "proliferative")[grade],
                            dr_grade=grade, dme=p_dme >= 0.5, referable=grade >= 2 or p_dme >= 0.5,
                            p_referable=round(1 - (1 - p_dme) * (1 - sum(dr[2:])), 6), p_dme=p_dme,
                            **{f"p_dr_{k}": round(v, 6) for k, v in enumerate(dr)})
        device = {"task": "quality-fundus", "quality": quality if device_gradable else "poor",
                  "gradable": device_gradable, "p_poor": 0.1}
        width, height, codec = 512, 512, "fundus-factorized-q6"
    nbytes = rng.randint(3000, 40000)
    return {
        "capture_id": cid, "stream_sha256": cid, "received_at": received.timestamp(),
        "source_name": f"img{i}.png", "device": "test-camera", "camera": SITES[i % len(SITES)],
        "modality": modality, "device_quality": device, "findings": findings,
        "patient": {"patient_id": f"P{i:06d}"},
        "stream": {"bytes": nbytes, "bpp": nbytes * 8 / (width * height), "codec": codec,
                   "compression_ratio": width * height * (3 if modality == "fundus" else 1) / nbytes,
                   "width": width, "height": height, "modality": modality, "model": "m"},
        "decode_ms": 120.0,
        "dicom": {"sop_instance_uid": f"2.25.{i}"},
        "pacs": None,
    }


def bulk_captures(engine, n: int, seed: int = 0, batch: int = 5000) -> None:
    """``n`` synthetic captures in a few large transactions (what 100,000 uploads leave in the table)."""
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    from edgeret.hub.db.models import GRADED, Capture
    from edgeret.hub.db.repository import columns, utcnow

    rng = random.Random(seed)
    for start in range(0, n, batch):
        rows = []
        for i in range(start, min(n, start + batch)):
            rec = record(i, rng)
            rows.append({"capture_id": rec["capture_id"], "status": GRADED, "updated_at": utcnow(),
                         "dicom_path": None, "record": rec, **columns(rec)})
        with Session(engine) as session, session.begin():
            session.execute(insert(Capture), rows)


def store_with_images(root: Path, n: int = 12, seed: int = 0) -> list[dict[str, Any]]:
    """A hub store (``HubStore``: 0700 folders, 0600 SQLite) with ``n`` captures, each with its DICOM file
    of a phantom image; their records."""
    import numpy as np

    from edgeret.build.data.fundus.generate import generate_fundus
    from edgeret.build.data.oct.generate import generate_oct
    from edgeret.hub.dicom_out import capture_to_dicom
    from edgeret.hub.store import PRIVATE_FILE, HubStore
    from edgeret.link.atomic import write_bytes_atomic

    rng = random.Random(seed)
    store = HubStore(root)
    records = []
    try:
        for i in range(n):
            rec = record(i, rng)
            if rec["modality"] == "oct":
                image = generate_oct(i, height=256, width=512, quality="good").image
            else:
                image = generate_fundus(i, size=512, quality="good").image
            dicom = capture_to_dicom(np.ascontiguousarray(image), capture_id=rec["capture_id"],
                                     modality=rec["modality"], bit_depth=8, findings=rec["findings"],
                                     patient=rec["patient"], station=rec["camera"])
            # as the hub's intake and a worker write it: stream + row, then DICOM + graded row
            store.save(rec["capture_id"], b"stream", rec)
            path = store.dicom_path(rec["capture_id"])
            write_bytes_atomic(path, dicom, mode=PRIVATE_FILE)
            store.db.complete({**rec}, dicom_path=str(path.relative_to(store.root)), forward=False)
            records.append(rec)
    finally:
        store.close()
    return records


def add_reader(store: Path, name: str = "alice", password: str = PASSWORD) -> None:
    from edgeret.hub.db import create_engine, migrate, sqlite_url
    from edgeret.hub.store import private_database_file
    from edgeret.reader.accounts import add_reader as add

    store.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_database_file(store)
    engine = create_engine(sqlite_url(store))
    try:
        migrate(engine)
        add(engine, name, password)
    finally:
        engine.dispose()


def start_reader(store: Path, **kw: Any):
    """The reader app on the store's SQLite, served by uvicorn in a thread on loopback; ``.stop()`` after."""
    from edgeret.hub.db import sqlite_url
    from edgeret.reader.serve import ReaderServer

    lines: list[str] = []
    server = ReaderServer(sqlite_url(store), store, log=lines.append, **kw).start()
    server.lines = lines
    return server


class Client:
    """A cookie-keeping HTTP client on loopback that does not follow redirects (so tests see them)."""

    def __init__(self, base: str, tls=None) -> None:
        self.base, self.cookies, self.tls = base, {}, tls
        self.set_cookies: list[str] = []

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        import http.client
        from http.cookies import SimpleCookie
        from urllib.parse import urlencode, urlsplit

        url = urlsplit(self.base)
        conn = (http.client.HTTPSConnection(url.hostname, url.port, timeout=30, context=self.tls)
                if url.scheme == "https" else http.client.HTTPConnection(url.hostname, url.port, timeout=30))
        body = urlencode(form).encode() if form is not None else None
        sent = dict(headers or {})
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            data = response.read()
            for line in response.headers.get_all("Set-Cookie") or []:
                self.set_cookies.append(line)
                for name, morsel in SimpleCookie(line).items():
                    if morsel["max-age"] == "0" or not morsel.value:
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            conn.close()

    def csrf(self, path: str) -> str:
        import re

        status, _, body = self.request("GET", path)
        assert status == 200, (path, status)
        return re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()

    def login(self, name: str = "alice", password: str = PASSWORD) -> int:
        token = self.csrf("/login")
        return self.request("POST", "/login", {"csrf": token, "name": name, "password": password})[0]
