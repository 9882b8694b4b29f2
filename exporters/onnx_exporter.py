"""torch -> ONNX (fp32), with edgeret metadata inside the file (metadata_props)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.registrations import ExporterPlugin

OPSET = 17
ONNX_TARGETS = ("onnxruntime", "cuda")  # the backends that run a plain ONNX file


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props stored in an ONNX file (what the exporter recorded: precision, quantization)."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def export_onnx(
    model: Any,
    example_inputs: tuple,
    out_path: Path,
    precision: str = "fp32",
    calibration: Any = None,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    metadata: Mapping[str, str] | None = None,
    dynamic_batch: bool = True,
) -> Path:
    """Export with the TorchScript-based exporter (deterministic, no onnxscript needed)."""
    import onnx
    import torch

    if precision != "fp32":
        raise ValueError(f"the onnx exporter writes fp32; {precision} comes from its own exporter")
    model = model.eval()
    axes = {name: {0: "batch"} for name in [*input_names, *output_names]} if dynamic_batch else None
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            model, example_inputs, buffer, input_names=list(input_names),
            output_names=list(output_names), dynamic_axes=axes, opset_version=OPSET,
            do_constant_folding=True, dynamo=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.checker.check_model(proto)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".onnx.tmp")
    onnx.save(proto, tmp)
    tmp.replace(out_path)
    return out_path


@hookimpl
def edgeret_exporters() -> Iterable[ExporterPlugin]:
    yield ExporterPlugin(
        name="onnx",
        format="onnx",
        precisions=("fp32",),
        description="torch -> ONNX opset 17 with metadata_props",
        export=export_onnx,
        targets=ONNX_TARGETS,
        suffix=".onnx",
        read_metadata=read_onnx_metadata,
    )
