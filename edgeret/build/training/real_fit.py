"""The epoch loop and the shipping step shared by the real-data recipes (build host; torch)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from edgeret.build.training.shipping import ship


def run_epoch(net: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, steps: int,
              next_loss: Callable[[], torch.Tensor]) -> tuple[float, float]:
    """``steps`` optimizer steps on fresh batches (the scheduler steps per batch): (mean loss, seconds)."""
    net.train()
    total, start = 0.0, time.time()
    for _ in range(steps):
        loss = next_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item()
    return total / steps, time.time() - start


def ship_real(net: torch.nn.Module, runtime: torch.nn.Module, task, out_dir: Path, onnx_name: str,
              meta: dict[str, Any]) -> Path:
    """``real-mix.pt`` (+ its JSON side-car) and the task's ONNX file in ``out_dir``."""
    ship(net, runtime, task, out_dir / "real-mix.pt", out_dir / onnx_name, meta)
    (out_dir / "real-mix.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return out_dir
