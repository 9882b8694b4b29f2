"""The export pipeline: device profile -> per task artifact, gate, golden pairs -> bundle.

For each task:

1. resolve the target (first backend of the profile's chain edgeret can export
   to; `targets.resolve_target`) and the precisions to try (requested or the
   profile's default, then its less compressed ones: int8 -> fp16 -> fp32);
2. build the fp32 torch runtime model (the task's `model_factory` + default
   weights, wrapped to return the declared outputs; `runtime_model`);
3. held-out set from the phantom generator and the fp32 reference outputs;
4. per precision: calibration (int8: the task's sampler, or the user's
   `--calib` images, never a silent fallback), the exporter, the accuracy gate
   on the target backend (or a stand-in that loads the same file, stated in
   the manifest); the first precision that passes is kept;
5. golden input/output pairs and the manifest entry.

Nothing is written at the output path unless every task passes: the bundle is
assembled in a staging folder and moved into place at the end.

Pieces: `task_models` (what can be exported, the torch runtime model, outputs on
torch and on a runner), `calibration` (INT8 inputs), `artifacts` (exporter
options and calls), `gate` (held-out sets and the accuracy gate), `targets`
(profile -> format, backend, precisions).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import edgeret
from edgeret.build.export import gate as gates
from edgeret.build.export.artifacts import (
    accuracy_control_options,
    artifact_info,
    default_options,
    export_artifact,
    fp16_proxy,
    option_notes,
    recordable_options,
)
from edgeret.build.export.calibration import calibration_feeds, check_calib_folder
from edgeret.build.export.golden import write_golden
from edgeret.build.export.targets import (
    Target,
    gate_backend,
    precision_chain,
    resolve_target,
)
from edgeret.build.export.task_models import (
    NotExportable,
    import_torch,
    runner_outputs,
    runtime_model,
    task_for_profile,
    torch_outputs,
    why_not_exportable,
)
from edgeret.bundle.manifest import MANIFEST, clean_json, sha256_file, write_manifest
from edgeret.bundle.schema import BundleManifest
from edgeret.devices.profiles import DeviceProfile
from edgeret.errors import EdgeretError, InputError
from edgeret.link.atomic import staging_folder
from edgeret.plugin.registrations import TaskPlugin

DEFAULT_HELDOUT = 200
DEFAULT_GOLDEN = 6
TOOLCHAIN = ("torch", "onnx", "onnxruntime", "openvino", "nncf", "litert-torch", "ai-edge-litert",
             "ai-edge-quantizer", "torchao", "numpy", "opencv-python-headless")
# Golden-pair tolerances (max abs error, times max(1, |output|)): replay on the backend that made them,
# and replay on another backend of the chain (e.g. the Jetson's TensorRT vs the ONNX Runtime figures).
TOLERANCES = {"fp32": 1e-3, "fp16": 1e-2, "int8": 2e-2}
CROSS_TOLERANCES = {"fp32": 1e-2, "fp16": 3e-2, "int8": 0.1}

@dataclass
class ExportRequest:
    device: str
    tasks: Sequence[str] = ()  # empty: every task that can be exported
    precision: str = "auto"
    calib: Mapping[str | None, Path] = field(default_factory=dict)  # task (None: all) -> folder
    calib_size: int | None = None  # None: DEFAULT_CALIB_SIZE generated, or every image of --calib
    heldout: int = DEFAULT_HELDOUT
    golden: int = DEFAULT_GOLDEN
    out: Path | None = None
    force: bool = False
    fallback: bool = True
    max_drop: float | None = None
    seed: int = 0
    threads: int | None = None
    progress: bool = True
    devices_dirs: Sequence[str | os.PathLike] = ()


@dataclass
class TaskExport:
    task: str
    entry: dict[str, Any]
    attempts: list[gates.GateResult]
    size_bytes: int


@dataclass
class ExportResult:
    path: Path
    profile: DeviceProfile
    target: Target
    tasks: list[TaskExport]
    skipped: dict[str, str]
    manifest: BundleManifest


# ---------------------------------------------------------------------------
# the bundle
# ---------------------------------------------------------------------------


def toolchain_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version(), "edgeret": edgeret.__version__}
    for dist in TOOLCHAIN:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def _profile_dict(profile: DeviceProfile) -> dict[str, Any]:
    data = profile.to_dict()
    data["source"] = Path(profile.source).name if profile.source else ""
    return data


def _qualname(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', getattr(fn, '__name__', '?'))}"


def select_tasks(host: Any, profile: DeviceProfile, request: ExportRequest) -> tuple[list[TaskPlugin],
                                                                                    dict[str, str]]:
    all_tasks = host.tasks()
    skipped: dict[str, str] = {}
    chosen = []
    if request.tasks:
        for name in request.tasks:
            task = host.task(name)  # unknown: one-line error listing the known tasks
            reason = why_not_exportable(task, profile)
            if reason:
                raise EdgeretError(reason)
            chosen.append(task)
    else:
        for name in sorted(all_tasks):
            reason = why_not_exportable(all_tasks[name], profile)
            if reason:
                skipped[name] = reason
            else:
                chosen.append(all_tasks[name])
        if not chosen:
            raise EdgeretError(f"nothing to export for device '{profile.name}': "
                               + "; ".join(skipped.values()))
    unknown = [k for k in request.calib if k is not None and k not in {t.name for t in chosen}]
    if unknown:
        raise EdgeretError(f"--calib names task '{unknown[0]}', which is not being exported")
    return chosen, skipped


def export_bundle(host: Any, request: ExportRequest, log: Callable[[str], None] = print) -> ExportResult:
    """Export every selected task for `request.device` into a bundle folder; see the module docstring."""
    from edgeret.plugin.host import device_catalog

    profile = device_catalog(host, request.devices_dirs).resolve(request.device)
    target = resolve_target(profile, host.exporters())
    chain = precision_chain(profile, request.precision, target)
    for folder in request.calib.values():  # fail on a bad --calib before any slow work
        check_calib_folder(Path(folder))
    if request.heldout < 1:
        raise EdgeretError(f"--heldout must be at least 1, got {request.heldout}")
    out = Path(request.out or f"bundle-{profile.name}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not request.force:
            raise InputError(out, "output exists and is not empty; choose another -o or pass --force")
        if not (out / MANIFEST).is_file():  # --force replaces bundles only, never an arbitrary folder
            raise InputError(out, f"output exists and is not an edgeret bundle (no {MANIFEST}); "
                                  "refusing to replace it even with --force")
    tasks, skipped = select_tasks(host, profile, request)
    gate_plugin, gate_note = gate_backend(target, host.backends())
    import_torch(request.threads)

    for reason in skipped.values():
        log(f"skipping: {reason}")
    log(f"exporting {', '.join(t.name for t in tasks)} for {profile.name}: {target.format} for "
        f"{target.backend}, precision {' -> '.join(chain)}" + (f" ({gate_note})" if gate_note else ""))

    staging = staging_folder(out)
    try:
        results = []
        for task in tasks:
            try:
                results.append(_export_task(host, task_for_profile(task, profile), profile, target, chain,
                                            gate_plugin, gate_note, staging, request, log))
            except NotExportable as exc:
                if request.tasks:  # asked for by name: an error
                    raise
                skipped[task.name] = str(exc)
                log(f"skipping: {exc}")
                shutil.rmtree(staging / task.name, ignore_errors=True)
        if not results:
            raise EdgeretError(f"nothing to export for device '{profile.name}': "
                               + "; ".join(skipped.values()))
        manifest = {
            "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
            "edgeret_version": edgeret.__version__,
            "device": _profile_dict(profile),
            "toolchain": toolchain_versions(),
            "export": {
                "requested_precision": request.precision, "precision_chain": chain,
                "fallback": request.fallback, "target_backend": target.backend,
                "target_skipped": list(target.skipped), "artifact_format": target.format,
                "gate_backend": gate_plugin.name, "gate_note": gate_note,
                "heldout_images": request.heldout, "seed": request.seed,
                "calibration": {k or "*": str(v) for k, v in request.calib.items()} or "generated",
                "skipped_tasks": skipped,
            },
            "tasks": {r.task: r.entry for r in results},
        }
        manifest = clean_json(manifest)
        write_manifest(staging, manifest)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        staging.chmod(0o755)  # mkdtemp made it private
        staging.replace(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    from edgeret.bundle.manifest import load_manifest  # what the device will read, typed

    return ExportResult(out, profile, target, results, skipped, load_manifest(out))


def _export_task(host: Any, task: TaskPlugin, profile: DeviceProfile, target: Target, chain: list[str],
                 gate_plugin: Any, gate_note: str, staging: Path, request: ExportRequest,
                 log: Callable[[str], None]) -> TaskExport:
    started = time.monotonic()
    exporters = host.exporters()
    module = runtime_model(task)
    rule = gates.gate_rule(task, request.max_drop)
    heldout = gates.heldout_set(task, request.heldout, progress=request.progress)
    reference = torch_outputs(module, task, heldout.feeds)
    calib_folder = request.calib.get(task.name, request.calib.get(None))
    calibration: tuple[list, dict] | None = None
    weights_sha = sha256_file(task.default_weights)
    meta = {
        "edgeret.task": task.name, "edgeret.device": profile.name, "edgeret.target_backend": target.backend,
        "edgeret.labels": json.dumps(list(task.labels)),
        "edgeret.inputs": json.dumps([s.to_dict() for s in task.inputs]),
        "edgeret.outputs": json.dumps([s.to_dict() for s in task.outputs]),
        "edgeret.weights": Path(task.default_weights).name, "edgeret.weights_sha256": weights_sha,
        "edgeret.version": edgeret.__version__,
    }
    folder = staging / task.name
    attempts: list[gates.GateResult] = []
    plan = [(p, "plain") for p in (chain if request.fallback else chain[:1])]
    if (plan[0][0] == "int8" and target.exporters["int8"] == "openvino-ir" and rule.kind == "class"
            and rule.function is not None):  # NNCF accuracy control before giving up int8
        plan.insert(1, ("int8", "accuracy-control"))
    kept = None
    notes: list[str] = []
    for precision, mode in plan:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        if precision == "int8" and calibration is None:
            calibration = calibration_feeds(task, calib_folder, request.calib_size, request.seed,
                                            request.progress)
        label = precision + (" with NNCF accuracy control" if mode == "accuracy-control" else "")
        log(f"{task.name}: exporting {label} {target.format} for {target.backend} ...")
        options = default_options(target.exporters[precision], precision, module, task)
        notes += option_notes(target.exporters[precision], precision, task)
        if mode == "accuracy-control":
            options.update(accuracy_control_options(task, rule, module, min(request.heldout, 100),
                                                    request.progress))
        try:
            artifact = export_artifact(exporters, target, precision, module, task,
                                       folder / f"model{target.suffix}",
                                       calibration[0] if precision == "int8" else None, meta, **options)
        except EdgeretError as exc:
            if mode != "accuracy-control":
                raise
            notes.append(f"int8 with NNCF accuracy control failed: {exc}")
            log(f"{task.name}: {notes[-1]}; falling back")
            continue
        with tempfile.TemporaryDirectory(prefix="edgeret-gate-") as tmp:
            gated = artifact
            if target.tensorrt and precision == "fp16":
                gated = fp16_proxy(artifact, Path(tmp))
            runner = gate_plugin.load(gated, threads=request.threads)
            exported = runner_outputs(runner, task, heldout.feeds, f"{task.name}: gate {precision}",
                                      request.progress)
        result = gates.evaluate_gate(rule, heldout, reference, exported, precision, gate_plugin.name)
        if mode == "accuracy-control":
            result.extra["method"] = "nncf.quantize_with_accuracy_control"
        if target.tensorrt:
            result.extra["note"] = ("TensorRT cannot run here: gated on ONNX Runtime CPU"
                                    + (" with an fp16 copy of the ONNX" if precision == "fp16" else ""))
        attempts.append(result)
        log(f"{task.name}: gate {'passed' if result.passed else 'FAILED'}: {result.figures()}")
        if result.passed:
            kept = (precision, artifact, exported, result, options)
            break
    if kept is None:
        figures = "; ".join(f"{a.precision}: {a.figures()}" for a in attempts)
        hint = "" if request.fallback else " (fallback disabled)"
        raise EdgeretError(f"{task.name}: accuracy gate failed at every precision tried{hint}: {figures}")
    precision, artifact, exported, result, options = kept
    exporter = exporters[target.exporters[precision]]
    options = recordable_options({**exporter.options, **options})

    runner = gate_plugin.load(artifact, threads=request.threads)
    golden_path, indices, agreement = write_golden(task, rule, heldout.feeds, reference, exported,
                                                   request.golden, runner, module, folder / "golden.npz")

    files = sorted(p.relative_to(staging).as_posix() for p in folder.iterdir()
                   if p.is_file() and p != golden_path)
    size = sum((staging / f).stat().st_size for f in files)
    entry: dict[str, Any] = {
        "description": task.description,
        "artifact": artifact.relative_to(staging).as_posix(),
        "files": files,
        "format": target.format,
        "precision": precision,
        "target_backend": target.backend,
        "gate_backend": gate_plugin.name,
        "exporter": target.exporters[precision],
        "quantization": artifact_info(artifact, exporter),
        "exporter_options": options,
        "size_bytes": size,
        "inputs": [s.to_dict() for s in task.inputs],
        "outputs": [s.to_dict() for s in task.outputs],
        "preprocessing": {
            "function": _qualname(task.preprocess), "postprocess": _qualname(task.postprocess),
            "modality": task.modality, "image_kind": task.image_kind,
            "input_size": list(task.inputs[0].shape[2:]) if len(task.inputs[0].shape) == 4 else None,
            "description": "; ".join(s.description for s in task.inputs if s.description),
        },
        "labels": list(task.labels),
        "weights": {"file": Path(task.default_weights).name, "sha256": weights_sha},
        "calibration": calibration[1] if precision == "int8" and calibration else None,
        "gate": {**result.to_dict(), "heldout": heldout.source,
                 "attempts": [a.to_dict() for a in attempts], "notes": notes},
        "golden": {
            "file": golden_path.relative_to(staging).as_posix(), "pairs": len(indices),
            "backend": gate_plugin.name,
            "tolerance": {"atol": TOLERANCES[precision], "rtol": 0.0},
            "cross_backend_tolerance": {"atol": CROSS_TOLERANCES[precision], "rtol": 0.0},
            "note": "max |replayed - stored| <= atol * max(1, |stored|) per output",
        },
        "agreement": agreement,
        "export_seconds": round(time.monotonic() - started, 1),
    }
    if target.tensorrt:
        spec = Path(artifact).with_name(Path(artifact).stem + ".trt.json")
        entry["tensorrt"] = {
            "build_spec": spec.relative_to(staging).as_posix(),
            "engine_precision": precision,
            "note": ("the engine is built on the Jetson: `edgeret build BUNDLE` (TensorRT version and GPU "
                     "specific; cached under BUNDLE/engines/). fp32/fp16: the ONNX keeps fp32 weights and "
                     "TensorRT picks fp16 kernels (BuilderFlag.FP16); int8: explicit QDQ, symmetric."),
            "gate": "run here on ONNX Runtime CPU" + (" with an fp16 copy of the ONNX"
                                                     if precision == "fp16" else ""),
        }
    return TaskExport(task.name, clean_json(entry), attempts, size)
