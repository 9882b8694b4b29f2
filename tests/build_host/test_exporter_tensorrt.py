"""TensorRT: the export side (ONNX + build spec), engine cache keys and mismatch refusal; the CUDA and
TensorRT backends report why they are unavailable on a machine without an NVIDIA GPU, never raising."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from exporter_cases import Case, agreement, make_cases, run_backend

from edgeret.errors import EdgeretError
from edgeret.plugin.host import Host
from edgeret_exporters import tensorrt


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    return make_cases()


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
