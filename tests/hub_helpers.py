"""Start a real hub (HTTP on loopback, real codec and graders on ONNX Runtime) and make captures."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgeret.codec.session import CodecCatalog, CodecSession
from edgeret.hub.app import build_hub
from edgeret.link.protocol import HUB_TASKS
from edgeret.plugin.host import get_host
from edgeret.runtime.grading import Grader


def start_hub(store: Path, *, port: int = 0, pacs: str | None = None, log=None, token: str | None = None,
              tls=None, cameras: Path | None = None, backend: str = "onnxruntime",
              max_pixels: int | None = None, **limits: float):
    """A hub serving in a thread on loopback (with its PACS forwarder when ``pacs``, HTTPS with ``tls``);
    ``.stop()`` after. Its log lines are kept in ``.lines`` unless ``log`` is given; ``limits``: the HTTP
    server's (``max_connections``, ``request_deadline``, ``idle_timeout``, ``read_timeout``)."""
    from edgeret.hub.pacs import StowClient
    from edgeret.link.retry import Backoff

    host = get_host()
    backend = host.backend(backend)
    codec = CodecSession(CodecCatalog.of_plugin(host), backend, threads=1)
    lines: list[str] = []
    server = build_hub(store, codec, Grader(host, backend, HUB_TASKS, threads=1), port=port,
                       pacs=StowClient(pacs, timeout=10) if pacs else None, token=token,
                       log=log or lines.append, backoff=Backoff(first=0.2, cap=1.0), poll=0.5,
                       tls=tls, cameras=cameras, **({"max_pixels": max_pixels} if max_pixels else {}),
                       **limits).start()
    server.lines = lines
    stop = server.stop

    def drain_then_stop() -> None:  # as edgeret serve does at SIGTERM: the queued captures are finished
        server.drain(180)
        stop()

    server.stop, server.stop_at_once = drain_then_stop, stop
    return server


def write_captures(inbox: Path, n_fundus: int = 1, n_oct: int = 1, seed: int = 0) -> list[Path]:
    """Phantom captures as a camera writes them: colour PNG fundus photos, 8-bit PNG OCT B-scans."""
    from edgeret.build.data.fundus import generate_fundus
    from edgeret.build.data.oct import generate_oct

    inbox.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_fundus):
        image = generate_fundus(seed + i, size=512, quality="good").image
        paths.append(inbox / f"photo{i}.png")
        cv2.imwrite(str(paths[-1]), np.ascontiguousarray(image[:, :, ::-1]))
    for i in range(n_oct):
        image = generate_oct(seed + i, height=256, width=512, quality="good").image
        paths.append(inbox / f"scan{i}.png")
        cv2.imwrite(str(paths[-1]), image)
    return paths


def make_agent(inbox: Path, spool: Path, hub_url: str, *, timeout: float = 5.0, retry_first: float = 0.05,
               threads: int = 1, tls=None):
    """The agent as `edgeret agent` builds it, in this process (logs kept in agent.lines; also used by
    tools/bench_upload.py)."""
    from edgeret.camera.agent import Agent
    from edgeret.camera.capture import CaptureProcessor, PluginCodec
    from edgeret.camera.spool import Spool
    from edgeret.camera.upload import Uploader
    from edgeret.link.protocol import DEVICE_TASKS
    from edgeret.link.retry import Backoff

    host = get_host()
    backend = host.backend("onnxruntime")
    codec = CodecSession(CodecCatalog.of_plugin(host), backend, threads=threads)
    processor = CaptureProcessor(PluginCodec(codec), Grader(host, backend, DEVICE_TASKS, threads=threads),
                                 device="test-camera")
    lines: list[str] = []
    agent = Agent(inbox, Spool(spool), processor, Uploader(hub_url, timeout=timeout, tls=tls), settle=0.0,
                  backoff=Backoff(first=retry_first, cap=0.5), log=lines.append)
    agent.lines = lines
    return agent


def one_spooled_scan(tmp_path: Path):
    """An OCT capture graded, encoded and spooled by the agent (not uploaded)."""
    write_captures(tmp_path / "inbox", n_fundus=0, n_oct=1)
    agent = make_agent(tmp_path / "inbox", tmp_path / "spool", "http://127.0.0.1:1")
    agent.ingest()
    (item,) = agent.spool.pending()
    agent.spool.close()  # as when that agent process ends
    return item


def empty_stream(catalog: CodecCatalog, rate_id: str, width: int, height: int) -> bytes:
    """A well-formed stream of codec ``rate_id`` declaring ``width`` x ``height`` with empty payloads
    (an empty payload is a valid coding of an all-lowest-symbol latent): about 200 bytes whatever the
    size, what an attacker sends a hub. Also used by tools/bench_hub_memory.py."""
    from edgeret.codec.ert.container import Header, LatentInfo, encode_stream

    model, rate = catalog.rates[rate_id]
    shapes = model.latent_shapes(height, width)
    header = Header(codec=rate.id, model_name=rate.model_name, model_hash=rate.model_hash, height=height,
                    width=width, channels=model.channels, bit_depth=8, modality=model.modality,
                    latents=tuple(LatentInfo(shape, table.table_id)
                                  for shape, table in zip(shapes, rate.tables, strict=True)))
    return encode_stream(header, [b""] * len(shapes))


def wait_for(predicate, seconds: float = 30.0) -> bool:
    """Poll ``predicate`` every 0.1 s until it is true (True) or ``seconds`` pass (False)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def stored_records(store: Path, *, settled: bool = True, seconds: float = 180.0) -> dict[str, dict]:
    """{capture id: record} as the hub's database holds them (read beside a running hub: SQLite WAL).
    ``settled``: first wait (up to ``seconds``) until the hub's workers have finished every capture
    (``graded`` or ``failed``): the upload's answer comes before decoding."""
    import time

    from edgeret.hub.db import DB_FILE, open_repository, sqlite_url

    if not (store / DB_FILE).exists():
        return {}
    db = open_repository(sqlite_url(store), upgrade=False)
    try:
        deadline = time.monotonic() + seconds
        while settled and (db.ids("stored") or db.ids("decoded")) and time.monotonic() < deadline:
            time.sleep(0.1)
        return {capture_id: db.get(capture_id) for capture_id in db.ids()}
    finally:
        db.close()


def stored_record(store: Path, capture_id: str, *, settled: bool = True) -> dict | None:
    return stored_records(store, settled=settled).get(capture_id)


def pacs_waiting(store: Path) -> list[str]:
    """The capture ids the hub's PACS outbox still has to send."""
    from edgeret.hub.db import open_repository, sqlite_url

    db = open_repository(sqlite_url(store), upgrade=False)
    try:
        return db.outbox_ids()
    finally:
        db.close()
