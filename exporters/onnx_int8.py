"""ONNX Runtime static INT8: fp32 ONNX -> QDQ ONNX with per-channel int8 weights.

Activations and weights are int8 (S8S8, QuantFormat.QDQ: QuantizeLinear /
DequantizeLinear pairs around each quantized op), weights per output channel,
activation ranges from a calibration set run through ONNX Runtime (MinMax by
default; Entropy or Percentile on request). `symmetric_activations=True` gives
zero-point-0 activations, which TensorRT requires for explicit (QDQ) INT8.

Calibration data: an iterable of samples; each sample is a
``{input_name: ndarray}`` mapping, a single ndarray (single-input models) or a
tuple of ndarrays in input order. Samples may be batches; they are split into
single images (``calibration_samples``). None or an empty iterable is an
:class:`EdgeretError`: an int8 export never silently falls back to fp32.

The helpers ``calibration_samples``, ``as_batches`` and ``calibration_digest``
are shared by the other int8 exporters (OpenVINO/NNCF, LiteRT, TensorRT).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.errors import EdgeretError
from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.registrations import ExporterPlugin
from edgeret_exporters.onnx_exporter import ONNX_TARGETS, read_onnx_metadata

CALIBRATE_METHODS = ("minmax", "entropy", "percentile")


def _as_array(value: Any, where: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor: no torch import needed
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except Exception as exc:
        raise EdgeretError(f"calibration {where}: not an array ({exc})") from None
    if array.dtype.kind == "f" and array.dtype != np.float32:
        array = array.astype(np.float32)
    if array.dtype.kind not in "fiub":
        raise EdgeretError(f"calibration {where}: expected a numeric array, got dtype {array.dtype}")
    return array


def calibration_samples(calibration: Any, input_names: Sequence[str], *,
                        exporter: str = "int8") -> list[dict[str, np.ndarray]]:
    """Normalise calibration data to a list of single-image ``{input_name: array}`` feeds.

    Each returned array keeps a leading batch axis of 1. Raises EdgeretError
    for None, an empty set, missing inputs or inconsistent batch sizes.
    """
    names = list(input_names)
    if calibration is None:
        raise EdgeretError(
            f"{exporter} export needs calibration data (got None): pass a few hundred representative "
            "preprocessed inputs, e.g. from the task's calibration sampler; edgeret never falls back to fp32"
        )
    if isinstance(calibration, (np.ndarray, Mapping)) or hasattr(calibration, "detach"):
        calibration = [calibration]
    feeds: list[dict[str, np.ndarray]] = []
    for index, item in enumerate(calibration):
        where = f"sample {index}"
        if isinstance(item, Mapping):
            missing = [n for n in names if n not in item]
            if missing:
                raise EdgeretError(f"calibration {where}: missing model inputs {missing} "
                                   f"(has {sorted(item)})")
            arrays = [_as_array(item[n], f"{where} '{n}'") for n in names]
        elif isinstance(item, (tuple, list)):
            if len(item) != len(names):
                raise EdgeretError(f"calibration {where}: {len(item)} arrays for {len(names)} inputs {names}")
            arrays = [_as_array(a, f"{where}[{i}]") for i, a in enumerate(item)]
        else:
            if len(names) != 1:
                raise EdgeretError(f"calibration {where}: a bare array needs a single-input model; "
                                   f"this one has {names}: pass {{name: array}} mappings")
            arrays = [_as_array(item, where)]
        batch = {a.shape[0] if a.ndim else 0 for a in arrays}
        if len(batch) != 1 or 0 in batch:
            raise EdgeretError(f"calibration {where}: inputs need the same non-empty leading batch axis, "
                               f"got shapes {[a.shape for a in arrays]}")
        for row in range(batch.pop()):
            feeds.append({n: a[row:row + 1] for n, a in zip(names, arrays, strict=True)})
    if not feeds:
        raise EdgeretError(f"{exporter} export needs calibration data, but the calibration set is empty; "
                           "edgeret never falls back to fp32")
    return feeds


def as_batches(samples: Sequence[Mapping[str, np.ndarray]], batch_size: int) -> list[dict[str, np.ndarray]]:
    """Regroup single-image feeds into batches of `batch_size` (for fixed-batch models; drops a remainder)."""
    if batch_size <= 1:
        return [dict(s) for s in samples]
    if len(samples) < batch_size:
        raise EdgeretError(f"calibration has {len(samples)} images, fewer than the model's batch "
                           f"of {batch_size}")
    usable = len(samples) - len(samples) % batch_size
    return [
        {name: np.concatenate([samples[i + j][name] for j in range(batch_size)]) for name in samples[0]}
        for i in range(0, usable, batch_size)
    ]


def calibration_digest(samples: Sequence[Mapping[str, np.ndarray]]) -> str:
    """sha256 over the calibration arrays (names, shapes, dtypes, bytes) in order: recorded in metadata."""
    digest = hashlib.sha256()
    for sample in samples:
        for name in sorted(sample):
            array = np.ascontiguousarray(sample[name])
            digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


class ArrayCalibrationReader:
    """onnxruntime.quantization.CalibrationDataReader over a list of feeds.

    Defined by duck typing (get_next / rewind) so this module does not import
    onnxruntime.quantization at import time; ``_reader`` wraps it in the real
    base class when quantizing.
    """

    def __init__(self, samples: Sequence[Mapping[str, np.ndarray]]) -> None:
        self.samples = list(samples)
        self._iter: Iterator[Mapping[str, np.ndarray]] = iter(self.samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        sample = next(self._iter, None)
        return None if sample is None else {k: np.ascontiguousarray(v) for k, v in sample.items()}

    def rewind(self) -> None:
        self._iter = iter(self.samples)


def _reader(samples: Sequence[Mapping[str, np.ndarray]]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(ArrayCalibrationReader, CalibrationDataReader):
        pass

    return _Reader(samples)


def _onnx_input_names(path: Path) -> tuple[list[str], int | None]:
    """Graph inputs (minus initializers) and their static batch size (None if dynamic)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    dims = inputs[0].type.tensor_type.shape.dim if inputs else []
    batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    return [i.name for i in inputs], batch


