"""`edgeret export`, `verify`, `bench` and `build`.

export and `bench --compare` run on the build host (torch, converters); verify,
bench and build run on the device too, so torch and the exporters are imported
inside the functions that need them, never at module import.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgeret.cli.output import print_json, print_table
from edgeret.errors import EdgeretError
from edgeret.link.atomic import make_folders

PRECISION_CHOICES = ("auto", "fp32", "fp16", "int8")


def _names(values: list[str] | None) -> list[str]:
    """`--tasks a b` and `--tasks a,b` both work."""
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


def _log(quiet: bool):
    def log(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    return log


# ---------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------


def configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", required=True, help="device profile or alias (see `edgeret devices`)")
    parser.add_argument("--tasks", nargs="+", metavar="TASK",
                        help="tasks to export (default: every task that can be exported here)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="auto: the profile's default precision; the gate falls back along the "
                             "profile's precisions (int8 -> fp16 -> fp32)")
    parser.add_argument("--calib", action="append", metavar="[TASK=]DIR",
                        help="INT8 calibration images (yours; read and preprocessed like `edgeret run`). "
                             "TASK=DIR for one task; repeatable. Default: the task's generated set")
    parser.add_argument("--calib-size", type=int, help="calibration images (default: 128 generated, "
                                                       "or every image in --calib)")
    parser.add_argument("--heldout", type=int, default=200, help="held-out images for the accuracy gate")
    parser.add_argument("--golden", type=int, default=6, help="golden input/output pairs per task")
    parser.add_argument("--max-drop", type=float,
                        help="allowed metric drop (default: 0.5 points for classifiers, 0.2 dB PSNR)")
    parser.add_argument("--no-fallback", action="store_true",
                        help="fail instead of falling back to a less compressed precision")
    parser.add_argument("-o", "--out", type=Path, help="bundle folder (default: bundle-DEVICE)")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    parser.add_argument("--threads", type=int, help="threads for torch and the runtimes")
    parser.add_argument("--seed", type=int, default=0, help="calibration sampler seed")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--json", action="store_true", help="print the manifest summary as JSON")


def _calib_map(values: list[str] | None) -> dict[str | None, Path]:
    mapping: dict[str | None, Path] = {}
    for value in values or []:
        task, sep, folder = value.partition("=")
        key = task.strip() if sep and task.strip() and "/" not in task else None
        path = Path(folder if key else value)
        if key in mapping:
            raise EdgeretError(f"--calib given twice for {key or 'all tasks'}")
        mapping[key] = path
    return mapping


def _devices_dirs(args: argparse.Namespace) -> list[str]:
    """--devices-dir values. The CLI's early option pass (argparse prefix matching) also reads
    `--device NAME` as `--devices-dir NAME`; drop that echo of --device."""
    return [d for d in args.devices_dir or () if str(d) != args.device]


def run_export(args: argparse.Namespace) -> int:
    from edgeret.build.export.pipeline import ExportRequest, export_bundle

    for option, value in (("--heldout", args.heldout), ("--golden", args.golden),
                          ("--calib-size", args.calib_size), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise EdgeretError(f"{option} must be at least 1, got {value}")
    request = ExportRequest(
        device=args.device, tasks=_names(args.tasks), precision=args.precision, calib=_calib_map(args.calib),
        calib_size=args.calib_size, heldout=args.heldout, golden=args.golden, out=args.out, force=args.force,
        fallback=not args.no_fallback, max_drop=args.max_drop, seed=args.seed, threads=args.threads,
        progress=not args.quiet, devices_dirs=_devices_dirs(args),
    )
    result = export_bundle(args.host, request, log=_log(args.quiet))
    manifest = result.manifest
    if args.json:
        print_json({"bundle": str(result.path), "device": result.profile.name,
                    "tasks": {n: {k: e[k] for k in ("artifact", "format", "precision", "gate")}
                              for n, e in manifest.raw["tasks"].items()},
                    "skipped": result.skipped})
        return 0
    rows = []
    for name, entry in manifest.tasks.items():
        gate = entry.gate
        tried = " -> ".join(a["precision"] + ("+ac" if a.get("method") else "")
                            + ("" if a["passed"] else "(fail)") for a in gate.attempts)
        allowed = gate.allowed_drop if gate.allowed_drop is not None else gate.min_db
        rows.append([name, entry.format, entry.precision, entry.target_backend,
                     entry.gate_backend, gate.metric, _num(gate.fp32), _num(gate.exported),
                     _num(gate.drop), _num(allowed), "pass" if gate.passed else "FAIL",
                     f"{(entry.size_bytes or 0) / 1024:.0f}", tried])
    print(f"bundle for {result.profile.name}: {result.path}")
    print_table(["task", "format", "precision", "target", "gated on", "metric", "fp32", "exported", "drop",
                 "allowed", "gate", "KB", "tried"], rows)
    for reason in result.skipped.values():
        print(f"skipped: {reason}")
    print(f"{len(manifest.files)} files, sha256 of each in {result.path / 'edgeret.json'}")
    if result.target.tensorrt:
        print(f"gate: TensorRT cannot run here; the ONNX was checked on {manifest.export['gate_backend']} "
              "(CPU)")
        print(f"next: copy {result.path} to the Jetson and run: edgeret build {result.path}  "
              f"(here: edgeret verify {result.path} checks the ONNX on onnxruntime)")
    else:
        print(f"next: edgeret verify {result.path}")
    return 0


def _num(value: object) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------


def configure_verify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle folder (holds edgeret.json)")
    parser.add_argument("--backend", help="backend to load the models on (default: the device profile's "
                                          "first available that loads the artifact)")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help="verify these tasks only")
    parser.add_argument("--threads", type=int, help="inference threads")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run_verify(args: argparse.Namespace) -> int:
    from edgeret.bundle.verify import verify_bundle

    report = verify_bundle(args.bundle, args.host.backends(), backend=args.backend,
                           tasks=_names(args.tasks), threads=args.threads)
    if args.json:
        print_json({"bundle": str(report.root), "device": report.device, "files_checked": report.files,
                    "passed": True, "tasks": [vars(c) for c in report.tasks]})
        return 0
    print(f"{report.root}: {report.files} files match their sha256 (device {report.device})")
    rows = []
    for check in report.tasks:
        worst = max(check.max_error.values(), default=0.0)
        rows.append([check.task, check.backend, f"{check.pairs}/{check.pairs}", f"{worst:.2e}",
                     f"{check.tolerance.get('atol', 0):g}", check.agreement])
    print_table(["task", "backend", "golden pairs", "max error", "atol", "agreement"], rows)
    print("verify passed")
    return 0


# ---------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------


def configure_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle folder")
    parser.add_argument("--backend", help="backend (default: the device profile's first available)")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help="these tasks only")
    parser.add_argument("--compare", action="store_true",
                        help="also export and run fp32 torch, ONNX Runtime, OpenVINO and LiteRT fp32/int8 "
                             "side by side (build host: needs the export extra)")
    parser.add_argument("--variants", nargs="+", metavar="NAME",
                        help="--compare only these (runtime names or labels like 'openvino int8')")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per model")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    parser.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timing rounds (variants interleaved); each model's best median is kept")
    parser.add_argument("--heldout", type=int, default=100, help="--compare: held-out images for metrics")
    parser.add_argument("--calib-size", type=int, default=128, help="--compare: calibration images")
    parser.add_argument("--out", type=Path, default=Path("benchmarks"), help="report folder")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run_bench(args: argparse.Namespace) -> int:
    from edgeret.bundle import bench

    for option, value in (("--runs", args.runs), ("--threads", args.threads), ("--heldout", args.heldout),
                          ("--calib-size", args.calib_size), ("--rounds", args.rounds)):
        if value < 1:
            raise EdgeretError(f"{option} must be at least 1, got {value}")
    if args.warmup < 0:
        raise EdgeretError(f"--warmup must be 0 or more, got {args.warmup}")
    make_folders("report folder", args.out)  # before minutes of timing, not after
    log = _log(args.quiet)
    report = bench.bench_bundle(args.bundle, args.host.backends(), backend=args.backend,
                                tasks=_names(args.tasks), runs=args.runs, warmup=args.warmup,
                                threads=args.threads, rounds=args.rounds, log=log)
    device = report["device"]
    stem, title = f"bundle-bench-{device}", f"Bundle benchmark: {device}"
    if args.compare:
        from edgeret.bundle.manifest import load_manifest
        from edgeret.plugin.host import import_optional

        import_optional("torch", "export")
        manifest = load_manifest(args.bundle)
        sizes = manifest.device.input_sizes
        compare_rows = []
        for name in [r["task"] for r in report["rows"]]:
            compare_rows += bench.compare_task(
                args.host, name, sizes, heldout=args.heldout, calib_size=args.calib_size, runs=args.runs,
                warmup=args.warmup, threads=args.threads, variants=_names(args.variants),
                progress=not args.quiet, rounds=args.rounds, log=log)
        report = {**report, "bundle_rows": report["rows"], "rows": compare_rows,
                  "notes": ["int8 speed-up: the same runtime's fp32 median latency / int8 median latency. "
                            "Metric and drop: the task's gate metric on the held-out set vs torch fp32.",
                            f"Bundle rows ({device}): see bundle_rows in the JSON."]}
        stem, title = f"bundle-compare-{device}", f"INT8 vs fp32 on this CPU ({device} bundle's tasks)"
    json_path, md_path = bench.write_report(report, args.out, stem, title)
    if args.json:
        print_json(report)
        return 0
    headers, rows = bench.table_rows(report["rows"])
    print_table(headers, rows)
    print(f"reports: {json_path} and {md_path}")
    return 0


# ---------------------------------------------------------------------------
# build (Jetson)
# ---------------------------------------------------------------------------


def configure_build(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="a Jetson bundle (edgeret export --device jetson)")
    parser.add_argument("--cache", type=Path, help="engine cache folder (default: BUNDLE/engines)")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help="build these tasks only")
    parser.add_argument("--rebuild", action="store_true", help="ignore cached engines")
    parser.add_argument("--workspace-mb", type=int, help="TensorRT workspace (default: the build spec's)")
    parser.add_argument("--quiet", action="store_true", help="no build progress")


def run_build(args: argparse.Namespace) -> int:
    from edgeret.bundle.manifest import ENGINES_DIR, check_hashes, load_manifest

    manifest = load_manifest(args.bundle)
    check_hashes(args.bundle, manifest)
    names = _names(args.tasks) or list(manifest.tasks)
    specs = {n: manifest.tasks[n].tensorrt for n in names if n in manifest.tasks}
    missing = [n for n in names if n not in manifest.tasks]
    if missing:
        raise EdgeretError(f"task '{missing[0]}' is not in this bundle")
    if not any(specs.values()):
        raise EdgeretError(f"{args.bundle}: bundle for device '{manifest.device.name}' has no TensorRT "
                           "build step; its models run as exported (edgeret verify BUNDLE)")
    from edgeret_plugins.backends.tensorrt_build import build_from_spec
    from edgeret_plugins.backends.tensorrt_cache import tensorrt_version

    try:
        version = tensorrt_version()
    except EdgeretError as exc:
        raise EdgeretError(f"cannot build TensorRT engines here: {exc}") from None
    cache = args.cache or args.bundle / ENGINES_DIR
    built = {}
    for name, info in specs.items():
        if not info:
            continue
        print(f"{name}: building the TensorRT {info['engine_precision']} engine with TensorRT {version} "
              "(this can take minutes) ...", file=sys.stderr)
        options = {"rebuild": args.rebuild}
        if args.workspace_mb:
            options["workspace_mb"] = args.workspace_mb
        engine = build_from_spec(args.bundle / info["build_spec"], cache, progress=not args.quiet, **options)
        built[name] = str(engine)
        print(f"{name}: {engine}")
    (Path(cache) / "index.json").write_text(json.dumps(built, indent=2) + "\n")
    print(f"engines cached in {cache}; next: edgeret verify {args.bundle}")
    return 0
