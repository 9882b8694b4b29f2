"""What of a task can be exported: the profile-sized task, the fp32 torch runtime model, outputs."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.build.progress import progress_bar
from edgeret.devices.profiles import DeviceProfile
from edgeret.errors import EdgeretError
from edgeret.plugin.registrations import TaskPlugin, TensorSpec


class NotExportable(EdgeretError):
    """The task cannot be exported as it is (e.g. its torch model does not give the declared outputs)."""


def task_for_profile(task: TaskPlugin, profile: DeviceProfile) -> TaskPlugin:
    """The task with the profile's input size for it, so preprocessing resizes to what the device runs."""
    return task_with_input_size(task, profile.input_sizes.get(task.name))


def task_with_input_size(task: TaskPlugin, size: Sequence[int] | None) -> TaskPlugin:
    """Replace the spatial dims of the first input (and of outputs that share them) by `size`."""
    size = tuple(size) if size else None
    first = task.inputs[0]
    if size is None or len(first.shape) != 4 or tuple(first.shape[2:]) == tuple(size):
        return task
    old = tuple(first.shape[2:])
    symbolic = {"height": size[0], "width": size[1]}

    def sized(dim: Any) -> Any:  # "height" -> H, "width/32" -> W // 32 (the profile gives the image size)
        base, _, div = dim.partition("/") if isinstance(dim, str) else ("", "", "")
        if base in symbolic and (not div or div.isdigit()):
            return symbolic[base] // int(div) if div else symbolic[base]
        return dim

    def resize(spec: TensorSpec) -> TensorSpec:
        if len(spec.shape) == 4 and tuple(spec.shape[2:]) == old and all(isinstance(d, int) for d in old):
            return dataclasses.replace(spec, shape=(*spec.shape[:2], *size))
        return dataclasses.replace(spec, shape=tuple(sized(d) for d in spec.shape))

    return dataclasses.replace(task, inputs=tuple(resize(s) for s in task.inputs),
                               outputs=tuple(resize(s) for s in task.outputs))


def why_not_exportable(task: TaskPlugin, profile: DeviceProfile) -> str | None:
    """None when the task can be exported for the profile, else the reason (one line)."""
    if profile.input_sizes and task.name not in profile.input_sizes:
        return (f"device '{profile.name}' cannot run task '{task.name}': it is not in the profile's "
                f"input_sizes (the profile runs {', '.join(sorted(profile.input_sizes))})")
    if task.model_factory is None:
        return f"task '{task.name}' has no model_factory (no torch model to export)"
    if task.default_weights is None or not Path(task.default_weights).is_file():
        return f"task '{task.name}': default weights {task.default_weights} not found (not trained yet?)"
    if task.modality not in ("fundus", "oct") and task.calibration is None:
        return (f"task '{task.name}': no phantom generator for modality '{task.modality}' and no "
                "calibration sampler (held-out set)")
    return None


def runtime_model(task: TaskPlugin, weights: Path | None = None) -> Any:
    """The fp32 torch module mapping the task's inputs to its declared outputs, weights loaded, eval mode."""
    import torch

    if task.model_factory is None:
        raise EdgeretError(f"task '{task.name}' has no model_factory")
    weights = Path(weights or task.default_weights or "")
    if not weights.is_file():
        raise EdgeretError(f"task '{task.name}': weights {weights} not found")
    net = task.model_factory()
    try:
        if hasattr(net, "load_weights"):  # weights in the task's own format (e.g. the codec's)
            net.load_weights(weights)
        else:
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except Exception as exc:
        raise NotExportable(f"{weights}: cannot load into task '{task.name}''s model "
                           f"({str(exc).splitlines()[0]})") from None
    net.eval()
    if task.runtime_module is not None:  # the task's wrapper: declared outputs, not training logits
        module = task.runtime_module(net)
    elif hasattr(net, "runtime_module"):
        module = net.runtime_module()
    else:
        module = net
    module.eval()
    example = example_inputs(task)
    with torch.no_grad():
        out = module(*example)
    outs = (out,) if torch.is_tensor(out) else tuple(out) if isinstance(out, list | tuple) else None
    if outs is None or len(outs) != len(task.outputs) or not all(torch.is_tensor(o) for o in outs):
        raise NotExportable(f"task '{task.name}': the torch model does not return its {len(task.outputs)} "
                           "declared outputs (give the network a runtime_module() method)")
    for spec, tensor in zip(task.outputs, outs, strict=True):
        static = [(i, d) for i, d in enumerate(spec.shape) if isinstance(d, int)]
        if tensor.ndim != len(spec.shape) or any(tensor.shape[i] != d for i, d in static):
            raise NotExportable(f"task '{task.name}': output '{spec.name}' has shape {tuple(tensor.shape)}, "
                               f"spec says {spec.shape}")
    return module


def example_inputs(task: TaskPlugin) -> tuple:
    import torch

    return tuple(torch.zeros(*[d if isinstance(d, int) else 1 for d in spec.shape]) for spec in task.inputs)


def torch_outputs(module: Any, task: TaskPlugin, feeds: Sequence[Mapping[str, np.ndarray]],
                  batch: int = 16) -> dict[str, np.ndarray]:
    import torch

    names = [s.name for s in task.outputs]
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    with torch.no_grad():
        for start in range(0, len(feeds), batch):
            part = feeds[start:start + batch]
            args = [torch.from_numpy(np.concatenate([f[s.name] for f in part])) for s in task.inputs]
            out = module(*args)
            out = (out,) if torch.is_tensor(out) else tuple(out)
            for name, tensor in zip(names, out, strict=True):
                chunks[name].append(tensor.numpy())
    return {n: np.concatenate(v) for n, v in chunks.items()}


def runner_outputs(runner: Any, task: TaskPlugin, feeds: Sequence[Mapping[str, np.ndarray]],
                   label: str = "", progress: bool = False) -> dict[str, np.ndarray]:
    """Run a backend runner one image at a time (as a device does); stacked outputs by name."""
    names = [s.name for s in task.outputs]
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in progress_bar(feeds, label, total=len(feeds), enabled=progress and bool(label)):
        out = runner.run(feed)
        for name in names:
            if name not in out:
                raise EdgeretError(f"task '{task.name}': the exported model has no output '{name}' "
                                   f"(it has {', '.join(out)})")
            chunks[name].append(np.asarray(out[name], dtype=np.float32))
    return {n: np.concatenate(v) for n, v in chunks.items()}


def import_torch(threads: int | None) -> None:
    from edgeret.plugin.host import import_optional

    torch = import_optional("torch", "export")
    torch.set_num_threads(max(1, threads or min(os.cpu_count() or 1, 4)))