def count_qdq_nodes(path: str | Path) -> dict[str, int]:
    """How many QuantizeLinear / DequantizeLinear nodes an ONNX file holds."""
    import onnx

    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    return {op: ops.count(op) for op in ("QuantizeLinear", "DequantizeLinear")}


def quantize_onnx_int8(
    src: str | Path,
    dst: str | Path,
    calibration: Any,
    *,
    per_channel: bool = True,
    activation_type: str = "int8",
    symmetric_activations: bool = False,
    calibrate_method: str = "minmax",
    nodes_to_exclude: Sequence[str] = (),
    op_types_to_quantize: Sequence[str] | None = None,
    preprocess: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Quantize an fp32 ONNX file to static INT8 QDQ with ONNX Runtime.

    `nodes_to_exclude` keeps sensitive layers (by node name) in fp32;
    `activation_type` is "int8" (S8S8, ORT's recommended default) or "uint8"
    (U8S8, sometimes faster on older x86 without VNNI).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    src, dst = Path(src), Path(dst)
    names, batch = _onnx_input_names(src)
    samples = calibration_samples(calibration, names, exporter="onnx int8")
    if calibrate_method not in CALIBRATE_METHODS:
        raise EdgeretError(f"calibrate_method must be one of {CALIBRATE_METHODS}, not {calibrate_method!r}")
    if activation_type not in ("int8", "uint8"):
        raise EdgeretError(f"activation_type must be 'int8' or 'uint8', not {activation_type!r}")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calibrate_method]
    feeds = as_batches(samples, batch or 1)

    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgeret-int8-") as tmp:
        source = src
        if preprocess:  # shape inference + graph optimisation: better QDQ placement
            from onnxruntime.quantization.shape_inference import quant_pre_process

            source = Path(tmp) / "pre.onnx"
            try:
                quant_pre_process(str(src), str(source), skip_symbolic_shape=True)
            except Exception:  # pre-processing is an optimisation, not a requirement
                source = src
        out_tmp = Path(tmp) / "int8.onnx"
        try:
            quantize_static(
                str(source), str(out_tmp), _reader(feeds), quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QInt8 if activation_type == "int8" else QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=method,
                nodes_to_exclude=list(nodes_to_exclude) or None,
                op_types_to_quantize=list(op_types_to_quantize) if op_types_to_quantize else None,
                extra_options={"ActivationSymmetric": symmetric_activations, "WeightSymmetric": True},
                calibration_providers=["CPUExecutionProvider"],
            )
        except EdgeretError:
            raise
        except Exception as exc:
            raise EdgeretError(f"{src}: onnxruntime static quantization failed ({exc})") from exc
        if count_qdq_nodes(out_tmp)["QuantizeLinear"] == 0:
            raise EdgeretError(f"{src}: quantization produced no QuantizeLinear node (no quantizable op?); "
                               "refusing to write an fp32 model labelled int8")
        proto = onnx.load(str(out_tmp))
        from edgeret_exporters.onnx_fp16 import set_metadata

        original = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
        symmetry = "symmetric" if symmetric_activations else "asymmetric"
        granularity = "per-channel" if per_channel else "per-tensor"
        set_metadata(proto, {
            **original, **(metadata or {}),
            "edgeret.precision": "int8",
            "edgeret.quantization": f"onnxruntime static QDQ, {activation_type} activations ({symmetry}), "
                                    f"int8 weights {granularity}, {calibrate_method}",
            "edgeret.calibration_size": len(samples),
            "edgeret.calibration_sha256": calibration_digest(samples),
        })
        onnx.save(proto, str(out_tmp))
        out_tmp.replace(dst)
    return dst


def export_onnx_int8(
    model: Any,
    example_inputs: tuple,
    out_path: str | Path,
    precision: str = "int8",
    calibration: Any = None,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    metadata: Mapping[str, str] | None = None,
    dynamic_batch: bool = True,
    **options: Any,
) -> Path:
    """torch model -> fp32 ONNX -> INT8 QDQ ONNX at `out_path`; `options` go to quantize_onnx_int8."""
    from edgeret_exporters.onnx_exporter import export_onnx

    if precision != "int8":
        raise EdgeretError(f"the onnx-int8 exporter writes int8, not {precision}")
    # Materialise (a generator can be read once) and fail before the slow part.
    samples = calibration_samples(calibration, input_names, exporter="onnx int8")
    with tempfile.TemporaryDirectory(prefix="edgeret-int8-") as tmp:
        fp32 = export_onnx(model, example_inputs, Path(tmp) / "fp32.onnx", input_names=input_names,
                           output_names=output_names, metadata=metadata, dynamic_batch=dynamic_batch)
        return quantize_onnx_int8(fp32, out_path, samples, **options)


@hookimpl
def edgeret_exporters() -> Iterable[ExporterPlugin]:
    yield ExporterPlugin(
        name="onnx-int8",
        format="onnx",
        precisions=("int8",),
        description="torch -> ONNX static INT8 (ONNX Runtime QDQ, per-channel weights, calibrated)",
        export=export_onnx_int8,
        targets=ONNX_TARGETS,
        suffix=".onnx",
        read_metadata=read_onnx_metadata,
    )
