"""Every exporter writes a file its backend runs, close to torch; int8 is really int8; TensorRT caching.

Two tiny models with random-but-fixed weights:

* a conv classifier (3x32x32 -> 4 logits). Its last layer is set so the 32
  test images spread over several classes (a random head would put them all
  in one class and make "same argmax" trivially true);
* a residual conv image-to-image net (1x64x64 -> 1x64x64, ``x + body(x)``).

Tolerances below are set from figures measured on this machine (x86 with
AVX512-BF16; onnxruntime 1.31, openvino 2026.4, nncf 3.4, litert-torch 0.10,
ai-edge-litert 2.3), with margin. Classifier logits span -18..12; PSNR uses
the reference output's range as peak.

| artifact                      | classifier: max abs err, argmax | image net: PSNR |
|-------------------------------|---------------------------------|-----------------|
| ONNX fp16 (onnxruntime)       | 0.016, 32/32                    | 105 dB          |
| ONNX int8 QDQ (onnxruntime)   | 0.78, 32/32                     | 56 dB           |
| OpenVINO fp32 (f32 hint)      | 7.6e-6, 32/32                   | 157 dB          |
| OpenVINO fp16 (f32 hint)      | 0.016, 32/32                    | 105 dB          |
| OpenVINO int8 NNCF            | 1.6, 31/32                      | 59 dB           |
| LiteRT fp32                   | 1.3e-5, 32/32                   | 156 dB          |
| LiteRT fp16 (fp16 weights)    | 0.0096, 32/32                   | 107 dB          |
| LiteRT int8 (full integer)    | 0.82, 32/32                     | 56 dB           |

OpenVINO's CPU plugin computes in bf16 by default on CPUs with AVX512-BF16
(this one): through the ``openvino`` backend the fp32 IR's logits differ by
up to 0.28 (31/32 argmax, image net 79 dB). The strict fp32/fp16 IR checks
therefore compile with ``INFERENCE_PRECISION_HINT=f32``; the backend runs
are checked with the looser bounds.
"""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeret.errors import EdgeretError, InputError
from edgeret.host import Host
from edgeret_exporters import litert, onnx_fp16, onnx_int8, openvino_ir, tensorrt

N_TEST = 32
N_CALIB = 32


# ---------------------------------------------------------------------------
# tiny models and data
# ---------------------------------------------------------------------------


def images(n: int, channels: int, size: int, seed: int) -> np.ndarray:
    """Smooth random images in [0, 1] with a per-image colour cast (not white noise)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.1, 0.9, (n, channels, 1, 1))
    coarse = rng.normal(0, 1, (n, channels, size // 8, size // 8)).repeat(8, 2).repeat(8, 3)
    fine = rng.normal(0, 1, (n, channels, size, size))
    return np.clip(base + 0.15 * coarse + 0.05 * fine, 0, 1).astype(np.float32)


def make_classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 4),
    ).eval()
    bn = net[1]
    with torch.no_grad():  # non-trivial BatchNorm statistics, folded by the exporters
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.1, 0.1)
        features = torch.nn.Sequential(*list(net)[:-1])(torch.from_numpy(images(64, 3, 32, 9)))
        weight = torch.randn(4, 16, generator=torch.Generator().manual_seed(1)) / features.std(0).mean()
        net[-1].weight.copy_(weight)
        net[-1].bias.copy_(-(weight @ features.mean(0)))  # centred logits: classes spread out
    return net


class Residual(torch.nn.Module):
    """A DnCNN-like image-to-image net: x + body(x)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Case:
    def __init__(self, name: str, model: torch.nn.Module, shape: tuple[int, ...], output: str) -> None:
        self.name, self.model, self.output = name, model, output
        channels, size = shape[1], shape[2]
        self.example = (torch.zeros(shape),)
        self.x = images(N_TEST, channels, size, seed=1)
        self.calibration = images(N_CALIB, channels, size, seed=2)
        with torch.no_grad():
            self.expected = model(torch.from_numpy(self.x)).numpy()
        self.kwargs = {"input_names": ["image"], "output_names": [output],
                       "metadata": {"edgeret.task": f"test-{name}"}}


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    return {
        "classifier": Case("classifier", make_classifier(), (1, 3, 32, 32), "logits"),
        "image": Case("image", Residual().eval(), (1, 1, 64, 64), "restored"),
    }


