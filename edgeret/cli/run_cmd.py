"""`edgeret run TASK IMAGE...`: run a task on images with the default backend."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeret.cli.backend_arg import backend_from_args
from edgeret.cli.output import print_json
from edgeret.devices.profiles import DEFAULT_DEVICE
from edgeret.errors import EdgeretError
from edgeret.runtime.task_session import TaskSession


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="task name (see `edgeret plugins`)")
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--model", type=Path, help="model file (default: the task's own)")
    parser.add_argument("--backend", help="backend name (default: the device's first available)")
    parser.add_argument("--device", default=DEFAULT_DEVICE, help="device profile or alias")
    parser.add_argument("--threads", type=int, help="inference threads")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("-o", "--output", type=Path,
                        help="image-to-image tasks (denoise, denoise-oct, sr): write the result here "
                             "(a folder for several images)")
    parser.add_argument("--scale", type=int, help="sr: 2 (default) or 4")
    parser.add_argument("--tile", type=int, default=512, help="image-to-image tasks: tile size (pixels)")


def run(args: argparse.Namespace) -> int:
    host = args.host
    task = host.task(args.task)
    backend = backend_from_args(args)
    if args.output is not None or args.scale is not None:
        from edgeret.cli.restore_cmd import restore_file

        return restore_file(args, task, backend)
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
