"""`edgeret agent` (device: inbox -> grade -> encode -> spool -> hub) and `edgeret serve` (the hub).

Both run on the device profile's first available backend with no torch. The
agent with ``--once`` processes the inbox, uploads what it can and exits: 0 when
everything was delivered, 3 when streams are still queued (safe on disk), 1
when captures failed or were refused. Without ``--once`` it watches the inbox.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from edgeret.cli.codec_cmd import bundle_encoder, codec_session
from edgeret.devices.profiles import DEFAULT_DEVICE
from edgeret.errors import EdgeretError
from edgeret.link.protocol import DEFAULT_PORT, DEVICE_TASKS, HUB_TASKS, TOKEN_ENV, read_token
from edgeret.reader.serve import serve_options, start_beside_hub


def _task_map_option(parser: argparse.ArgumentParser, flag: str, defaults: dict[str, str],
                     what: str) -> None:
    shown = ", ".join(f"{m}={t}" for m, t in defaults.items())
    parser.add_argument(flag, action="append", default=[], metavar="MODALITY=TASK",
                        help=f"{what} (repeatable; default {shown}; TASK 'none' skips it): any installed "
                             "task plugin, yours included")


def task_map(args: argparse.Namespace, given: list[str], defaults: dict[str, str],
             flag: str) -> dict[str, str]:
    """Defaults overridden by MODALITY=TASK pairs; unknown tasks and modalities fail in one line."""
    tasks = dict(defaults)
    for pair in given:
        modality, _, task = pair.partition("=")
        if modality not in ("fundus", "oct") or not task:
            raise EdgeretError(f"{flag} {pair!r}: expected fundus=TASK or oct=TASK")
        if task == "none":
            tasks.pop(modality, None)
            continue
        args.host.task(task)  # unknown -> PluginError naming the installed tasks
        tasks[modality] = task
    return tasks


def _token_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token-file", type=Path,
                        help=f"shared secret the agent sends and the hub requires (one line, >= 16 "
                             f"characters; default ${TOKEN_ENV}; none: no check, for loopback and trusted "
                             "networks)")


def _tls_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-cert", type=Path, metavar="PEM",
                        help="serve HTTPS with this certificate (chain), PEM; needs --tls-key")
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's private key, PEM")


def _runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, help="codec weights folder (default: the codec plugin's)")
    parser.add_argument("--backend", help="backend name (default: the device's first available)")
    parser.add_argument("--device", default=DEFAULT_DEVICE, help="device profile or alias")
    parser.add_argument("--threads", type=int, help="inference threads")


def configure_agent(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inbox", type=Path, required=True,
                        help="folder the camera writes captures to "
                             "(IMAGE.png [+ IMAGE.json patient side-car])")
    parser.add_argument("--spool", type=Path, required=True, help="the upload queue on local storage")
    parser.add_argument("--hub", required=True, help="hub URL, e.g. http://hub.example:8470")
    parser.add_argument("--rate", help="codec bits per pixel or rate-point id (default: the codec's default "
                                       "rate point, benchmarks/grading-after-codec.md)")
    parser.add_argument("--bundle", type=Path,
                        help="run the exported bundle's codec encoder and quality model (e.g. INT8), as the "
                             "camera does; captures must have the profile's size")
    parser.add_argument("--full-scale", action="store_true",
                        help="never code a capture at half resolution (by default an oversampled capture "
                             "graded good may be, at the codec's low rate points)")
    parser.add_argument("--fallback", choices=["jxl", "off"], default="jxl",
                        help="jxl: per capture, send JPEG XL in at most the learned stream's bytes when it "
                             "scores higher (MS-SSIM); off: the learned codec only (docs/upload.md)")
    parser.add_argument("--once", action="store_true", help="process the inbox, upload, exit")
    parser.add_argument("--max-wait", type=float, default=60.0,
                        help="--once: give up uploading after this many seconds (streams stay queued)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="a capture is taken once unchanged for this many seconds (camera still writing)")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between inbox scans")
    parser.add_argument("--min-free-mb", type=float, default=200.0,
                        help="stop taking captures from the inbox while the spool's disk has less free")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the hub's answer")
    _token_option(parser)
    parser.add_argument("--ca-file", type=Path, metavar="PEM",
                        help="https:// hub: trust this CA (or the hub's self-signed certificate), PEM "
                             "(default: the system's certificate authorities)")
    _task_map_option(parser, "--quality", DEVICE_TASKS, "the task that grades each capture on the device")
    parser.add_argument("--retry-first", type=float, default=1.0,
                        help="first retry delay in seconds (doubles up to --retry-cap)")
    parser.add_argument("--retry-cap", type=float, default=300.0, help="longest retry delay in seconds")
    _runtime_options(parser)


def private_umask() -> None:
    """Files and folders this process creates are its user's alone (captures, streams, records and DICOM
    hold patient data; the stores also set their modes explicitly)."""
    import os

    os.umask(0o077)


def run_agent(args: argparse.Namespace) -> int:
    from edgeret.camera.agent import Agent
    from edgeret.camera.capture import CaptureProcessor, PluginCodec
    from edgeret.camera.spool import Spool
    from edgeret.camera.upload import Uploader
    from edgeret.link.retry import Backoff
    from edgeret.link.tls import client_context
    from edgeret.runtime.grading import Grader

    private_umask()
    tls = client_context(args.ca_file) if args.ca_file else None
    uploader = Uploader(args.hub, timeout=args.timeout, token=read_token(args.token_file), tls=tls)
    if args.bundle is not None:
        codec, grader, runs_on = _from_bundle(args)
    else:
        session, backend = codec_session(args)
        codec, runs_on = PluginCodec(session, args.rate), backend.name
        tasks = task_map(args, args.quality, DEVICE_TASKS, "--quality")
        grader = Grader(args.host, backend, tasks, threads=args.threads)
    processor = CaptureProcessor(codec, grader, device=args.device, half_scale=not args.full_scale,
                                 fallback=args.fallback)
    agent = Agent(args.inbox, Spool(args.spool), processor, uploader, settle=args.settle,
                  backoff=Backoff(first=args.retry_first, cap=args.retry_cap),
                  min_free_mb=args.min_free_mb, log=_say)
    if args.once:
        return agent.run_once(max_wait=args.max_wait)
    stop = _stop_on_signals()
    _say(f"agent: watching {args.inbox}, sending to {args.hub}; encoder on {runs_on}, "
         f"{grader.describe() or 'no quality model'} (Ctrl-C to stop)")
    agent.run_forever(poll=args.poll, should_stop=stop.is_set)
    return 0


def _from_bundle(args: argparse.Namespace):
    """The camera's way: the exported bundle's encoder and quality model(s) on its device's backend."""
    from edgeret.camera.capture import BundleCodec
    from edgeret.runtime.grading import Grader

    encoder = bundle_encoder(args)
    tasks = task_map(args, args.quality, DEVICE_TASKS, "--quality")
    grader = Grader.from_bundle(args.host, args.bundle, tasks, backend=args.backend, threads=args.threads)
    return BundleCodec(encoder, args.rate), grader, f"{encoder.backend} ({encoder.precision} bundle)"


