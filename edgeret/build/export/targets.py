"""Which artifact a device profile gets: target backend, file format, exporter per precision.

The target is the first backend of the profile's chain that edgeret can write
an artifact for (whether or not that backend runs on the build host). The
accuracy gate runs the artifact on the target backend when it is available
here, else on another available backend that loads the same file (a Jetson's
ONNX on ONNX Runtime CPU), and the manifest says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edgeret.devices.profiles import DeviceProfile
from edgeret.errors import EdgeretError
from edgeret.plugin.registrations import BackendPlugin, ExporterPlugin

# precision order for fallback: most compressed first
PRECISION_ORDER = ("int8", "fp16", "fp32")

# target backend -> (artifact file format, {precision: exporter name})
_ONNX = {"fp32": "onnx", "fp16": "onnx-fp16", "int8": "onnx-int8"}
BACKEND_EXPORTS: dict[str, tuple[str, dict[str, str]]] = {
    "onnxruntime": ("onnx", _ONNX),
    "cuda": ("onnx", _ONNX),
    "openvino": ("openvino-ir", dict.fromkeys(PRECISION_ORDER, "openvino-ir")),
    "litert": ("tflite", dict.fromkeys(PRECISION_ORDER, "litert")),
    # TensorRT: the ONNX (fp32 weights for fp32/fp16, QDQ for int8) + a build spec; engine built on device
    "tensorrt": ("onnx", dict.fromkeys(PRECISION_ORDER, "tensorrt")),
}
SUFFIX = {"onnx": ".onnx", "openvino-ir": ".xml", "tflite": ".tflite"}
# Per-exporter options the pipeline passes. litert: PT2E covers conv/linear/add/pool; a task with
# attention (sigmoid, mul) keeps those ops float and the manifest lists them (edgeret.float_ops).
EXPORTER_OPTIONS: dict[str, dict[str, object]] = {"litert": {"require_full_integer": False}}


@dataclass(frozen=True)
class Target:
    backend: str  # the profile backend the artifact is written for
    format: str  # the artifact file's format (what a backend's `formats` must include)
    exporters: Mapping[str, str]  # precision -> exporter name (only those registered here)
    skipped: tuple[str, ...] = ()  # earlier backends of the chain and why they are not the target

    @property
    def tensorrt(self) -> bool:
        return self.backend == "tensorrt"


def resolve_target(profile: DeviceProfile, exporters: Mapping[str, ExporterPlugin]) -> Target:
    skipped = []
    for backend in profile.backends:
        if backend not in BACKEND_EXPORTS:
            skipped.append(f"{backend}: edgeret has no exporter mapping for it")
            continue
        fmt, by_precision = BACKEND_EXPORTS[backend]
        usable = {p: name for p, name in by_precision.items()
                  if name in exporters and p in exporters[name].precisions}
        if not usable:
            skipped.append(f"{backend}: exporters {sorted(set(by_precision.values()))} are not installed")
            continue
        return Target(backend, fmt, usable, tuple(skipped))
    raise EdgeretError(f"device '{profile.name}': no backend of its chain can be exported to here "
                       f"({'; '.join(skipped)})")


def precision_chain(profile: DeviceProfile, requested: str, target: Target) -> list[str]:
    """The precisions to try, in order: the requested one (auto: the profile's default), then the
    profile's less compressed precisions (int8 -> fp16 -> fp32) as gate fallbacks."""
    start = profile.default_precision if requested == "auto" else requested
    if start not in PRECISION_ORDER:
        raise EdgeretError(f"unknown precision '{requested}'; use auto, fp32, fp16 or int8")
    if start not in profile.precisions:
        raise EdgeretError(f"device '{profile.name}' runs {', '.join(profile.precisions)}, not {start}")
    chain = [p for p in PRECISION_ORDER[PRECISION_ORDER.index(start):] if p in profile.precisions]
    chain = [p for p in chain if p in target.exporters]
    if not chain or chain[0] != start:
        raise EdgeretError(f"device '{profile.name}': no installed exporter writes {start} "
                           f"{target.format} for {target.backend}")
    return chain


def gate_backend(target: Target, backends: Mapping[str, BackendPlugin],
                 prefer: Sequence[str] = ("onnxruntime",)) -> tuple[BackendPlugin, str]:
    """Where the gate runs the artifact here: the target backend if available, else a stand-in."""
    plugin = backends.get(target.backend)
    reasons = []
    if plugin is not None and target.format in plugin.formats:
        availability = plugin.available()
        if availability.ok:
            return plugin, ""
        reasons.append(f"{target.backend} is unavailable here ({availability.reason})")
    else:
        reasons.append(f"{target.backend} is not installed here")
    candidates = [*prefer, *sorted(backends)]
    for name in dict.fromkeys(candidates):
        other = backends.get(name)
        if other is None or target.format not in other.formats or name == target.backend:
            continue
        if other.available().ok:
            return other, f"{reasons[0]}: gated on {name} (CPU) with the same {target.format} file"
    raise EdgeretError(f"cannot run the accuracy gate: {reasons[0]} and no other installed backend "
                       f"loads {target.format}")
