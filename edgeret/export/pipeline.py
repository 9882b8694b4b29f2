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
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
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

import numpy as np

import edgeret
from edgeret.bundle import MANIFEST, clean_json, save_golden, sha256_file, snap_to_uint8, write_manifest
from edgeret.devices import DeviceProfile
from edgeret.errors import EdgeretError, InputError
from edgeret.export import gate as gates
from edgeret.export.targets import (
    EXPORTER_OPTIONS,
    SUFFIX,
    Target,
    gate_backend,
    precision_chain,
    resolve_target,
)
from edgeret.imageio import IMAGE_SUFFIXES, list_images
from edgeret.progress import Progress
from edgeret.registrations import TaskPlugin, TensorSpec

DEFAULT_CALIB_SIZE = 128
DEFAULT_HELDOUT = 200
DEFAULT_GOLDEN = 6
TOOLCHAIN = ("torch", "onnx", "onnxruntime", "openvino", "nncf", "litert-torch", "ai-edge-litert",
             "ai-edge-quantizer", "torchao", "numpy", "opencv-python-headless")
# Golden-pair tolerances (max abs error, times max(1, |output|)): replay on the backend that made them,
# and replay on another backend of the chain (e.g. the Jetson's TensorRT vs the ONNX Runtime figures).
TOLERANCES = {"fp32": 1e-3, "fp16": 1e-2, "int8": 2e-2}
CROSS_TOLERANCES = {"fp32": 1e-2, "fp16": 3e-2, "int8": 0.1}
# Image outputs: verify wants the replayed output within 0.2 dB of the exported one's PSNR vs fp32, but
# never more than this (above ~40 dB the difference is invisible and runtimes legitimately differ).
PSNR_AGREEMENT_CAP_DB = 40.0
GOLDEN_ALL_OUTPUTS_BELOW = 1 << 16  # values per pair; larger outputs: only the gate's output is kept

# Built-in tasks' model_factory returns the training network; what ships wraps it so its forward
# returns exactly the task's declared outputs (softmax/sigmoid probabilities). A task can instead give
# its network a `runtime_module()` method, or a forward that already returns the declared outputs.
RUNTIME_WRAPPERS = {
    "quality-oct": "edgeret_plugins.tasks.quality_oct.model:RuntimeOutputs",
    "quality-fundus": "edgeret_plugins.tasks.quality_fundus.model:ProbabilitiesOnly",
    "dr-grade": "edgeret_plugins.tasks.dr_grade.model:Probabilities",
    "denoise": "edgeret_plugins.tasks.denoise.recipe:RuntimeDenoiser",
    "denoise-oct": "edgeret_plugins.tasks.denoise.recipe:RuntimeDenoiser",
    "sr": "edgeret_plugins.tasks.sr.model:runtime",
}


class NotExportable(EdgeretError):
    """The task cannot be exported as it is (e.g. its torch model does not give the declared outputs)."""


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
    manifest: dict[str, Any]


# ---------------------------------------------------------------------------
# tasks: what can be exported, the torch runtime model
# ---------------------------------------------------------------------------


def task_for_profile(task: TaskPlugin, profile: DeviceProfile) -> TaskPlugin:
    """The task with the profile's input size for it, so preprocessing resizes to what the device runs."""
    return task_with_input_size(task, profile.input_sizes.get(task.name))


def task_with_input_size(task: TaskPlugin, size: Sequence[int] | None) -> TaskPlugin:
    """Replace the spatial dims of the first input (and of outputs that share them) by `size`."""
    size = tuple(size) if size else None
    first = task.inputs[0]
    if size is None or len(first.shape) != 4 or tuple(first.shape[2:]) == tuple(size):
        return task
    old = tuple(first.shape[2:])
    symbolic = {"height": size[0], "width": size[1]}

    def sized(dim: Any) -> Any:  # "height" -> H, "width/32" -> W // 32 (the profile gives the image size)
        base, _, div = dim.partition("/") if isinstance(dim, str) else ("", "", "")
        if base in symbolic and (not div or div.isdigit()):
            return symbolic[base] // int(div) if div else symbolic[base]
        return dim

    def resize(spec: TensorSpec) -> TensorSpec:
        if len(spec.shape) == 4 and tuple(spec.shape[2:]) == old and all(isinstance(d, int) for d in old):
            return dataclasses.replace(spec, shape=(*spec.shape[:2], *size))
        return dataclasses.replace(spec, shape=tuple(sized(d) for d in spec.shape))

    return dataclasses.replace(task, inputs=tuple(resize(s) for s in task.inputs),
                               outputs=tuple(resize(s) for s in task.outputs))