def configure_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", type=Path, required=True, help="folder for streams, DICOM and records")
    parser.add_argument("--host", dest="bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port (0: any free one)")
    parser.add_argument("--pacs", help="DICOMweb base URL to forward to, e.g. http://pacs:8042/dicom-web")
    _token_option(parser)
    parser.add_argument("--cameras", type=Path, metavar="FILE",
                        help="per-camera tokens instead of one shared one: 'NAME TOKEN' per line; each "
                             "capture's record and DICOM name the camera; a deleted line revokes it at once")
    _tls_server_options(parser)
    _task_map_option(parser, "--grade", HUB_TASKS, "the task that grades each decoded capture at the hub")
    parser.add_argument("--pacs-user",
                        help="PACS user (basic auth); the password is read from $EDGERET_PACS_PASSWORD")
    parser.add_argument("--database", metavar="URL",
                        help="where the records and the PACS outbox live, a SQLAlchemy URL (default: SQLite "
                             "in the store, STORE/hub.db; postgresql+psycopg://... for a multi-node hub)")
    parser.add_argument("--max-pixels", type=_positive_int, default=None, metavar="N",
                        help="largest image a capture's header may declare, checked before decoding "
                             "(default 12000000: 4000x3000; the hub's peak memory is about 0.65 GB + 30 "
                             "bytes per pixel)")
    parser.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                        help="captures decoded and graded at once, after the upload is answered (default 1; "
                             "each needs up to ~1 GB at the default --max-pixels)")
    parser.add_argument("--queue-limit", type=_positive_int, default=32, metavar="N",
                        help="captures stored and waiting for a worker at most (default 32); then uploads "
                             "get 503 with Retry-After and the cameras keep them queued")
    parser.add_argument("--drain-seconds", type=_positive_float, default=60.0, metavar="SECONDS",
                        help="at SIGTERM/SIGINT: time the workers get to finish the queued captures "
                             "(default 60); the rest are decoded at the next start")
    parser.add_argument("--max-connections", type=_positive_int, default=None, metavar="N",
                        help="connections served at once (default 64); more get 503 with Retry-After")
    parser.add_argument("--request-deadline", type=_positive_float, default=None, metavar="SECONDS",
                        help="time a request's line, headers and body may take from their first byte "
                             "(default 60); a slower client is cut off")
    serve_options(parser)  # the reader app beside the hub (edgeret.reader)
    _runtime_options(parser)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0 to 65535)")
    return int(text)


