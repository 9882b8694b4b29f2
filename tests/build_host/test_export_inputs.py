"""`edgeret export` on bad input (one-line errors before any slow work), and the PSNR gate of an
image-to-image task end to end on a tiny task registered in-process."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from inprocess_cli import cli, error_line

from edgeret.bundle.manifest import BundleError

TASK = "quality-oct"


def write_device(tmp_path: Path, name: str, cpu_arch: str, memory_mb: int, input_sizes: str) -> Path:
    """A devices folder holding one CPU-only profile (ONNX Runtime, int8 and fp32)."""
    devices = tmp_path / "devices"
    devices.mkdir()
    (devices / f"{name}.yaml").write_text(textwrap.dedent(f"""
        schema_version: 1
        name: {name}
        cpu_arch: {cpu_arch}
        accelerator: none
        backends: [onnxruntime]
        precisions: [int8, fp32]
        memory_budget_mb: {memory_mb}
        input_sizes: {input_sizes}
    """))
    return devices


# ---------------------------------------------------------------------------
# bad input: one-line errors, before any slow work
# ---------------------------------------------------------------------------


def test_unknown_device_lists_the_known_ones():
    code, _, err = cli("export", "--device", "toaster")
    line = error_line(err)
    assert code == 2 and "unknown device 'toaster'" in line
    assert "x86-cpu" in line and "raspberry-pi-5" in line and "jetson-orin-nano (alias jetson" in line


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_bad_calibration_folder(tmp_path, make):
    folder = tmp_path / "calib"
    if make == "empty":
        folder.mkdir()
        (folder / "readme.txt").write_text("no images here")
    elif make == "file":
        folder.write_text("not a folder")
    code, _, err = cli("export", "--device", "x86-cpu", "--precision", "int8", "--calib", str(folder),
                       "-o", str(tmp_path / "b"))
    line = error_line(err)
    assert code == 2 and str(folder) in line
    assert {"missing": "does not exist", "empty": "holds no images", "file": "must be a folder"}[make] in line
    assert not (tmp_path / "b").exists()


def test_task_the_profile_cannot_run(tmp_path):
    devices = write_device(tmp_path, "fundus-cam", "arm64", 512, "{quality-fundus: [256, 256]}")
    code, _, err = cli("export", "--devices-dir", str(devices), "--device", "fundus-cam", "--tasks", TASK)
    line = error_line(err)
    assert code == 2 and "cannot run task 'quality-oct'" in line and "quality-fundus" in line


def test_unknown_task_and_unsupported_precision():
    code, _, err = cli("export", "--device", "x86-cpu", "--tasks", "no-such-task")
    assert code == 2 and "unknown task 'no-such-task'" in error_line(err) and TASK in error_line(err)
    code, _, err = cli("export", "--device", "x86-cpu", "--precision", "fp16")
    assert code == 2 and "runs fp32, int8, not fp16" in error_line(err)


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = cli("export", "--device", "x86-cpu", "-o", str(out))
    assert code == 2 and "--force" in error_line(err)
    code, _, err = cli("export", "--device", "x86-cpu", "-o", str(out), "--force")
    assert code == 2 and "not an edgeret bundle" in error_line(err)
    assert (out / "keep.txt").read_text() == "mine"


def test_an_output_folder_that_cannot_be_made_is_a_one_line_error(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / "a-file" / "bundle"
    code, _, err = cli("export", "--device", "x86-cpu", "--tasks", TASK, "-o", str(out))
    line = error_line(err)
    assert code == 2 and line.startswith(f"edgeret: error: {out}: cannot create the output folder"), err
    assert (tmp_path / "a-file").read_text() == "not a folder"


def test_bundle_error_is_an_edgeret_error():
    from edgeret.errors import EdgeretError

    assert issubclass(BundleError, EdgeretError)


# ---------------------------------------------------------------------------
# image-to-image tasks: the PSNR gate end to end, on a tiny task registered in-process
# ---------------------------------------------------------------------------


def _tiny_restore_task(weights: Path):
    import cv2

    from edgeret.plugin.registrations import TaskPlugin, TensorSpec

    def preprocess(image, task):
        size = task.inputs[0].shape[2:]
        small = cv2.resize(np.asarray(image, np.float32) / 255.0, (size[1], size[0]),
                           interpolation=cv2.INTER_AREA)
        return {"image": np.ascontiguousarray(small[None, None], dtype=np.float32)}

    def factory():
        import torch

        class Residual(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.body = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                                torch.nn.Conv2d(8, 1, 3, padding=1))

            def forward(self, x):
                return x + 0.1 * self.body(x)

        return Residual()

    shape = ("batch", 1, "height", "width")
    return TaskPlugin(
        name="tiny-restore", modality="oct", description="test: residual image-to-image net",
        inputs=(TensorSpec("image", shape),), outputs=(TensorSpec("restored", shape),),
        preprocess=preprocess, postprocess=lambda outputs, task: {}, model_factory=factory,
        default_weights=weights, calibration=lambda n, seed: (np.full((64, 64), 30 * i % 256, np.uint8)
                                                              for i in range(n)),
    )


def test_image_to_image_task_exports_with_a_psnr_gate(tmp_path):
    import torch

    from edgeret import hookimpl
    from edgeret.build.export.pipeline import ExportRequest, export_bundle
    from edgeret.bundle.verify import verify_bundle
    from edgeret.plugin.host import Host

    weights = tmp_path / "tiny.pt"
    task = _tiny_restore_task(weights)
    torch.manual_seed(0)
    torch.save(task.model_factory().state_dict(), weights)

    class Plugin:
        @hookimpl
        def edgeret_tasks(self):
            yield task

    host = Host()
    host.register(Plugin(), "tiny-restore-plugin")
    devices = write_device(tmp_path, "tiny-cam", "x86_64", 256, "{tiny-restore: [32, 48]}")
    request = ExportRequest(device="tiny-cam", tasks=["tiny-restore"], heldout=6, calib_size=8, golden=2,
                            out=tmp_path / "b", threads=1, progress=False, devices_dirs=[devices])
    result = export_bundle(host, request, log=lambda line: None)
    entry = result.manifest.raw["tasks"]["tiny-restore"]
    gate = entry["gate"]
    assert entry["precision"] == "int8" and gate["kind"] == "image" and gate["metric"] == "psnr"
    assert gate["unit"] == "dB" and gate["allowed_drop"] == 0.2 and gate["passed"]
    assert gate["fp32"] > 20 and abs(gate["drop"]) <= 0.2 and gate["agreement_with_fp32"] > 30
    assert entry["inputs"][0]["shape"] == ["batch", 1, 32, 48] and entry["agreement"]["kind"] == "psnr"
    report = verify_bundle(tmp_path / "b", host.backends())
    assert "dB PSNR vs fp32" in report.tasks[0].agreement


def test_int8_keep_float_maps_module_names_to_each_exporter(tmp_path):
    import dataclasses

    from edgeret.build.export.artifacts import default_options, keep_float_nodes, onnx_scope, probe_graph
    from edgeret.errors import EdgeretError

    assert onnx_scope("encoder.l3") == "/encoder/l3/"
    assert onnx_scope("a.blocks.0.1.conv") == "/a/blocks/blocks.0/blocks.0.1/conv/"

    task = dataclasses.replace(_tiny_restore_task(tmp_path / "unused.pt"), int8_keep_float=("body.2",))
    module = task.model_factory().eval()
    assert keep_float_nodes(probe_graph(module, task), task) == ["/body/body.2/Conv"]
    ort = default_options("onnx-int8", "int8", module, task)["nodes_to_exclude"]
    assert "/body/body.2/Conv" in ort and "/body/body.0/Conv" in ort  # 1 input channel: float anyway
    openvino = default_options("openvino-ir", "int8", module, task)
    assert openvino == {"ignored_scope": {"patterns": [r"/body/body\.2/.*"]}}
    assert default_options("openvino-ir", "fp16", module, task) == {}
    with pytest.raises(EdgeretError, match="tiny-restore.*'body.9', which is no layer"):
        keep_float_nodes(probe_graph(module, task), dataclasses.replace(task, int8_keep_float=("body.9",)))
