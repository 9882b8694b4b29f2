"""Two tiny models with random-but-fixed weights and their test data, shared by the exporter tests.

* a conv classifier (3x32x32 -> 4 logits). Its last layer is set so the 32
  test images spread over several classes (a random head would put them all
  in one class and make "same argmax" trivially true);
* a residual conv image-to-image net (1x64x64 -> 1x64x64, ``x + body(x)``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgeret.plugin.host import Host

N_TEST = 32
N_CALIB = 32


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


def make_cases() -> dict[str, Case]:
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
