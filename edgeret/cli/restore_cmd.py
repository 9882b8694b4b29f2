"""`edgeret denoise` and `edgeret upscale`: image in, image out, any size, no torch.

    edgeret denoise IMAGE -o OUT.png [--oct] [--backend B] [--tile 512] [--flips 1|2|4]
    edgeret upscale IMAGE --scale 2|4 -o OUT.png

Both read the image (8- or 16-bit, gray or RGB), run the task's ONNX model on
the device's first available backend (as `edgeret run` does) in overlapping
tiles (`edgeret.images.tiling`, no seams), and write the result atomically with the
input's bit depth. Several images: `-o` is a folder. `restore_file` is the
same pipeline for `edgeret run denoise|denoise-oct|sr IMAGE -o OUT`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from edgeret.cli.output import print_json
from edgeret.devices.profiles import DEFAULT_DEVICE
from edgeret.errors import EdgeretError, InputError
from edgeret.plugin.registrations import BackendPlugin, TaskPlugin

RESTORE_TASKS = ("denoise", "denoise-oct", "sr")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, TIFF, DICOM)")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output image (.png/.tif/.jpg); a folder when several images are given")
    parser.add_argument("--model", type=Path, help="model file (default: the task's own)")
    parser.add_argument("--backend", help="backend name (default: the device's first available)")
    parser.add_argument("--device", default=DEFAULT_DEVICE, help="device profile or alias")
    parser.add_argument("--threads", type=int, help="inference threads")
    parser.add_argument("--tile", type=int, default=512, help="tile size in input pixels (default 512)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def configure_denoise(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--oct", action="store_true",
                        help="grayscale OCT B-scans (task denoise-oct) instead of colour photographs")
    parser.add_argument("--flips", type=int, choices=(1, 2, 4), default=1,
                        help="average the model over 1 (default), 2 or 4 flips of each tile: that many "
                             "times the compute (docs: plugins/tasks/denoise/TRAINING.md)")


def configure_upscale(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--scale", type=int, default=2, help="2 (default) or 4")


def resolve_backend(args: argparse.Namespace) -> BackendPlugin:
    """The backend `--backend` names, else the device profile's first available one (as `run`)."""
    from edgeret.cli.backend_arg import backend_from_args

    return backend_from_args(args)


class Restorer:
    """One restoration task's model loaded on one backend: image array in, image array out."""

    def __init__(self, task: TaskPlugin, backend: BackendPlugin, *, scale: int | None = None,
                 model: Path | None = None, threads: int | None = None, tile: int = 512,
                 flips: int = 1) -> None:
        from edgeret.runtime.task_session import TaskSession

        if task.name not in RESTORE_TASKS:
            raise EdgeretError(f"task '{task.name}' does not write images; -o works with "
                               f"{', '.join(RESTORE_TASKS)}")
        if scale is not None and task.name != "sr":
            raise EdgeretError(f"--scale applies to the sr task, not {task.name}")
        self.task, self.scale, self.tile, self.flips = task, scale or 2, tile, flips
        if tile < 64:
            raise EdgeretError(f"--tile must be at least 64 pixels, not {tile}")
        if task.name == "sr" and model is None:
            from edgeret_plugins.tasks.sr import model_path

            model = model_path(self.scale)
        self.session = TaskSession(task, backend, model=model, threads=threads)
        self.fixed = bundle_input_size(self.session.model, task.name) if task.name != "sr" else None

    def __call__(self, image):
        runner = self.session.runner
        if self.task.name == "sr":
            from edgeret_plugins.tasks.sr.processing import runner_fn, upscale

            return upscale(image, runner_fn(runner, self.task), self.scale, tile=self.tile)
        from edgeret_plugins.tasks.denoise.processing import restore, runner_fn

        return restore(image, runner_fn(runner, self.task), self.task, tile=self.tile, fixed=self.fixed,
                       flips=self.flips)

    def file(self, source: Path, target: Path) -> dict[str, Any]:
        from edgeret.images.read_write import ARRAY, read_image, write_image

        image = read_image(source)
        if image.ndim == 4 or (image.ndim == 3 and image.shape[2] not in (1, 3)):
            raise InputError(source, f"is a multi-frame volume {image.shape}; export one frame first")
        start = time.perf_counter()
        try:
            result = self(image)
        except InputError as exc:
            if exc.path != ARRAY:
                raise
            raise InputError(source, exc.problem) from None
        seconds = time.perf_counter() - start
        write_image(target, result)
        return {"image": str(source), "output": str(target), "task": self.task.name,
                "backend": self.session.backend.name,
                "input_size": [int(image.shape[1]), int(image.shape[0])],
                "output_size": [int(result.shape[1]), int(result.shape[0])],
                "bit_depth": 8 * result.itemsize, "seconds": round(seconds, 3)}


def bundle_input_size(model: Path, task: str) -> tuple[int, int] | None:
    """The static (H, W) of a device bundle's artifact (BUNDLE/TASK/model.*), from the bundle's
    manifest; None for the plugin's own any-size ONNX or a model outside a bundle."""
    from edgeret.bundle.manifest import MANIFEST, load_manifest

    root = Path(model).resolve().parent.parent
    if not (root / MANIFEST).is_file():
        return None
    entry = load_manifest(root).tasks.get(task)
    if not entry:
        return None
    shape = entry.inputs[0].shape
    if len(shape) == 4 and all(isinstance(d, int) for d in shape[2:]):
        return int(shape[2]), int(shape[3])
    return None


def _targets(images: list[Path], output: Path) -> list[Path]:
    if len(images) == 1 and output.suffix:
        return [output]
    if output.exists() and not output.is_dir():
        raise EdgeretError(f"{output}: several images need -o to be a folder")
    return [output / (p.stem + ".png") for p in images]


def restore_file(args: argparse.Namespace, task: TaskPlugin, backend: BackendPlugin) -> int:
    """`edgeret run TASK IMAGE... -o OUT [--scale N]` for the restoration tasks (see run_cmd)."""
    if getattr(args, "output", None) is None:
        raise EdgeretError(f"`edgeret run {task.name}` writes an image: give -o OUT.png")
    restorer = Restorer(task, backend, scale=getattr(args, "scale", None), model=args.model,
                        threads=args.threads, tile=getattr(args, "tile", 512))
    return _run_all(restorer, args)


def _run_all(restorer: Restorer, args: argparse.Namespace) -> int:
    results, failed = [], 0
    for source, target in zip(args.images, _targets(args.images, args.output), strict=True):
        try:
            results.append(restorer.file(source, target))
        except EdgeretError as exc:  # one bad image must not hide the others' results
            failed += 1
            print(f"edgeret: error: {exc}", file=sys.stderr)
    if args.json:
        print_json({"task": restorer.task.name, "backend": restorer.session.backend.name,
                    "results": results})
    else:
        for r in results:
            print(f"{r['image']} -> {r['output']}: {r['output_size'][0]}x{r['output_size'][1]} "
                  f"{r['bit_depth']}-bit, {r['task']} on {r['backend']}, {r['seconds']:.2f} s")
    return 2 if failed else 0


def run_denoise(args: argparse.Namespace) -> int:
    task = args.host.task("denoise-oct" if args.oct else "denoise")
    restorer = Restorer(task, resolve_backend(args), model=args.model, threads=args.threads,
                        tile=args.tile, flips=args.flips)
    return _run_all(restorer, args)


def run_upscale(args: argparse.Namespace) -> int:
    task = args.host.task("sr")
    restorer = Restorer(task, resolve_backend(args), scale=args.scale, model=args.model,
                        threads=args.threads, tile=args.tile)
    return _run_all(restorer, args)
