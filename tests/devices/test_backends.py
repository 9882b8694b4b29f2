"""Backends agree with each other on a real exported model, and explain unavailability."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeret.errors import EdgeretError, InputError
from edgeret.plugin.host import Host
from edgeret_exporters.onnx_exporter import export_onnx


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 4, 3, stride=2, padding=1), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Softmax(dim=1),
    ).eval()
    path = tmp_path_factory.mktemp("model") / "small.onnx"
    export_onnx(net, (torch.zeros(1, 3, 32, 32),), path, input_names=["image"],
                output_names=["probs"], metadata={"edgeret.task": "test"})
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    return path, x, expected


@pytest.mark.parametrize("backend_name", ["onnxruntime", "openvino"])
def test_backend_matches_torch(small_onnx, backend_name):
    path, x, expected = small_onnx
    backend = Host().backend(backend_name)
    if not backend.available().ok:
        pytest.skip(f"{backend_name} unavailable: {backend.available().reason}")
    runner = backend.load(path)
    assert list(runner.input_names) == ["image"] and list(runner.output_names) == ["probs"]
    out = runner.run({"image": x})["probs"]
    np.testing.assert_allclose(out, expected, atol=1e-4)  # fp32 kernels differ in summation order


def test_onnx_metadata_is_inside_the_file(small_onnx):
    import onnx

    props = {p.key: p.value for p in onnx.load(small_onnx[0]).metadata_props}
    assert props == {"edgeret.task": "test"}


def test_openvino_unknown_device_is_a_clear_error(small_onnx):
    backend = Host().backend("openvino")
    with pytest.raises(EdgeretError, match="openvino device 'NPU7' is not available here"):
        backend.load(small_onnx[0], device="NPU7")


@pytest.mark.parametrize("backend_name", ["onnxruntime", "openvino"])
def test_corrupt_model_names_the_file(tmp_path, backend_name):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage-not-a-protobuf" * 10)
    with pytest.raises(InputError) as err:
        Host().backend(backend_name).load(bad)
    assert str(bad) in str(err.value)


def test_unavailable_backend_reason_when_runtime_missing():
    from edgeret.devices.backend_chain import resolve_backends
    from edgeret.devices.profiles import DeviceProfile

    profile = DeviceProfile(name="t", cpu_arch="arm64", accelerator="cuda-gpu",
                            backends=("warp-drive", "tensorrt", "onnxruntime"), precisions=("fp32",),
                            memory_budget_mb=100)
    resolution = resolve_backends(profile, Host().backends())
    assert resolution.chosen == "onnxruntime"
    assert resolution.steps[0].reason == "no backend plugin of this name is installed"
    assert not resolution.steps[1].ok and "TensorRT" in resolution.steps[1].reason