def psnr(actual: np.ndarray, reference: np.ndarray) -> float:
    """PSNR with the reference's own dynamic range as peak (stricter than assuming 1.0)."""
    peak = float(reference.max() - reference.min())
    mse = float(np.mean((actual.astype(np.float64) - reference) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def agreement(actual: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean(actual.argmax(1) == reference.argmax(1)))


def run_backend(backend: str, path: Path, case: Case) -> np.ndarray:
    b = Host().backend(backend)
    assert b.available().ok, b.available().reason
    runner = b.load(path)
    out = runner.run({"image": case.x})
    assert list(out) == [case.output]
    assert out[case.output].dtype == np.float32 and out[case.output].shape == case.expected.shape
    return out[case.output]


def openvino_f32(path: Path, case: Case) -> np.ndarray:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled({"image": case.x})[0]


_ARTIFACTS: dict[tuple[str, str, str], Path] = {}


@pytest.fixture(scope="module")
def artifact(cases, tmp_path_factory):
    """artifact(exporter, precision, case) -> exported path, exported once per module."""
    folder = tmp_path_factory.mktemp("artifacts")
    exporters = {"onnx-fp16": (onnx_fp16.export_onnx_fp16, ".onnx"),
                 "onnx-int8": (onnx_int8.export_onnx_int8, ".onnx"),
                 "openvino-ir": (openvino_ir.export_openvino, ".xml"),
                 "litert": (litert.export_litert, ".tflite")}

    def get(exporter: str, precision: str, case_name: str) -> Path:
        key = (exporter, precision, case_name)
        if key not in _ARTIFACTS:
            export, suffix = exporters[exporter]
            case = cases[case_name]
            out = folder / f"{case_name}-{exporter}-{precision}{suffix}"
            calibration = case.calibration if precision == "int8" else None
            path = export(case.model, case.example, out, precision, calibration, **case.kwargs)
            assert Path(path).is_file()
            _ARTIFACTS[key] = Path(path)
        return _ARTIFACTS[key]

    yield get
    _ARTIFACTS.clear()


# ---------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------


def test_exporters_and_backends_are_registered():
    host = Host()
    exporters = host.exporters()
    assert exporters["onnx-fp16"].precisions == ("fp16",) and exporters["onnx-fp16"].format == "onnx"
    assert exporters["onnx-int8"].precisions == ("int8",)
    assert exporters["openvino-ir"].precisions == ("fp32", "fp16", "int8")
    assert exporters["litert"].format == "tflite"
    assert exporters["litert"].precisions == ("fp32", "fp16", "int8")
    assert exporters["tensorrt"].format == "tensorrt"
    backends = host.backends()
    assert backends["litert"].formats == ("tflite",)
    assert backends["cuda"].formats == ("onnx",) and backends["tensorrt"].formats == ("tensorrt",)
    assert host.failures == []


# ---------------------------------------------------------------------------
# ONNX fp16 / int8
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case_name, atol", [("classifier", 0.05), ("image", 1e-3)])
def test_onnx_fp16_agrees_with_torch(artifact, cases, case_name, atol):
    import onnx

    case = cases[case_name]
    path = artifact("onnx-fp16", "fp16", case_name)
    proto = onnx.load(path)
    io_types = [i.type.tensor_type.elem_type for i in [*proto.graph.input, *proto.graph.output]]
    assert io_types == [onnx.TensorProto.FLOAT] * 2  # callers feed and get float32
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["edgeret.precision"] == "fp16" and props["edgeret.task"] == f"test-{case_name}"
    out = run_backend("onnxruntime", path, case)
    np.testing.assert_allclose(out, case.expected, atol=atol)


@pytest.mark.parametrize("case_name", ["classifier", "image"])
def test_onnx_int8_is_qdq_and_close_to_torch(artifact, cases, case_name):
    import onnx

    case = cases[case_name]
    path = artifact("onnx-int8", "int8", case_name)
    qdq = onnx_int8.count_qdq_nodes(path)
    assert qdq["QuantizeLinear"] > 0 and qdq["DequantizeLinear"] > qdq["QuantizeLinear"]  # + weights
    proto = onnx.load(path)
    assert any(t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4 for t in proto.graph.initializer)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["edgeret.precision"] == "int8" and props["edgeret.calibration_size"] == str(N_CALIB)
    assert len(props["edgeret.calibration_sha256"]) == 64
    out = run_backend("onnxruntime", path, case)
    if case_name == "classifier":
        assert agreement(out, case.expected) >= 0.9  # measured 32/32
    else:
        assert psnr(out, case.expected) >= 45  # measured 55 dB


# ---------------------------------------------------------------------------
# OpenVINO IR
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("precision, atol", [("fp32", 1e-4), ("fp16", 0.05)])
def test_openvino_fp_agrees_with_torch(artifact, cases, precision, atol):
    case = cases["classifier"]
    path = artifact("openvino-ir", precision, "classifier")
    assert path.with_suffix(".bin").is_file()
    meta = openvino_ir.read_openvino_metadata(path)
    assert meta["edgeret.precision"] == precision and meta["edgeret.task"] == "test-classifier"
    ops = openvino_ir.openvino_op_types(path)
    assert ("Constant:f16" in ops) == (precision == "fp16")
    np.testing.assert_allclose(openvino_f32(path, case), case.expected, atol=atol)
    out = run_backend("openvino", path, case)  # default CPU precision: bf16 on AVX512-BF16 CPUs
    assert agreement(out, case.expected) >= 0.9


def test_openvino_fp16_image_net(artifact, cases):
    case = cases["image"]
    path = artifact("openvino-ir", "fp16", "image")
    np.testing.assert_allclose(openvino_f32(path, case), case.expected, atol=1e-3)
    assert psnr(run_backend("openvino", path, case), case.expected) >= 60  # bf16 compute: 70 dB


@pytest.mark.parametrize("case_name", ["classifier", "image"])
def test_openvino_int8_nncf_is_quantized_and_close(artifact, cases, case_name):
    case = cases[case_name]
    path = artifact("openvino-ir", "int8", case_name)
    ops = openvino_ir.openvino_op_types(path)
    assert ops.get("FakeQuantize", 0) > 0 and ops.get("Constant:i8", 0) > 0  # int8 weights
    meta = openvino_ir.read_openvino_metadata(path)
    assert meta["edgeret.precision"] == "int8" and meta["edgeret.calibration_size"] == str(N_CALIB)
    out = run_backend("openvino", path, case)
    if case_name == "classifier":
        assert agreement(out, case.expected) >= 0.9  # measured 31/32
    else:
        assert psnr(out, case.expected) >= 45  # measured 59 dB (NNCF's mean_minmax ranges: 32 dB)


def test_openvino_int8_ignored_scope_keeps_layers_fp32(cases, artifact, tmp_path):
    import onnx

    from edgeret_exporters.onnx_exporter import export_onnx

    case = cases["image"]
    fp32 = export_onnx(case.model, case.example, tmp_path / "fp32.onnx", input_names=["image"],
                       output_names=["restored"])
    first_conv = next(n.name for n in onnx.load(fp32).graph.node if n.op_type == "Conv")
    # OpenVINO splits an ONNX Conv into "<name>/WithoutBiases" + a bias Add "<name>": use a pattern
    scope = {"types": ["Add"], "patterns": [re.escape(first_conv) + ".*"]}
    kept = openvino_ir.onnx_to_openvino(fp32, tmp_path / "kept.xml", "int8", case.calibration,
                                        ignored_scope=scope)
    full_ops = openvino_ir.openvino_op_types(artifact("openvino-ir", "int8", "image"))
    kept_ops = openvino_ir.openvino_op_types(kept)
    assert 0 < kept_ops["FakeQuantize"] < full_ops["FakeQuantize"]
    assert kept_ops["Constant:i8"] == full_ops["Constant:i8"] - 1  # the first conv's weights stay fp32
    assert psnr(run_backend("openvino", kept, case), case.expected) >= 50


def test_openvino_int8_with_accuracy_control(cases, tmp_path):
    from edgeret_exporters.onnx_exporter import export_onnx

    case = cases["classifier"]
    fp32 = export_onnx(case.model, case.example, tmp_path / "fp32.onnx", input_names=["image"],
                       output_names=["logits"])
    labels = case.expected.argmax(1)
    items = [{"image": case.x[i:i + 1], "label": int(labels[i])} for i in range(N_TEST)]
    calls = []

    def validate(compiled, data) -> float:  # top-1 agreement with the fp32 model's labels
        hits = [int(compiled({"image": d["image"]})[0].argmax() == d["label"]) for d in data]
        calls.append(len(hits))
        return float(np.mean(hits))

    path = openvino_ir.onnx_to_openvino(
        fp32, tmp_path / "acc.xml", "int8", case.calibration, validation_fn=validate,
        validation_data=items, max_drop=0.0,
    )
    assert calls, "the validation function was never called"
    meta = openvino_ir.read_openvino_metadata(path)
    assert "quantize_with_accuracy_control" in meta["edgeret.quantization"]
    assert agreement(run_backend("openvino", path, case), case.expected) >= 0.9


# ---------------------------------------------------------------------------
# LiteRT
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case_name, precision, atol", [
    ("classifier", "fp32", 1e-4), ("image", "fp32", 1e-4),
    ("classifier", "fp16", 0.05), ("image", "fp16", 1e-3),
])
def test_litert_float_agrees_with_torch(artifact, cases, case_name, precision, atol):
    case = cases[case_name]
    path = artifact("litert", precision, case_name)
    types_ = litert.tflite_tensor_types(path)
    assert types_["inputs"] == ["float32"] and types_["outputs"] == ["float32"]
    assert ("float16" in types_) == (precision == "fp16")  # fp16: weights stored as float16
    meta = litert.read_tflite_metadata(path)
    assert meta["edgeret.precision"] == precision and meta["edgeret.input_names"] == ["image"]
    np.testing.assert_allclose(run_backend("litert", path, case), case.expected, atol=atol)


