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


@dataclass(frozen=True)
class Target:
    backend: str  # the profile backend the artifact is written for
    format: str  # the artifact file's format (what a backend's `formats` must include)
    exporters: Mapping[str, str]  # precision -> exporter name (only those registered here)
    skipped: tuple[str, ...] = ()  # earlier backends of the chain and why they are not the target
    suffix: str = ".onnx"  # the artifact file's suffix

    @property
    def tensorrt(self) -> bool:
        return self.backend == "tensorrt"


def target_for(backend: str, exporters: Mapping[str, ExporterPlugin]) -> Target | None:
    """The artifacts edgeret can write for `backend`: per precision, the first registered exporter whose
    `targets` name the backend (None: no exporter targets it). One backend, one artifact format."""
    writers = [e for e in exporters.values() if backend in e.targets]
    if not writers:
        return None
    fmt = writers[0].format
    by_precision: dict[str, str] = {}
    for exporter in writers:
        if exporter.format != fmt:
            continue
        for precision in exporter.precisions:
            by_precision.setdefault(precision, exporter.name)
    return Target(backend, fmt, {p: by_precision[p] for p in PRECISION_ORDER if p in by_precision},
                  suffix=writers[0].suffix or f".{fmt}")


def resolve_target(profile: DeviceProfile, exporters: Mapping[str, ExporterPlugin]) -> Target:
    """The first backend of the profile's chain that an installed exporter writes artifacts for."""
    skipped = []
    for backend in profile.backends:
        target = target_for(backend, exporters)
        if target is None:
            skipped.append(f"{backend}: no installed exporter targets it")
            continue
        return Target(target.backend, target.format, target.exporters, tuple(skipped), target.suffix)
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
