"""OpenVINO: Intel CPUs (and GPU/NPU device names passed through). Runtime only, no torch.

Loads OpenVINO IR (.xml + .bin) and, since OpenVINO reads ONNX directly, .onnx.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from edgeret.devices.vendor_telemetry import quiet_import
from edgeret.errors import EdgeretError, InputError
from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.registrations import Availability, BackendPlugin


def _available() -> Availability:
    try:
        ov = quiet_import("openvino")
    except ImportError as exc:
        return Availability(False, f"openvino is not installed ({exc}); pip install 'edgeret[openvino]'")
    devices = tuple(ov.Core().available_devices)
    if not devices:
        return Availability(False, "openvino found no device (CPU, GPU or NPU)")
    return Availability(True, f"openvino {ov.get_version().split('-')[0]} on {', '.join(devices)}",
                        devices)


class OpenVinoRunner:
    def __init__(self, path: Path, device: str = "CPU", threads: int | None = None) -> None:
        ov = quiet_import("openvino")
        core = ov.Core()
        if device not in core.available_devices and device != "AUTO":
            raise EdgeretError(
                f"openvino device '{device}' is not available here; available: "
                f"{', '.join(core.available_devices)}"
            )
        config: dict = {}
        if device == "CPU":
            # f32 unless the artifact itself is reduced precision: on CPUs with AVX512-BF16
            # OpenVINO would otherwise silently compute an fp32 model in bf16.
            config = {"INFERENCE_NUM_THREADS": threads or min(os.cpu_count() or 1, 4),
                      "INFERENCE_PRECISION_HINT": "f32"}
        try:
            self.compiled = core.compile_model(core.read_model(str(path)), device, config)
        except Exception as exc:  # openvino raises RuntimeError subclasses with long text
            raise InputError(path, f"openvino cannot load this model ({str(exc).splitlines()[0]})") from None
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.output_names = [port.get_any_name() for port in self.compiled.outputs]
        self.request = self.compiled.create_infer_request()
        self.path = Path(path)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = set(self.input_names) - set(inputs)
        if missing:
            raise InputError(self.path, f"missing model inputs: {', '.join(sorted(missing))}")
        results = self.request.infer({name: np.ascontiguousarray(inputs[name]) for name in self.input_names})
        return {port.get_any_name(): np.array(value) for port, value in results.items()}


def _load(path: str | Path, device: str = "CPU", threads: int | None = None) -> OpenVinoRunner:
    return OpenVinoRunner(Path(path), device=device, threads=threads)


@hookimpl
def edgeret_backends() -> Iterable[BackendPlugin]:
    yield BackendPlugin(
        name="openvino",
        formats=("openvino-ir", "onnx"),
        description="Intel OpenVINO (CPU; GPU/NPU by device name)",
        available=_available,
        load=_load,
    )