@pytest.mark.parametrize("case_name", ["classifier", "image"])
def test_litert_int8_is_full_integer_and_close(artifact, cases, case_name):
    case = cases[case_name]
    path = artifact("litert", "int8", case_name)
    types_ = litert.tflite_tensor_types(path)
    assert types_["inputs"] == ["int8"] and types_["outputs"] == ["int8"]
    assert "float32" not in types_ and types_["int8"] > 0
    assert litert.tflite_float_ops(path) == []
    meta = litert.read_tflite_metadata(path)
    assert meta["edgeret.calibration_size"] == N_CALIB
    out = run_backend("litert", path, case)  # the backend quantizes/dequantizes: float32 in and out
    if case_name == "classifier":
        assert agreement(out, case.expected) >= 0.9  # measured 32/32
    else:
        assert psnr(out, case.expected) >= 45  # measured 55 dB


def test_litert_fp32_is_smaller_at_fp16_and_int8(artifact):
    sizes = {p: artifact("litert", p, "classifier").stat().st_size for p in ("fp32", "fp16", "int8")}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]


def test_litert_backend_maps_by_order_and_refuses_other_devices(artifact, cases):
    case = cases["classifier"]
    path = artifact("litert", "fp32", "classifier")
    backend = Host().backend("litert")
    runner = backend.load(path, threads=1)
    assert runner.input_names == ["image"] and runner.output_names == ["logits"]
    out = runner.run({"some_other_name": case.x[:2]})  # one input: mapped by order
    np.testing.assert_allclose(out["logits"], case.expected[:2], atol=1e-4)
    with pytest.raises(EdgeretError, match="CPU only"):
        backend.load(path, device="GPU")