def run_serve(args: argparse.Namespace) -> int:
    import os

    from edgeret.hub.app import build_hub
    from edgeret.hub.intake import MAX_PIXELS
    from edgeret.hub.pacs import StowClient
    from edgeret.link.tls import check_pair, server_context
    from edgeret.plugin.host import import_optional
    from edgeret.runtime.grading import Grader

    private_umask()
    check_pair(args.tls_cert, args.tls_key)
    tls = server_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    import_optional("pydicom", "dicom")
    import_optional("sqlalchemy", "hub")
    import_optional("prometheus_client", "hub")
    codec, backend = codec_session(args)
    client = None
    if args.pacs:
        try:
            client = StowClient(args.pacs, user=args.pacs_user,
                                password=os.environ.get("EDGERET_PACS_PASSWORD"))
        except ValueError as e:
            raise EdgeretError(f"--pacs: {e}") from None
    tasks = task_map(args, args.grade, HUB_TASKS, "--grade")
    grader = Grader(args.host, backend, tasks, threads=args.threads)
    token = read_token(args.token_file)
    limits = {name: value for name, value in (("max_connections", args.max_connections),
                                              ("request_deadline", args.request_deadline)) if value}
    try:
        server = build_hub(args.store, codec, grader, bind=args.bind, port=args.port, pacs=client,
                           token=token, log=_say, tls=tls, cameras=args.cameras,
                           max_pixels=args.max_pixels or MAX_PIXELS, database_url=args.database,
                           workers=args.workers, queue_limit=args.queue_limit, **limits)
    except OSError as e:
        raise EdgeretError(f"cannot listen on {args.bind}:{args.port} ({e.strerror})") from None
    stop = _stop_on_signals()
    threading.Thread(target=lambda: (stop.wait(), server.httpd.shutdown()), daemon=True).start()
    _say(f"hub: listening on {server.url}, store {args.store}, {backend.name}"
         + f", {args.workers} worker(s)" + (f", forwarding to {args.pacs}" if args.pacs else ", no PACS")
         + (f", cameras: {', '.join(server.cameras.names)}" if server.cameras else ""))
    for warning in serve_warnings(args.bind, token=token is not None or args.cameras is not None,
                                  tls=tls is not None, key=args.tls_key):
        _say(f"hub: WARNING: {warning}")
    reader = start_beside_hub(args, server.httpd.server_address[1], _say)
    server.serve_forever()  # until SIGTERM/SIGINT: no new connections from here on
    if reader:
        reader.stop()
    if not server.drain(args.drain_seconds):
        _say(f"hub: {server.intake.pool.depth()} captures still queued after {args.drain_seconds:g} s; "
             f"they are decoded at the next start")
    server.close()
    return 0


def serve_warnings(bind: str, *, token: bool, tls: bool, key: Path | None) -> list[str]:
    """What makes this hub unsafe outside a trusted machine (said at start, it still starts)."""
    import ipaddress
    import os

    try:
        loopback = ipaddress.ip_address(bind).is_loopback
    except ValueError:
        loopback = bind == "localhost"
    warnings = []
    if not token:
        warnings.append("no camera token (--token-file or --cameras): anyone who reaches the port can "
                        "upload and read records")
    if not tls and not loopback:
        warnings.append(f"listening on {bind} without TLS (--tls-cert/--tls-key): captures and patient "
                        f"fields cross the network in clear")
    if key is not None and os.stat(key).st_mode & 0o077:
        warnings.append(f"{key}: the TLS key is readable by other users (chmod 600 it)")
    return warnings


def _say(line: str) -> None:
    print(line, flush=True)


def _stop_on_signals() -> threading.Event:
    """SIGTERM / SIGINT end the loop between two captures, never in the middle of a write."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop
