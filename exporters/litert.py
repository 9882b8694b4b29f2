"""torch -> LiteRT (.tflite) with litert-torch (no TensorFlow): fp32, fp16 weights, full-integer INT8.

* fp32: ``litert_torch.convert``.
* fp16: the fp32 model's Conv/FullyConnected/DepthwiseConv/TransposeConv
  weights cast to float16 by ai-edge-quantizer (``float_casting``, 16 bits,
  weight-only). This is the TFLite "float16 quantization": weights stored in
  fp16 with DEQUANTIZE ops in front of the float kernels, so the file is about
  half the size; the GPU delegate (and XNNPACK on ARMv8.2+ with fp16
  arithmetic) computes in fp16, other CPUs upcast to fp32. Other ops and all
  activations stay float32. litert-torch itself has no fp16 switch.
* int8: full-integer PT2E static quantization: ``torch.export`` ->
  ``prepare_pt2e`` with litert-torch's ``PT2EQuantizer`` (symmetric int8,
  per-channel weights) -> calibration -> ``convert_pt2e`` ->
  ``litert_torch.convert(quant_config=QuantConfig(pt2e_quantizer=...))``.
  The file's inputs and outputs are int8 too; the ``litert`` backend
  quantizes float inputs and dequantizes outputs with the tensors'
  scale/zero-point, so callers always pass and get float32.

Names: the model is wrapped so its forward takes keyword arguments named after
`input_names` and returns a dict keyed by `output_names`; the .tflite
signature ``serving_default`` therefore carries the task's names (the backend
maps by signature names). Names that are not Python identifiers fall back to
positional ``args_N`` / ``output_N`` names.

Batch: the file has the example inputs' fixed shape (batch 1 usually); the
backend loops over larger batches.

Metadata: the TFLite flatbuffer's ``metadata`` table gets one entry named
``edgeret`` whose buffer is UTF-8 JSON: the caller's metadata plus
``edgeret.precision``, ``edgeret.input_names``/``edgeret.output_names`` and,
for int8, the calibration size and sha256. Read it with
``read_tflite_metadata``. (TFLite Support's richer ``TFLITE_METADATA`` schema
is not written: it needs the tflite-support package, which requires
TensorFlow.)
"""

from __future__ import annotations

import json
import keyword
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.errors import EdgeretError
from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.registrations import ExporterPlugin

METADATA_NAME = "edgeret"


def _identifiers(names: Sequence[str] | None) -> bool:
    return bool(names) and all(n.isidentifier() and not keyword.iskeyword(n) for n in names)