def test_litert_backend_corrupt_file_names_it(tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a flatbuffer" * 8)
    with pytest.raises(InputError) as err:
        Host().backend("litert").load(bad)
    assert str(bad) in str(err.value)


def test_litert_quantize_dequantize_roundtrip():
    from edgeret_plugins.backends.litert_backend import dequantize_output, quantize_input

    detail = {"dtype": np.int8, "quantization_parameters": {
        "scales": np.array([0.5], np.float32), "zero_points": np.array([-3]), "quantized_dimension": 0}}
    x = np.array([[-100.0, -1.0, 0.0, 0.74, 1.0, 100.0]], np.float32)
    q = quantize_input(x, detail)
    assert q.dtype == np.int8 and q.tolist() == [[-128, -5, -3, -2, -1, 127]]
    np.testing.assert_allclose(dequantize_output(q, detail), [[-62.5, -1.0, 0.0, 0.5, 1.0, 65.0]])
    per_channel = {"dtype": np.int8, "quantization_parameters": {
        "scales": np.array([1.0, 0.1], np.float32), "zero_points": np.array([0, 0]),
        "quantized_dimension": 1}}
    np.testing.assert_allclose(dequantize_output(np.array([[10, 10]], np.int8), per_channel), [[10.0, 1.0]])
    floating = {"dtype": np.float32, "quantization_parameters": {"scales": np.array([])}}
    assert quantize_input(x, floating).dtype == np.float32


# ---------------------------------------------------------------------------
# int8 without calibration: a clear error, never an fp32 fallback
# ---------------------------------------------------------------------------


def _int8_exporters():
    return {
        "onnx-int8": onnx_int8.export_onnx_int8,
        "openvino-ir": openvino_ir.export_openvino,
        "litert": litert.export_litert,
        "tensorrt": tensorrt.export_tensorrt,
    }


@pytest.mark.parametrize("calibration", [None, [], iter(())], ids=["none", "empty-list", "empty-iterator"])
@pytest.mark.parametrize("exporter", sorted(_int8_exporters()))
def test_int8_without_calibration_is_an_error(cases, tmp_path, exporter, calibration):
    case = cases["classifier"]
    out = tmp_path / "model.out"
    with pytest.raises(EdgeretError, match="calibration") as err:
        _int8_exporters()[exporter](case.model, case.example, out, "int8", calibration, **case.kwargs)
    assert "fp32" in str(err.value)  # says it will not fall back
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_calibration_accepts_mappings_tuples_and_batches():
    names = ["image"]
    batch = np.zeros((3, 1, 2, 2), np.float32)
    assert len(onnx_int8.calibration_samples(batch, names)) == 3
    assert len(onnx_int8.calibration_samples([{"image": batch}, (batch[:1],)], names)) == 4
    assert len(onnx_int8.calibration_samples((b for b in [batch]), names)) == 3
    with pytest.raises(EdgeretError, match="missing model inputs"):
        onnx_int8.calibration_samples([{"other": batch}], names)
    with pytest.raises(EdgeretError, match="single-input"):
        onnx_int8.calibration_samples([batch], ["a", "b"])
    grouped = onnx_int8.as_batches(onnx_int8.calibration_samples(batch, names), 2)
    assert [g["image"].shape[0] for g in grouped] == [2]


def test_quantize_onnx_file_without_calibration_is_an_error(cases, tmp_path):
    from edgeret_exporters.onnx_exporter import export_onnx

    case = cases["image"]
    fp32 = export_onnx(case.model, case.example, tmp_path / "fp32.onnx", input_names=["image"],
                       output_names=["restored"])
    for empty in (None, []):
        with pytest.raises(EdgeretError, match="calibration"):
            onnx_int8.quantize_onnx_int8(fp32, tmp_path / "int8.onnx", empty)
        with pytest.raises(EdgeretError, match="calibration"):
            openvino_ir.onnx_to_openvino(fp32, tmp_path / "int8.xml", "int8", empty)
    assert not (tmp_path / "int8.onnx").exists() and not (tmp_path / "int8.xml").exists()


# ---------------------------------------------------------------------------
# TensorRT: export side, cache keys, mismatch refusal
# ---------------------------------------------------------------------------


def test_tensorrt_export_writes_onnx_and_build_spec(cases, tmp_path):
    case = cases["classifier"]
    onnx_path = tensorrt.export_tensorrt(case.model, case.example, tmp_path / "clf.engine", "fp16",
                                         max_batch=8, **case.kwargs)
    assert onnx_path == tmp_path / "clf.onnx"
    spec = tensorrt.read_build_spec(tensorrt.build_spec_path(onnx_path))
    assert spec["precision"] == "fp16" and spec["onnx_sha256"] == tensorrt.file_sha256(onnx_path)
    assert spec["shape_profile"] == {"image": {"min": [1, 3, 32, 32], "opt": [1, 3, 32, 32],
                                               "max": [8, 3, 32, 32]}}
    out = run_backend("onnxruntime", onnx_path, case)  # fp32 ONNX; fp16 is a builder flag
    np.testing.assert_allclose(out, case.expected, atol=1e-4)


def test_tensorrt_int8_export_is_symmetric_qdq(cases, tmp_path):
    import onnx
    from onnx import numpy_helper

    case = cases["image"]
    path = tensorrt.export_tensorrt(case.model, case.example, tmp_path / "den.onnx", "int8",
                                    case.calibration, **case.kwargs)
    proto = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    zero_points = [inits[n.input[2]] for n in proto.graph.node
                   if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(np.all(z == 0) and z.dtype == np.int8 for z in zero_points)
    assert json.loads(tensorrt.build_spec_path(path).read_text())["precision"] == "int8"


def _key(**changes) -> tensorrt.EngineKey:
    base = {"model_sha256": "ab" * 32, "tensorrt_version": "10.3.0", "gpu_name": "Orin",
            "compute_capability": "8.7", "precision": "fp16",
            "shape_profile": {"image": {"min": [1, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [8, 3, 32, 32]}}}
    base.update(changes)
    return tensorrt.EngineKey.create(**base)


def test_engine_key_is_stable_and_covers_every_field():
    key = _key()
    assert key.digest() == _key().digest() and len(key.digest()) == 64
    # the same profile written three ways is the same key
    same = _key(shape_profile={"image": ([1, 3, 32, 32], [4, 3, 32, 32], [8, 3, 32, 32])})
    assert same.digest() == key.digest()
    variants = [_key(model_sha256="cd" * 32), _key(tensorrt_version="8.6.2"), _key(gpu_name="Xavier"),
                _key(compute_capability="7.2"), _key(precision="int8"),
                _key(shape_profile={"image": [1, 3, 32, 32]})]
    digests = {v.digest() for v in variants}
    assert len(digests) == len(variants) and key.digest() not in digests
    assert tensorrt.EngineKey.from_dict(key.to_dict()) == key


def test_shape_profile_validation():
    static = {"x": {"min": [1, 3], "opt": [1, 3], "max": [1, 3]}}
    assert tensorrt.normalize_shape_profile({"x": [1, 3]}) == static
    with pytest.raises(EdgeretError, match="min <= opt <= max"):
        tensorrt.normalize_shape_profile({"x": ([4, 3], [1, 3], [8, 3])})
    with pytest.raises(EdgeretError, match="same non-zero rank"):
        tensorrt.normalize_shape_profile({"x": {"min": [1], "opt": [1, 3], "max": [1, 3]}})
    with pytest.raises(EdgeretError, match="precision"):
        _key(precision="int4")


def test_engine_cache_hit_miss_and_mismatch_refusal(tmp_path):
    built = _key(tensorrt_version="8.6.2", gpu_name="Xavier", compute_capability="7.2")
    engine = tensorrt.store_engine(tmp_path, built, b"serialized-engine-bytes", build_seconds=1.0)
    assert engine.name == f"{built.digest()}.engine"
    assert tensorrt.find_cached_engine(tmp_path, built) == engine
    assert tensorrt.load_cached_engine(engine, built) == engine
    here = _key()
    assert tensorrt.find_cached_engine(tmp_path, here) is None  # a miss: build_engine would build
    for location in (engine, tmp_path):  # the strict loader names what differs
        with pytest.raises(EdgeretError) as err:
            tensorrt.load_cached_engine(location, here)
        message = str(err.value)
        assert "TensorRT version: engine has 8.6.2, expected 10.3.0" in message
        assert "GPU: engine has Xavier, expected Orin" in message
        assert "GPU compute capability: engine has 7.2, expected 8.7" in message
        assert "precision" not in message and "shape profile" not in message
    with pytest.raises(EdgeretError, match="precision: engine has fp16, expected int8"):
        tensorrt.load_cached_engine(engine, dataclass_replace(built, precision="int8"))


def dataclass_replace(key, **changes):
    import dataclasses

    return dataclasses.replace(key, **changes)


def test_engine_environment_check_and_corruption(tmp_path):
    built = _key()
    engine = tensorrt.store_engine(tmp_path, built, b"engine")
    tensorrt.check_engine_environment(engine, trt_version="10.3.0", gpu=("Orin", "8.7"))  # same: fine
    with pytest.raises(EdgeretError, match="TensorRT version: engine has 10.3.0, expected 10.4.1"):
        tensorrt.check_engine_environment(engine, trt_version="10.4.1", gpu=("Orin", "8.7"))
    engine.write_bytes(b"tampered")
    with pytest.raises(EdgeretError, match="corrupt"):
        tensorrt.find_cached_engine(tmp_path, built)
    orphan = tmp_path / "orphan.engine"
    orphan.write_bytes(b"x")
    with pytest.raises(EdgeretError, match="no sidecar"):
        tensorrt.load_cached_engine(orphan, built)


def test_build_engine_without_tensorrt_is_a_clear_error(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed: test_build_engine_on_device covers the build")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    with pytest.raises(EdgeretError, match="cuda-python|pycuda|TensorRT"):
        tensorrt.build_engine(model, tmp_path / "cache", "fp16", {"image": [1, 3, 32, 32]}, progress=False)


def test_build_engine_on_device(cases, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT needs an NVIDIA GPU with JetPack / the tensorrt wheel; "
                                           "this CPU-only machine has neither")
    case = cases["classifier"]
    onnx_path = tensorrt.export_tensorrt(case.model, case.example, tmp_path / "clf.onnx", "fp16",
                                         max_batch=4, **case.kwargs)
    lines = []
    engine = tensorrt.build_from_spec(tensorrt.build_spec_path(onnx_path), tmp_path / "cache",
                                      progress=lines.append)
    assert engine.is_file() and lines
    again = tensorrt.build_from_spec(tensorrt.build_spec_path(onnx_path), tmp_path / "cache", progress=False)
    assert again == engine  # cache hit
    runner = Host().backend("tensorrt").load(engine)
    out = runner.run({"image": case.x[:4]})
    assert agreement(out["logits"], case.expected[:4]) == 1.0


# ---------------------------------------------------------------------------
# CUDA / TensorRT backends: unavailable here, with reasons, never raising
# ---------------------------------------------------------------------------


def test_cuda_backends_unavailable_with_specific_reasons():
    backends = Host().backends()
    cuda = backends["cuda"].available()
    assert not cuda.ok and "no CUDA or TensorRT execution provider" in cuda.reason
    assert "onnxruntime-gpu" in cuda.reason
    trt = backends["tensorrt"].available()
    assert not trt.ok and "TensorRT Python bindings are not installed" in trt.reason
    with pytest.raises(EdgeretError, match="backend 'cuda' is not available"):
        backends["cuda"].load("model.onnx")
    with pytest.raises(EdgeretError, match="backend 'tensorrt' is not available"):
        backends["tensorrt"].load("model.engine")


def test_cuda_backend_available_when_a_gpu_provider_is_listed(monkeypatch):
    import onnxruntime

    from edgeret_plugins.backends import cuda_backend

    providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: providers)
    availability = cuda_backend._cuda_available()
    assert availability.ok and availability.devices == ("TensorrtExecutionProvider", "CUDAExecutionProvider")


@pytest.mark.parametrize("version, expected", [
    ("8.2.1", "too old"),
    ("10.3.0", "neither cuda-python nor pycuda is installed"),
])
def test_tensorrt_backend_reasons_with_a_fake_tensorrt(monkeypatch, version, expected):
    from edgeret_plugins.backends import cuda_backend

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=version))
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: ImportError on import
    availability = cuda_backend._tensorrt_available()
    assert not availability.ok and expected in availability.reason


def test_tensorrt_backend_broken_install_is_a_reason_not_a_crash(monkeypatch):
    from edgeret_plugins.backends import cuda_backend

    class Broken(types.ModuleType):
        def __getattr__(self, name):
            raise OSError("libnvinfer.so.10: cannot open shared object file")

    monkeypatch.setitem(sys.modules, "tensorrt", Broken("tensorrt"))
    availability = cuda_backend._tensorrt_available()
    assert not availability.ok and "libnvinfer" in availability.reason
