"""`edgeret run TASK IMAGE...`: run a task on images with the default backend."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeret.backend_chain import require_backend
from edgeret.cli.output import print_json
from edgeret.errors import EdgeretError
from edgeret.host import device_catalog
from edgeret.inference import TaskSession

DEFAULT_DEVICE = "x86-cpu"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="task name (see `edgeret plugins`)")
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--model", type=Path, help="model file (default: the task's own)")
    parser.add_argument("--backend", help="backend name (default: the device's first available)")
    parser.add_argument("--device", default=DEFAULT_DEVICE, help="device profile or alias")
    parser.add_argument("--threads", type=int, help="inference threads")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    host = args.host
    task = host.task(args.task)
    if args.backend:
        backend = host.backend(args.backend)
        availability = backend.available()
        if not availability.ok:
            raise EdgeretError(f"backend '{backend.name}' is unavailable: {availability.reason}")
    else:
        profile = device_catalog(host, args.devices_dir).resolve(args.device)
        backend = require_backend(profile, host.backends())
    session = TaskSession(task, backend, model=args.model, threads=args.threads)
    results, failed = [], 0
    for path in args.images:
        try:
            results.append({"image": str(path), **session.predict_file(path)})
        except EdgeretError as exc:  # one bad image must not hide the others' results
            failed += 1
            print(f"edgeret: error: {exc}", file=sys.stderr)
    if args.json:
        print_json({"task": task.name, "backend": backend.name, "results": results})
    else:
        for result in results:
            fields = ", ".join(f"{k}={_short(v)}" for k, v in result.items() if k != "image")
            print(f"{result['image']}: {fields}")
    return 2 if failed else 0


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
