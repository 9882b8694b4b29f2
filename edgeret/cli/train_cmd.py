"""`edgeret train TASK` and `edgeret eval TASK` (build host: needs the export extra)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeret.errors import EdgeretError, InputError
from edgeret.link.atomic import make_folders
from edgeret.plugin.host import import_optional
from edgeret.plugin.registrations import EvalRequest, TrainRequest


def configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task")
    parser.add_argument("--data", type=Path, required=True, action="append",
                        help="dataset folder (any known layout); repeat to mix real and phantom sets")
    parser.add_argument("--folds", type=int, default=0, metavar="K",
                        help="patient-level K-fold cross-validation first (tasks that support it): "
                             "per-fold and pooled figures, then the final model on all the data")
    parser.add_argument("--out", type=Path, required=True, help="where weights and checkpoints go")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    parser.add_argument("--variant", help="train one variant only (see the task's recipe)")
    parser.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task")
    parser.add_argument("--data", type=Path, required=True, help="held-out dataset folder")
    parser.add_argument("--models", type=Path, help="trained weights folder (default: the task's)")
    parser.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch")
    parser.add_argument("--out", type=Path, default=Path("benchmarks"), help="report folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _task_with(args: argparse.Namespace, attribute: str):
    task = args.host.task(args.task)
    if getattr(task, attribute) is None:
        raise EdgeretError(f"task '{task.name}' does not support `{attribute}`")
    for folder in args.data if isinstance(args.data, list) else [args.data]:
        if not folder.exists():
            raise InputError(folder, "dataset folder does not exist")
    make_folders("output folder", args.out)  # before loading data or training, not after
    import_optional("torch", "export")
    return task


def run_train(args: argparse.Namespace) -> int:
    task = _task_with(args, "train")
    if args.no_resume and (args.out / "checkpoints").exists():
        import shutil

        shutil.rmtree(args.out / "checkpoints")
    out = task.train(TrainRequest(
        data_dir=args.data[0], out_dir=args.out, epochs=args.epochs, batch_size=args.batch_size,
        seed=args.seed, threads=args.threads, resume=not args.no_resume, variant=args.variant,
        progress=not args.quiet, more_data=tuple(args.data[1:]), folds=args.folds,
    ))
    print(f"trained {task.name}; weights in {out}")
    print(f"next: edgeret eval {task.name} --data HELD_OUT_DIR --models {out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    task = _task_with(args, "evaluate")
    task.evaluate(EvalRequest(data_dir=args.data, out_dir=args.out, models_dir=args.models,
                              backend=args.backend, progress=not args.quiet))
    print(f"reports written under {args.out}/")
    return 0
