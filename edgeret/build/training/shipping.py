"""Turn a trained torch model into what a task ships: weights, ONNX, side-car JSON."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeret.build.training.loop import save_weights
from edgeret.plugin.registrations import TaskPlugin


def ship(
    net: nn.Module,
    runtime_model: nn.Module,
    task: TaskPlugin,
    weights_path: Path,
    onnx_path: Path | None,
    meta: Mapping[str, Any],
) -> None:
    """Save `net`'s state_dict and (optionally) export `runtime_model` to ONNX.

    `runtime_model` maps the task's inputs to its declared outputs, in order.
    """
    from edgeret_exporters.onnx_exporter import export_onnx

    save_weights(net, weights_path, dict(meta))
    if onnx_path is None:
        return
    example = tuple(torch.zeros(*[d if isinstance(d, int) else 1 for d in spec.shape])
                    for spec in task.inputs)
    export_onnx(
        runtime_model.eval(), example, onnx_path,
        input_names=[s.name for s in task.inputs], output_names=[s.name for s in task.outputs],
        metadata={"edgeret.task": task.name, "edgeret.weights": weights_path.name,
                  **{f"edgeret.{k}": str(v) for k, v in meta.items()}},
    )


@torch.no_grad()
def torch_outputs(model: nn.Module, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Run a runtime model over float16/float32 N×C×H×W arrays; concatenated numpy output."""
    model.eval()
    chunks = []
    for i in range(0, len(inputs), batch_size):
        chunks.append(model(torch.from_numpy(inputs[i : i + batch_size].astype(np.float32))).numpy())
    return np.concatenate(chunks)


def onnx_outputs(path: Path, inputs: np.ndarray, input_name: str) -> np.ndarray:
    """The same through ONNX Runtime, one image at a time, as a device runs it."""
    from edgeret_plugins.backends.onnxruntime_backend import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(path)
    outputs = [runner.run({input_name: x[None].astype(np.float32)})[runner.output_names[0]]
               for x in inputs]
    return np.concatenate(outputs)