def why_not_exportable(task: TaskPlugin, profile: DeviceProfile) -> str | None:
    """None when the task can be exported for the profile, else the reason (one line)."""
    if profile.input_sizes and task.name not in profile.input_sizes:
        return (f"device '{profile.name}' cannot run task '{task.name}': it is not in the profile's "
                f"input_sizes (the profile runs {', '.join(sorted(profile.input_sizes))})")
    if task.model_factory is None:
        return f"task '{task.name}' has no model_factory (no torch model to export)"
    if task.default_weights is None or not Path(task.default_weights).is_file():
        return f"task '{task.name}': default weights {task.default_weights} not found (not trained yet?)"
    if task.modality not in ("fundus", "oct") and task.calibration is None:
        return (f"task '{task.name}': no phantom generator for modality '{task.modality}' and no "
                "calibration sampler (held-out set)")
    return None


def _import_object(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def runtime_model(task: TaskPlugin, weights: Path | None = None) -> Any:
    """The fp32 torch module mapping the task's inputs to its declared outputs, weights loaded, eval mode."""
    import torch

    if task.model_factory is None:
        raise EdgeretError(f"task '{task.name}' has no model_factory")
    weights = Path(weights or task.default_weights or "")
    if not weights.is_file():
        raise EdgeretError(f"task '{task.name}': weights {weights} not found")
    net = task.model_factory()
    try:
        if hasattr(net, "load_weights"):  # weights in the task's own format (e.g. the codec's)
            net.load_weights(weights)
        else:
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except Exception as exc:
        raise NotExportable(f"{weights}: cannot load into task '{task.name}''s model "
                           f"({str(exc).splitlines()[0]})") from None
    net.eval()
    if hasattr(net, "runtime_module"):
        module = net.runtime_module()
    elif task.name in RUNTIME_WRAPPERS:
        module = _import_object(RUNTIME_WRAPPERS[task.name])(net)
    else:
        module = net
    module.eval()
    example = example_inputs(task)
    with torch.no_grad():
        out = module(*example)
    outs = (out,) if torch.is_tensor(out) else tuple(out) if isinstance(out, list | tuple) else None
    if outs is None or len(outs) != len(task.outputs) or not all(torch.is_tensor(o) for o in outs):
        raise NotExportable(f"task '{task.name}': the torch model does not return its {len(task.outputs)} "
                           "declared outputs (give the network a runtime_module() method)")
    for spec, tensor in zip(task.outputs, outs, strict=True):
        static = [(i, d) for i, d in enumerate(spec.shape) if isinstance(d, int)]
        if tensor.ndim != len(spec.shape) or any(tensor.shape[i] != d for i, d in static):
            raise NotExportable(f"task '{task.name}': output '{spec.name}' has shape {tuple(tensor.shape)}, "
                               f"spec says {spec.shape}")
    return module


def example_inputs(task: TaskPlugin) -> tuple:
    import torch

    return tuple(torch.zeros(*[d if isinstance(d, int) else 1 for d in spec.shape]) for spec in task.inputs)


def torch_outputs(module: Any, task: TaskPlugin, feeds: Sequence[Mapping[str, np.ndarray]],
                  batch: int = 16) -> dict[str, np.ndarray]:
    import torch

    names = [s.name for s in task.outputs]
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    with torch.no_grad():
        for start in range(0, len(feeds), batch):
            part = feeds[start:start + batch]
            args = [torch.from_numpy(np.concatenate([f[s.name] for f in part])) for s in task.inputs]
            out = module(*args)
            out = (out,) if torch.is_tensor(out) else tuple(out)
            for name, tensor in zip(names, out, strict=True):
                chunks[name].append(tensor.numpy())
    return {n: np.concatenate(v) for n, v in chunks.items()}


def runner_outputs(runner: Any, task: TaskPlugin, feeds: Sequence[Mapping[str, np.ndarray]],
                   label: str = "", progress: bool = False) -> dict[str, np.ndarray]:
    """Run a backend runner one image at a time (as a device does); stacked outputs by name."""
    names = [s.name for s in task.outputs]
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in Progress(feeds, label, total=len(feeds), enabled=progress and bool(label)):
        out = runner.run(feed)
        for name in names:
            if name not in out:
                raise EdgeretError(f"task '{task.name}': the exported model has no output '{name}' "
                                   f"(it has {', '.join(out)})")
            chunks[name].append(np.asarray(out[name], dtype=np.float32))
    return {n: np.concatenate(v) for n, v in chunks.items()}


# ---------------------------------------------------------------------------
# calibration
# ---------------------------------------------------------------------------


def check_calib_folder(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.exists():
        raise InputError(folder, "calibration folder does not exist (--calib)")
    if not folder.is_dir():
        raise InputError(folder, "--calib must be a folder of images")
    images = list_images(folder)
    if not images:
        raise InputError(folder, f"calibration folder holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                                 "edgeret does not fall back to generated images")
    return images


def calibration_feeds(task: TaskPlugin, folder: Path | None, n: int | None, seed: int,
                      progress: bool) -> tuple[list[dict[str, np.ndarray]], dict[str, Any]]:
    """Preprocessed calibration inputs and their description (source, size, sha256)."""
    from edgeret_exporters.onnx_int8 import calibration_digest

    feeds: list[dict[str, np.ndarray]] = []
    if folder is not None:
        from edgeret.imageio import ARRAY, read_image

        images = check_calib_folder(folder)
        if n:
            images = images[:n]
        for path in Progress(images, f"{task.name}: calibration", total=len(images), enabled=progress):
            image = read_image(path, expect=task.image_kind)
            try:
                feeds.append(task.preprocess(image, task))
            except InputError as exc:
                if exc.path != ARRAY:
                    raise
                raise InputError(path, exc.problem) from None
        source = f"user images from {folder}"
    else:
        if task.calibration is None:
            raise EdgeretError(f"task '{task.name}' has no calibration sampler; pass --calib DIR")
        n = n or DEFAULT_CALIB_SIZE
        for image in Progress(task.calibration(n, seed), f"{task.name}: calibration", total=n,
                              enabled=progress):
            feeds.append(task.preprocess(image, task))
        source = f"the task's calibration sampler (n={n}, seed={seed})"
    return feeds, {"source": source, "size": len(feeds), "sha256": calibration_digest(feeds)}


# ---------------------------------------------------------------------------
# one artifact
# ---------------------------------------------------------------------------


# ONNX Runtime int8: quantize only the MAC-heavy ops and keep convolutions with few input channels (the
# stem, attention maps) float. Measured on quality-oct, one x86 core: quantizing every op (QDQ around
# sigmoid, mul, pooling, and an im2col-bound int8 7x7 conv over 2 channels) made the model 3-4x SLOWER
# than fp32; this policy brings it back to about fp32 speed at a third of the size.
ORT_INT8_OP_TYPES = ("Conv", "Gemm", "MatMul")
ORT_INT8_MIN_CHANNELS = 5


def onnx_int8_options(module: Any, task: TaskPlugin) -> dict[str, Any]:
    """`quantize_onnx_int8` options for this model: op types, and the convs to keep float (by node name,
    read from a probe export; torch's ONNX node names are deterministic)."""
    import onnx

    from edgeret_exporters.onnx_exporter import export_onnx

    with tempfile.TemporaryDirectory(prefix="edgeret-probe-") as tmp:
        path = export_onnx(module, example_inputs(task), Path(tmp) / "probe.onnx",
                           input_names=[s.name for s in task.inputs],
                           output_names=[s.name for s in task.outputs])
        graph = onnx.load(str(path)).graph
    weights = {i.name: list(i.dims) for i in graph.initializer}
    keep = [n.name for n in graph.node if n.op_type == "Conv" and len(weights.get(n.input[1], [])) > 1
            and weights[n.input[1]][1] < ORT_INT8_MIN_CHANNELS]
    return {"op_types_to_quantize": list(ORT_INT8_OP_TYPES), "nodes_to_exclude": keep}


def default_options(exporter: str, precision: str, module: Any, task: TaskPlugin) -> dict[str, Any]:
    """Options the pipeline passes beyond the exporter's defaults (recorded in the manifest)."""
    if exporter == "onnx-int8":
        return onnx_int8_options(module, task)
    if exporter == "tensorrt" and precision == "int8":  # NVIDIA's QDQ placement: inputs of Conv/Gemm only
        return {"op_types_to_quantize": list(ORT_INT8_OP_TYPES)}
    return {}


def accuracy_control_options(task: TaskPlugin, rule: gates.GateRule, module: Any, n: int,
                             progress: bool) -> dict[str, Any]:
    """NNCF accuracy-controlled int8 for OpenVINO: a validation set apart from the gate's held-out set
    (seed HELDOUT_SEED + 1), the gate's metric as NNCF's validation function, the gate's allowance."""
    if rule.kind != "class" or rule.function is None:
        raise EdgeretError(f"task '{task.name}': accuracy control needs a classification metric")
    data = gates.heldout_set(task, n, seed=gates.HELDOUT_SEED + 1, progress=progress)
    if data.truth is not None and bool(np.all(data.truth >= 0)):
        labels = [int(t) for t in data.truth]
    else:  # no ground truth: agreement with the fp32 model
        labels = [int(c) for c in np.argmax(torch_outputs(module, task, data.feeds)[rule.output], axis=-1)]
    items = [(data.feeds[i], labels[i]) for i in range(len(labels))]

    def validate(compiled: Any, validation_items: Any) -> float:
        truth, predicted = [], []
        for feed, label in validation_items:
            out = compiled(feed)[compiled.output(rule.output)]
            truth.append(label)
            predicted.append(int(np.argmax(out)))
        return float(rule.function(np.asarray(truth), np.asarray(predicted)))

    return {"validation_fn": validate, "validation_data": items, "max_drop": rule.allowed / 100.0,
            "drop_type": "absolute"}


def _recordable(options: Mapping[str, Any]) -> dict[str, Any]:
    """Exporter options as JSON for the manifest (the accuracy-control callable and data summarised)."""
    control = "validation_fn" in options
    hidden = ("validation_fn", "validation_data", "max_drop", "drop_type") if control else ()
    out = {k: v for k, v in options.items() if k not in hidden}
    if "validation_fn" in options:
        out["accuracy_control"] = {
            "validation_images": len(options["validation_data"]),
            "validation_set": f"synth set seed {gates.HELDOUT_SEED + 1} (not the gate's held-out set)",
            "max_drop": options.get("max_drop"), "drop_type": options.get("drop_type"),
        }
    return out


def export_artifact(exporters: Mapping[str, Any], target: Target, precision: str, module: Any,
                    task: TaskPlugin, out_path: Path, calibration: Any, metadata: Mapping[str, str],
                    **options: Any) -> Path:
    """Run the registered exporter for (target, precision); returns the artifact path."""
    name = target.exporters[precision]
    exporter = exporters[name]
    if not options:
        options = default_options(name, precision, module, task)
    kwargs: dict[str, Any] = {**EXPORTER_OPTIONS.get(name, {}), **options}
    return Path(exporter.export(
        module, example_inputs(task), out_path, precision, calibration,
        input_names=[s.name for s in task.inputs], output_names=[s.name for s in task.outputs],
        metadata=dict(metadata), **kwargs,
    ))


def artifact_info(path: Path, fmt: str, target: Target) -> dict[str, Any]:
    """What the exporter recorded inside the artifact (quantization scheme, float ops, ...)."""
    try:
        if fmt == "onnx":
            import onnx

            meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        elif fmt == "openvino-ir":
            from edgeret_exporters.openvino_ir import read_openvino_metadata

            meta = read_openvino_metadata(path)
        else:
            from edgeret_exporters.litert import read_tflite_metadata

            meta = read_tflite_metadata(path)
    except Exception as exc:  # informational only
        return {"note": f"metadata unreadable ({type(exc).__name__})"}
    keep = ("edgeret.quantization", "edgeret.float_ops", "edgeret.tensorrt_precision", "edgeret.precision")
    return {k.removeprefix("edgeret."): v for k, v in meta.items() if k in keep}


def _fp16_proxy(artifact: Path, tmp: Path) -> Path:
    """TensorRT fp16 cannot run here: the gate runs an fp16 copy of the ONNX on ONNX Runtime instead."""
    from edgeret_exporters.onnx_fp16 import convert_onnx_fp16

    return convert_onnx_fp16(artifact, tmp / "fp16-proxy.onnx")


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
    from edgeret.host import device_catalog

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

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
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
    from edgeret.bundle import load_manifest

    return ExportResult(out, profile, target, results, skipped, load_manifest(out))


def import_torch(threads: int | None) -> None:
    from edgeret.host import import_optional

    torch = import_optional("torch", "export")
    torch.set_num_threads(max(1, threads or min(os.cpu_count() or 1, 4)))


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
        if mode == "accuracy-control":
            options.update(accuracy_control_options(task, rule, module, min(request.heldout, 100),
                                                    request.progress))
        try:
            artifact = export_artifact(exporters, target, precision, module, task,
                                       folder / f"model{SUFFIX[target.format]}",
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
                gated = _fp16_proxy(artifact, Path(tmp))
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
    options = _recordable({**EXPORTER_OPTIONS.get(target.exporters[precision], {}), **options})

    # Golden pairs: inputs snapped to the 8-bit grid (stored exactly as uint8), outputs of the artifact
    # itself on the gate backend and of the fp32 torch model on exactly those inputs.
    # image tasks: at most 2 pairs, and large outputs other than the gate's are left out (size)
    count = request.golden if rule.kind == "class" else min(request.golden, 2)
    indices = gates.pick_golden(rule, reference, exported, count)
    golden_feeds = []
    for i in indices:
        feed = {}
        for name, array in heldout.feeds[i].items():
            snapped = snap_to_uint8(array)
            feed[name] = array if snapped is None else snapped
        golden_feeds.append(feed)
    golden_in = {s.name: np.concatenate([f[s.name] for f in golden_feeds]) for s in task.inputs}
    runner = gate_plugin.load(artifact, threads=request.threads)
    golden_out = runner_outputs(runner, task, golden_feeds)
    golden_ref = torch_outputs(module, task, golden_feeds)
    kept_outputs = [k for k, v in golden_out.items()
                    if k == rule.output or v[:1].size <= GOLDEN_ALL_OUTPUTS_BELOW]
    golden_out = {k: golden_out[k] for k in kept_outputs}
    golden_ref = {k: golden_ref[k] for k in kept_outputs}
    golden_path = save_golden(folder / "golden.npz", golden_in, golden_out, golden_ref)
    agreement: dict[str, Any] = {"kind": "none"}
    if rule.kind == "class":
        same = int(np.sum(np.argmax(golden_out[rule.output], -1) == np.argmax(golden_ref[rule.output], -1)))
        agreement = {"kind": "class", "output": rule.output, "expected_same": same}
    elif rule.kind in ("image", "fidelity"):
        value = gates.mean_psnr(golden_ref[rule.output], golden_out[rule.output], rule.data_range)
        agreement = {"kind": "psnr", "output": rule.output, "data_range": rule.data_range,
                     "min_db": round(min(value - gates.IMAGE_ALLOWED_DB, PSNR_AGREEMENT_CAP_DB), 3)}

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
        "quantization": artifact_info(artifact, target.format, target),
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
