"""One artifact: exporter options per format and precision, the export call, what the file holds."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.build.export import gate as gates
from edgeret.build.export.targets import Target
from edgeret.build.export.task_models import example_inputs, torch_outputs
from edgeret.errors import EdgeretError
from edgeret.plugin.registrations import ExporterPlugin, TaskPlugin

# ONNX Runtime int8: quantize only the MAC-heavy ops and keep convolutions with few input channels (the
# stem, attention maps) float. Measured on quality-oct, one x86 core: quantizing every op (QDQ around
# sigmoid, mul, pooling, and an im2col-bound int8 7x7 conv over 2 channels) made the model 3-4x SLOWER
# than fp32; this policy brings it back to about fp32 speed at a third of the size.
ORT_INT8_OP_TYPES = ("Conv", "Gemm", "MatMul")
ORT_INT8_MIN_CHANNELS = 5


def probe_graph(module: Any, task: TaskPlugin) -> Any:
    """The ONNX graph torch writes for this model (node names are deterministic: "/encoder/l3/Conv")."""
    import onnx

    from edgeret_exporters.onnx_exporter import export_onnx

    with tempfile.TemporaryDirectory(prefix="edgeret-probe-") as tmp:
        path = export_onnx(module, example_inputs(task), Path(tmp) / "probe.onnx",
                           input_names=[s.name for s in task.inputs],
                           output_names=[s.name for s in task.outputs])
        return onnx.load(str(path)).graph


def onnx_scope(module_name: str) -> str:
    """The node-name prefix torch's ONNX export gives a module's ops: one segment per ancestor, each its
    last name atom together with any numeric atoms after it ("encoder.l3" -> "/encoder/l3/",
    "body.2" -> "/body/body.2/")."""
    atoms = module_name.split(".")
    segments, start = [], 0
    for i, atom in enumerate(atoms):
        if not atom.isnumeric():
            start = i
        segments.append(".".join(atoms[start:i + 1]))
    return "/" + "/".join(segments) + "/"


def keep_float_nodes(graph: Any, task: TaskPlugin) -> list[str]:
    """ONNX node names inside the task's `int8_keep_float` modules; a name matching nothing is an error."""
    nodes: list[str] = []
    for module_name in task.int8_keep_float:
        prefix = onnx_scope(module_name)
        found = [n.name for n in graph.node if n.name.startswith(prefix)]
        if not found:
            raise EdgeretError(f"task '{task.name}': int8_keep_float names '{module_name}', "
                               "which is no layer of the exported model")
        nodes += found
    return nodes


def onnx_int8_options(module: Any, task: TaskPlugin) -> dict[str, Any]:
    """`quantize_onnx_int8` options for this model: op types, and the convs to keep float (by node name,
    read from a probe export): those with few input channels and those the task names."""
    graph = probe_graph(module, task)
    weights = {i.name: list(i.dims) for i in graph.initializer}
    keep = [n.name for n in graph.node if n.op_type == "Conv" and len(weights.get(n.input[1], [])) > 1
            and weights[n.input[1]][1] < ORT_INT8_MIN_CHANNELS]
    keep += [n for n in keep_float_nodes(graph, task) if n not in keep]
    return {"op_types_to_quantize": list(ORT_INT8_OP_TYPES), "nodes_to_exclude": keep}


def default_options(exporter: str, precision: str, module: Any, task: TaskPlugin) -> dict[str, Any]:
    """Options the pipeline passes beyond the exporter's defaults (recorded in the manifest)."""
    if exporter == "onnx-int8":
        return onnx_int8_options(module, task)
    if precision != "int8":
        return {}
    keep = keep_float_nodes(probe_graph(module, task), task) if task.int8_keep_float else []
    if exporter == "tensorrt":  # NVIDIA's QDQ placement: inputs of Conv/Gemm only
        options: dict[str, Any] = {"op_types_to_quantize": list(ORT_INT8_OP_TYPES)}
        return options | ({"nodes_to_exclude": keep} if keep else {})
    if exporter == "openvino-ir" and keep:
        # OpenVINO renames a biased Conv "<name>" to "<name>/WithoutBiases" + Add "<name>": match by module
        patterns = [re.escape(onnx_scope(m)) + ".*" for m in task.int8_keep_float]
        return {"ignored_scope": {"patterns": patterns}}
    return {}


def option_notes(exporter: str, precision: str, task: TaskPlugin) -> list[str]:
    """What the exporter could not do of what the task asked (recorded in the manifest's gate notes)."""
    if precision == "int8" and task.int8_keep_float and exporter == "litert":
        return [f"litert int8: {', '.join(task.int8_keep_float)} quantized too (litert-torch's PT2E "
                "quantizer cannot leave a module float)"]
    return []


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


def recordable_options(options: Mapping[str, Any]) -> dict[str, Any]:
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
    kwargs: dict[str, Any] = {**exporter.options, **options}
    return Path(exporter.export(
        module, example_inputs(task), out_path, precision, calibration,
        input_names=[s.name for s in task.inputs], output_names=[s.name for s in task.outputs],
        metadata=dict(metadata), **kwargs,
    ))


def artifact_info(path: Path, exporter: ExporterPlugin) -> dict[str, Any]:
    """What the exporter recorded inside the artifact (quantization scheme, float ops, ...)."""
    if exporter.read_metadata is None:
        return {}
    try:
        meta = exporter.read_metadata(path)
    except Exception as exc:  # informational only
        return {"note": f"metadata unreadable ({type(exc).__name__})"}
    keep = ("edgeret.quantization", "edgeret.float_ops", "edgeret.tensorrt_precision", "edgeret.precision")
    return {k.removeprefix("edgeret."): v for k, v in meta.items() if k in keep}


def fp16_proxy(artifact: Path, tmp: Path) -> Path:
    """TensorRT fp16 cannot run here: the gate runs an fp16 copy of the ONNX on ONNX Runtime instead."""
    from edgeret_exporters.onnx_fp16 import convert_onnx_fp16

    return convert_onnx_fp16(artifact, tmp / "fp16-proxy.onnx")
