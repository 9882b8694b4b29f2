"""A small, resumable training loop used by every task's recipe.

Checkpoints hold the model, optimizer, scheduler, epoch and RNG states, so an
interrupted run resumes to the same result as an uninterrupted one.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeret.build.progress import progress_bar


@dataclass
class FitConfig:
    epochs: int
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int | None = None
    progress: bool = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


Batch = Sequence[torch.Tensor]
LossFn = Callable[[nn.Module, Batch], torch.Tensor]


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def fit(
    model: nn.Module,
    tensors: Sequence[torch.Tensor],
    loss_fn: LossFn,
    config: FitConfig,
    checkpoint: Path,
    *,
    label: str = "train",
    augment: Callable[[Batch, torch.Generator], Batch] | None = None,
    extra_params: Sequence[nn.Parameter] = (),
) -> nn.Module:
    """Train `model` on in-memory `tensors` (aligned along dim 0) with AdamW + cosine LR.

    `loss_fn(model, batch)` returns the scalar loss. Resumes from `checkpoint`
    if it exists; writes it after every epoch (atomically).
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    params = [*model.parameters(), *extra_params]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    generator = torch.Generator().manual_seed(config.seed)
    start_epoch = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        for param, saved in zip(extra_params, state.get("extra", []), strict=True):
            param.data.copy_(saved)
        start_epoch = state["epoch"] + 1
    n = len(tensors[0])
    for epoch in range(start_epoch, config.epochs):
        model.train()
        total, count = 0.0, 0
        batches = _batches(n, config.batch_size, generator)
        bar = progress_bar(batches, f"{label} epoch {epoch + 1}/{config.epochs}", enabled=config.progress)
        for index in bar:
            batch = [t[index] for t in tensors]
            if augment is not None:
                batch = augment(batch, generator)
            loss = loss_fn(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
            count += len(index)
            bar.set_postfix_str(f"loss {total / count:.4f}", refresh=False)
        scheduler.step()
        _save_atomic(checkpoint, {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "extra": [p.detach().clone() for p in extra_params],
            "config": asdict(config),
        })
    model.eval()
    return model


def _save_atomic(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, batch_size: int = 32) -> list[Any]:
    """Run `model` in eval mode over `inputs` in batches; returns per-batch outputs."""
    model.eval()
    return [model(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]


def save_weights(model: nn.Module, path: Path, meta: dict[str, Any]) -> None:
    """Save a state_dict (fp32) and a JSON side-car saying how it was made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_atomic(path, {k: v.detach().cpu() for k, v in model.state_dict().items()})
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