def _named_wrapper(model: Any, input_names: Sequence[str], output_names: Sequence[str] | None) -> Any:
    """A torch module whose forward has the task's input names and returns {output_name: tensor}.

    The forward is generated from a fixed template because torch.export reads
    argument names from the function signature; the names were validated as
    identifiers so nothing else can be injected.
    """
    import torch

    args = ", ".join(input_names)
    body = f"    out = self.inner({args})\n"
    if output_names:
        body += ("    out = (out,) if torch.is_tensor(out) else tuple(out)\n"
                 f"    names = {tuple(output_names)!r}\n"
                 "    if len(out) != len(names):\n"
                 "        raise ValueError(f'model returned {len(out)} outputs for names {names}')\n"
                 "    return dict(zip(names, out))\n")
    else:
        body += "    return out\n"
    namespace: dict[str, Any] = {"torch": torch}
    exec(f"def forward(self, {args}):\n{body}", namespace)  # noqa: S102 - template, names validated

    class Named(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

    Named.forward = namespace["forward"]
    return Named(model).eval()


def add_tflite_metadata(content: bytes, metadata: Mapping[str, Any]) -> bytes:
    """Return the .tflite bytes with an ``edgeret`` metadata entry (JSON) added or replaced."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(dict(metadata), sort_keys=True).encode(), dtype=np.uint8)
    model.buffers = list(model.buffers or []) + [buffer]
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    ours = (METADATA_NAME, METADATA_NAME.encode())
    kept = [m for m in (model.metadata or []) if (m.name or b"") not in ours]
    model.metadata = [*kept, entry]
    builder = flatbuffers.Builder(max(1024, len(content) + 4096))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_tflite_metadata(path: str | Path) -> dict[str, Any]:
    """The ``edgeret`` JSON metadata inside a .tflite file ({} when absent)."""
    from ai_edge_litert import schema_py_generated as schema

    data = Path(path).read_bytes()
    model = schema.Model.GetRootAsModel(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() in (METADATA_NAME.encode(), METADATA_NAME):
            return json.loads(bytes(model.Buffers(entry.Buffer()).DataAsNumpy()).decode())
    return {}


def tflite_tensor_types(path: str | Path) -> dict[str, Any]:
    """dtype name -> tensor count, plus the input/output dtypes: how to check a file is full-integer."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    counts: dict[str, Any] = {}
    for detail in interpreter.get_tensor_details():
        name = detail["dtype"].__name__
        counts[name] = counts.get(name, 0) + 1
    counts["inputs"] = [d["dtype"].__name__ for d in interpreter.get_input_details()]
    counts["outputs"] = [d["dtype"].__name__ for d in interpreter.get_output_details()]
    return counts


def tflite_float_ops(path: str | Path) -> list[str]:
    """Names of the ops with a float32 result (empty for a full-integer model), read from the flatbuffer.

    (The interpreter's op listing hides delegated ops, so the file is read directly.)
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(Path(path).read_bytes()), 0)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes or []]
    found = set()
    for subgraph in model.subgraphs or []:
        for op in subgraph.operators or []:
            outputs = [subgraph.tensors[i] for i in (op.outputs if op.outputs is not None else []) if i >= 0]
            if any(t.type == schema.TensorType.FLOAT32 for t in outputs):
                found.add(op_names.get(codes[op.opcodeIndex], f"op{codes[op.opcodeIndex]}"))
    return sorted(found)


def _cast_weights_fp16(content: bytes) -> bytes:
    from ai_edge_quantizer import qtyping, quantizer

    engine = quantizer.Quantizer(bytearray(content))
    engine.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                  num_bits=16, algorithm_key="float_casting")
    return bytes(engine.quantize().quantized_model)


def export_litert(
    model: Any,
    example_inputs: tuple,
    out_path: str | Path,
    precision: str = "fp32",
    calibration: Any = None,
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    per_channel: bool = True,
    require_full_integer: bool = True,
    dynamic_batch: bool = False,
) -> Path:
    """torch model -> .tflite at `out_path` in fp32, fp16 (weights) or full-integer int8.

    int8: litert-torch's PT2E quantizer annotates conv2d (+relu), linear, add,
    max/adaptive-avg pooling (and shape ops in between). An op outside that
    set (sub, mul, sigmoid, resize...) stays float; with
    `require_full_integer` (default) that is an EdgeretError naming the ops;
    with False a mixed model is written and its float ops are listed in the
    metadata (``edgeret.float_ops``). `dynamic_batch` is accepted for a
    uniform signature; LiteRT files have a fixed batch (see the module
    docstring).
    """
    import torch

    if precision not in ("fp32", "fp16", "int8"):
        raise EdgeretError(f"litert precision must be fp32, fp16 or int8, not {precision!r}")
    example_inputs = tuple(example_inputs)
    named = _identifiers(input_names) and len(input_names or ()) == len(example_inputs)
    in_names = list(input_names) if named else [f"args_{i}" for i in range(len(example_inputs))]
    samples = None
    if precision == "int8":
        from edgeret_exporters.onnx_int8 import as_batches, calibration_samples

        samples = calibration_samples(calibration, in_names, exporter="litert int8")
        batches = as_batches(samples, int(example_inputs[0].shape[0]) if example_inputs[0].ndim else 1)

    module = model.eval()
    if named:
        module = _named_wrapper(module, in_names, output_names if _identifiers(output_names) else None)
    kwargs = dict(zip(in_names, example_inputs, strict=True))
    info: dict[str, Any] = {**(metadata or {}), "edgeret.precision": precision,
                            "edgeret.input_names": in_names, "edgeret.output_names": list(output_names or [])}

    import litert_torch

    try:
        if precision == "int8":
            from litert_torch.quantize import pt2e_quantizer, quant_config
            from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

            quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
                pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=False)
            )
            with torch.no_grad():
                try:  # strict (dynamo) export records source_fn_stack, which the add/pool annotators need
                    graph = torch.export.export(module, (), kwargs=kwargs, strict=True).module()
                except Exception:
                    graph = torch.export.export(module, (), kwargs=kwargs, strict=False).module()
                prepared = move_exported_model_to_eval(quantize_pt2e.prepare_pt2e(graph, quantizer))
                for batch in batches:
                    prepared(**{k: torch.from_numpy(v) for k, v in batch.items()})
                converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
            for sub in converted.modules():  # exported modules refuse .eval(); the graph is eval already
                sub.training = False
            edge = litert_torch.convert(converted, sample_kwargs=kwargs,
                                        quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer))
            from edgeret_exporters.onnx_int8 import calibration_digest

            granularity = "per-channel" if per_channel else "per-tensor"
            info.update({"edgeret.quantization": f"litert-torch PT2E static int8 (symmetric, {granularity} "
                                                 "weights), int8 inputs/outputs",
                         "edgeret.calibration_size": len(samples),
                         "edgeret.calibration_sha256": calibration_digest(samples)})
        else:
            edge = litert_torch.convert(module, sample_kwargs=kwargs)
        content = bytes(edge.model_content())
    except EdgeretError:
        raise
    except Exception as exc:
        raise EdgeretError(f"litert-torch could not convert the model to {precision} ({exc})") from exc
    if precision == "fp16":
        content = _cast_weights_fp16(content)
        info["edgeret.quantization"] = "ai-edge-quantizer float_casting: fp16 weights, fp32 activations"
    content = add_tflite_metadata(content, info)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tflite.tmp")
    tmp.write_bytes(content)
    if precision == "int8":
        types, float_ops = tflite_tensor_types(tmp), tflite_float_ops(tmp)
        float_io = [t for t in types["inputs"] + types["outputs"] if t != "int8"]
        if types.get("int8", 0) == 0 or (require_full_integer and (float_ops or float_io)):
            tmp.unlink()
            listed = ", ".join(float_ops) or "-"
            raise EdgeretError(
                f"litert int8: the converted model is not full-integer (float ops: {listed}; "
                f"input/output types {types['inputs']} -> {types['outputs']}). litert-torch's PT2E quantizer "
                "covers conv2d(+relu), linear, add and pooling; rewrite the other ops (e.g. x - f(x) as "
                "x + g(x)) or pass require_full_integer=False for a mixed int8/float model"
            )
        if float_ops:
            info["edgeret.float_ops"] = float_ops
            tmp.write_bytes(add_tflite_metadata(tmp.read_bytes(), info))
    tmp.replace(out_path)
    return out_path


@hookimpl
def edgeret_exporters() -> Iterable[ExporterPlugin]:
    yield ExporterPlugin(
        name="litert",
        format="tflite",
        precisions=("fp32", "fp16", "int8"),
        description="torch -> LiteRT .tflite via litert-torch (fp16 weights; full-integer int8 via PT2E)",
        export=export_litert,
        targets=("litert",),
        suffix=".tflite",
        # PT2E covers conv/linear/add/pool; a task with attention (sigmoid, mul) keeps those ops float
        # and the manifest lists them (edgeret.float_ops)
        options={"require_full_integer": False},
        read_metadata=read_tflite_metadata,
    )
