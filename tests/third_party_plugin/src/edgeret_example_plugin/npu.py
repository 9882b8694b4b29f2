"""A made-up accelerator, "example-npu", added by a third party without touching edgeret's core.

Three registrations make a new artifact format exportable, loadable and verifiable:
an exporter that writes it (`targets` names the backend), a backend that loads it
(`formats` names the format) and a device profile whose backend chain names the backend.
The "format" is an ONNX file under its own name, run by ONNX Runtime: enough to prove the
contract; a real NPU would call its vendor's compiler and runtime here.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeret import hookimpl
from edgeret.plugin.registrations import Availability, BackendPlugin, DeviceProfileSource, ExporterPlugin

FORMAT = "example-npu-blob"
BACKEND = "example-npu"


def export_blob(model: Any, example_inputs: tuple, out_path: Path, precision: str = "fp32",
                calibration: Any = None, *, input_names: Sequence[str], output_names: Sequence[str],
                metadata: Mapping[str, str] | None = None, **options: Any) -> Path:
    import onnx
    import torch

    buffer = io.BytesIO()
    axes = {name: {0: "batch"} for name in [*input_names, *output_names]}
    with torch.no_grad():
        torch.onnx.export(model.eval(), example_inputs, buffer, input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=axes, opset_version=17, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    notes = {"edgeret.precision": precision,
             "edgeret.quantization": f"example-npu blob, {options.get('tiling', '?')} tiling"}
    for key, value in {**(metadata or {}), **notes}.items():
        item = proto.metadata_props.add()
        item.key, item.value = key, str(value)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(proto.SerializeToString())
    return out_path


def read_blob_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


class BlobRunner:
    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, dict(inputs)), strict=True))


def load_blob(path: Path, device: str = "CPU", threads: int | None = None) -> BlobRunner:
    return BlobRunner(Path(path), threads)


@hookimpl
def edgeret_exporters() -> Iterable[ExporterPlugin]:
    yield ExporterPlugin(name="example-npu-compiler", format=FORMAT, precisions=("fp32",),
                         description="torch -> example-npu blob", export=export_blob,
                         targets=(BACKEND,), suffix=".blob", options={"tiling": "auto"},
                         read_metadata=read_blob_metadata)


@hookimpl
def edgeret_backends() -> Iterable[BackendPlugin]:
    yield BackendPlugin(name=BACKEND, formats=(FORMAT,), load=load_blob,
                        description="example NPU runtime (ONNX Runtime inside)",
                        available=lambda: Availability(True))


@hookimpl
def edgeret_device_profiles() -> Iterable[DeviceProfileSource]:
    yield DeviceProfileSource(Path(__file__).with_name("example-npu-board.yaml"))
