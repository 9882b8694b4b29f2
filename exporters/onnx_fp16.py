"""fp32 ONNX -> fp16 ONNX (weights and compute in float16, inputs/outputs kept float32).

Callers feed the same float32 arrays as for the fp32 model: the converter
inserts Cast nodes right after the inputs and before the outputs
(`keep_io_types=True`). Metadata (ONNX metadata_props) is carried over and
`edgeret.precision` is set to `fp16`.

Uses `onnxruntime.transformers.float16`, which ships with onnxruntime (no extra
dependency). torch and onnx are imported inside the functions only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeret.errors import EdgeretError
from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.registrations import ExporterPlugin
from edgeret_exporters.onnx_exporter import ONNX_TARGETS, read_onnx_metadata

# Ops left in fp32 by default: numerically fragile reductions where fp16
# overflows/underflows easily (exp of large logits, sums of squares).
DEFAULT_FP32_OPS = ("Softmax", "LogSoftmax", "ReduceSum", "ReduceSumSquare", "ReduceLogSumExp")


def set_metadata(proto: Any, metadata: Mapping[str, Any]) -> None:
    """Set (replace) key/value pairs in an ONNX ModelProto's metadata_props."""
    current = {p.key: p.value for p in proto.metadata_props}
    current.update({k: str(v) for k, v in metadata.items()})
    del proto.metadata_props[:]
    for key, value in current.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _toposort(graph: Any) -> None:
    """Reorder graph nodes topologically (the converter appends its input Casts at the end)."""
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in known for name in n.input)]
        if not ready:  # a cycle or a dangling input: leave the order alone, the checker will say why
            return
        for node in ready:
            ordered.append(node)
            known.update(node.output)
        pending = [n for n in pending if all(n is not r for r in ready)]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def convert_onnx_fp16(
    src: str | Path,
    dst: str | Path,
    *,
    keep_io_types: bool = True,
    keep_fp32_ops: Sequence[str] = DEFAULT_FP32_OPS,
    keep_fp32_nodes: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Convert an fp32 ONNX file to fp16.

    Op types in `keep_fp32_ops` (added to onnxruntime's own block list) and
    nodes named in `keep_fp32_nodes` stay fp32, with casts around them.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    src, dst = Path(src), Path(dst)
    try:
        proto = onnx.load(str(src))
    except Exception as exc:
        raise EdgeretError(f"{src}: not a readable ONNX model ({exc})") from None
    proto = convert_float_to_float16(
        proto, keep_io_types=keep_io_types,
        op_block_list=sorted({*DEFAULT_OP_BLOCK_LIST, *keep_fp32_ops}),
        node_block_list=list(keep_fp32_nodes) or None,
    )
    _toposort(proto.graph)
    set_metadata(proto, {**(metadata or {}), "edgeret.precision": "fp16"})
    onnx.checker.check_model(proto)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".onnx.tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(dst)
    return dst


def export_onnx_fp16(
    model: Any,
    example_inputs: tuple,
    out_path: str | Path,
    precision: str = "fp16",
    calibration: Any = None,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    metadata: Mapping[str, str] | None = None,
    dynamic_batch: bool = True,
    keep_fp32_ops: Sequence[str] = DEFAULT_FP32_OPS,
    keep_fp32_nodes: Sequence[str] = (),
) -> Path:
    """torch model -> fp32 ONNX (onnx_exporter) -> fp16 ONNX at `out_path`. `calibration` is ignored."""
    from edgeret_exporters.onnx_exporter import export_onnx

    if precision != "fp16":
        raise EdgeretError(f"the onnx-fp16 exporter writes fp16, not {precision}")
    with tempfile.TemporaryDirectory(prefix="edgeret-fp16-") as tmp:
        fp32 = export_onnx(model, example_inputs, Path(tmp) / "fp32.onnx", input_names=input_names,
                           output_names=output_names, metadata=metadata, dynamic_batch=dynamic_batch)
        return convert_onnx_fp16(fp32, out_path, keep_fp32_ops=keep_fp32_ops, keep_fp32_nodes=keep_fp32_nodes)


@hookimpl
def edgeret_exporters() -> Iterable[ExporterPlugin]:
    yield ExporterPlugin(
        name="onnx-fp16",
        format="onnx",
        precisions=("fp16",),
        description="torch -> ONNX with fp16 weights and compute, float32 inputs/outputs",
        export=export_onnx_fp16,
        targets=ONNX_TARGETS,
        suffix=".onnx",
        read_metadata=read_onnx_metadata,
    )
