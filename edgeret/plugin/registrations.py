"""Typed registration objects that plugins return from their hooks.

Plugins describe themselves with these dataclasses, never loose dicts, so a
typo is an error at registration time rather than a silent miss at run time.
Nothing here imports torch: the build-host parts (model factories) are plain
callables that import torch only when called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

MODALITIES = ("fundus", "oct", "any")
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output, described well enough to feed it without code.

    Follows the spirit of MONAI's `network_data_format`.
    """

    name: str
    shape: tuple[int | str, ...]  # e.g. (1, 3, 512, 512); strings are dynamic axes
    dtype: str = "float32"
    value_range: tuple[float, float] | None = (0.0, 1.0)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "value_range": list(self.value_range) if self.value_range else None,
            "description": self.description,
        }


class Preprocess(Protocol):
    def __call__(self, image: np.ndarray, spec: TaskPlugin) -> dict[str, np.ndarray]: ...


class Postprocess(Protocol):
    def __call__(self, outputs: Mapping[str, np.ndarray], spec: TaskPlugin) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TrainRequest:
    """What `edgeret train TASK` asks of a task's `train` function."""

    data_dir: Path
    out_dir: Path
    epochs: int | None = None  # None: the task's own default
    batch_size: int | None = None
    seed: int = 0
    threads: int | None = None
    resume: bool = True
    variant: str | None = None  # None: the task's default model
    progress: bool = True
    more_data: tuple[Path, ...] = ()  # further --data folders, mixed with data_dir
    folds: int = 0  # > 1: patient-level k-fold cross-validation before the final training

    @property
    def data_dirs(self) -> tuple[Path, ...]:
        return (self.data_dir, *self.more_data)


@dataclass(frozen=True)
class EvalRequest:
    """What `edgeret eval TASK` asks of a task's `evaluate` function."""

    data_dir: Path
    out_dir: Path  # where JSON, Markdown and PNG reports go
    models_dir: Path | None = None  # None: the task's committed weights
    backend: str = "torch"  # "torch" or "onnxruntime" (runs the exported default)
    progress: bool = True


@dataclass(frozen=True)
class ExportScore:
    """A task's own export-gate metric, for tasks whose quality needs more than their outputs alone.

    `score(raw_image, outputs, task)` gets one held-out raw image (as the task's `calibration` or
    the phantom generator made it), the model's outputs for it (batch of 1) and the task as the
    device profile sized it, and returns a figure
    where higher is better, e.g. the codec's round-trip PSNR through the hub decoder. The export
    gate averages it over the held-out set for fp32 and for the exported model; the export fails
    when the drop exceeds `allowed_drop` (None: the gate's default for the unit, 0.2 dB)."""

    name: str
    unit: str  # "dB" or "points"
    score: Callable[[np.ndarray, Mapping[str, np.ndarray], TaskPlugin], float]
    allowed_drop: float | None = None


@dataclass(frozen=True)
class TaskPlugin:
    """A task: what it reads, how to prepare it, how to read the model's answer.

    `preprocess` and `postprocess` are pure numpy functions shared by torch
    training, export calibration and every runtime backend.
    """

    name: str
    modality: str
    description: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocess: Preprocess
    postprocess: Postprocess
    labels: tuple[str, ...] = ()
    # Image kind the task reads from disk: "color", "gray" or None for either.
    image_kind: str | None = None
    # Runtime artifact shipped with the plugin (ONNX), run without torch.
    default_model: Path | None = None
    # Build host only: returns a torch.nn.Module; imports torch when called.
    model_factory: Callable[[], Any] | None = None
    default_weights: Path | None = None
    # Build host only: wraps the trained network (weights loaded) into the module that is exported,
    # whose forward returns exactly `outputs` (e.g. softmax probabilities instead of logits). None:
    # the network's own `runtime_module()` if it has one, else the network as it is.
    runtime_module: Callable[[Any], Any] | None = None
    # name -> metric(y_true, y_pred) -> float, used by eval and the export gate.
    metrics: Mapping[str, Callable[..., float]] = field(default_factory=dict)
    # (n, seed) -> iterable of raw images for INT8 calibration.
    calibration: Callable[[int, int], Iterable[np.ndarray]] | None = None
    # Build host only; both import torch when called, never at registration.
    train: Callable[[TrainRequest], Path] | None = None
    evaluate: Callable[[EvalRequest], dict[str, Any]] | None = None
    # Export gate metric computed from the raw held-out image and the outputs (None: the gate
    # derives one from the output specs: class metric, PSNR, or PSNR vs fp32).
    export_score: ExportScore | None = None
    # Classifiers: (N, K) scores -> (N,) class indices, the decision postprocess makes (an
    # operating point, say); None = argmax. The export gate scores exported models by it.
    decide: Callable[[np.ndarray], np.ndarray] | None = None
    # torch module names (e.g. "encoder.l3") whose layers stay float in every int8 export: layers
    # whose int8 noise the gate cannot afford. Exporters that cannot keep a layer float say so.
    int8_keep_float: tuple[str, ...] = ()

    def decisions(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores)
        return np.asarray(self.decide(scores)) if self.decide else np.argmax(scores, axis=-1)

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"task {self.name!r}: modality must be one of {MODALITIES}")
        if not self.inputs or not self.outputs:
            raise ValueError(f"task {self.name!r}: declare at least one input and one output")


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here, and if not, why (shown to the user)."""

    ok: bool
    reason: str = ""
    devices: tuple[str, ...] = ()


class Runner(Protocol):
    """A loaded model: numpy in, numpy out. Backends return one of these."""

    input_names: Sequence[str]
    output_names: Sequence[str]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class BackendPlugin:
    """An inference runtime. Runtime only: must not import torch."""

    name: str
    formats: tuple[str, ...]  # artifact formats it loads, e.g. ("onnx",)
    description: str
    available: Callable[[], Availability]
    load: Callable[..., Runner]  # load(path, device="CPU", threads=None) -> Runner


@dataclass(frozen=True)
class ExporterPlugin:
    """A build-time converter: torch model -> artifact in one format, for the backends in `targets`.

    Everything the export pipeline needs to know about a format is here, so a new format is a
    plugin and no edit of the core: `edgeret export --device D` takes the first backend of D's
    chain that some exporter `targets`, and per precision the first such exporter that writes it.
    """

    name: str
    format: str  # the artifact's format: a backend loads it when its `formats` include this
    precisions: tuple[str, ...]
    description: str
    # export(model, example_inputs, out_path, precision, calibration=None, *, input_names,
    #        output_names, metadata, **options) -> Path. calibration: preprocessed arrays for int8.
    export: Callable[..., Path]
    targets: tuple[str, ...] = ()  # backend names whose devices get this exporter's artifacts
    suffix: str = ""  # the artifact file's suffix (".onnx", ".xml", ".tflite")
    options: Mapping[str, Any] = field(default_factory=dict)  # passed on every export (in the manifest)
    # what the exporter recorded inside an artifact (quantization scheme, float ops): {"edgeret.*": str}
    read_metadata: Callable[[Path], Mapping[str, str]] | None = None


@dataclass(frozen=True)
class DeviceProfileSource:
    """Where device profiles come from: a YAML file or a folder of them."""

    path: Path


@dataclass(frozen=True)
class Subcommand:
    """A CLI subcommand: `configure(parser)` adds arguments, `run(args)` returns the exit code."""

    name: str
    help: str
    configure: Callable[[Any], None]
    run: Callable[[Any], int]
