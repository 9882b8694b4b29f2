"""denoise networks (build host only; imports torch).

* `DnCNN` -- the denoising paper's residual network (Zhang et al.): a stack of
  3×3 conv + batch norm + ReLU layers that predicts the *noise*, which is
  subtracted from the input. The paper's network has 17 layers × 64 filters
  (~556 k parameters, ~1.1 M multiply-adds per pixel). For the edge we keep
  the design and shrink it to 10 layers × 32 filters: ~76 k parameters,
  ~75 k multiply-adds per pixel (15× fewer), receptive field 21×21 (the
  paper's: 35×35). (A variant on the 2×2 pixel-unshuffled image, FFDNet-style,
  was tried first: with residual learning it barely trained in the CPU budget.)
* `SkipAutoencoder` -- the paper's baseline (Mao et al.'s autoencoder with
  symmetric skip connections): four 3×3 conv + ReLU encoder layers with
  increasing widths, a symmetric decoder, every other encoder layer added to
  its decoder counterpart, no pooling. The paper's widths are 16-32-64-128;
  we halve them (8-16-32-64) to train it in minutes on one CPU thread.

Both map a noisy N×C×H×W image in [0, 1] to the clean estimate (any H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DnCNNConfig:
    channels: int = 3
    features: int = 32
    depth: int = 10
    unshuffle: int = 1  # 2: run the body on 2x2 pixel-unshuffled planes (FFDNet-style)


class DnCNN(nn.Module):
    def __init__(self, config: DnCNNConfig = DnCNNConfig()) -> None:
        super().__init__()
        self.config = config
        planes = config.channels * config.unshuffle ** 2
        width = config.features
        layers: list[nn.Module] = [nn.Conv2d(planes, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(config.depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, planes, 3, padding=1))
        self.body = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.zeros_(self.body[-1].weight)  # start as the identity (zero noise)
        nn.init.zeros_(self.body[-1].bias)

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        r = self.config.unshuffle
        if r == 1:
            return self.body(x)
        return F.pixel_shuffle(self.body(F.pixel_unshuffle(x, r)), r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.noise(x)


class SkipAutoencoder(nn.Module):
    def __init__(self, channels: int = 3, widths: tuple[int, ...] = (8, 16, 32, 64)) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.e1, self.e2 = nn.Conv2d(channels, w1, 3, padding=1), nn.Conv2d(w1, w2, 3, padding=1)
        self.e3, self.e4 = nn.Conv2d(w2, w3, 3, padding=1), nn.Conv2d(w3, w4, 3, padding=1)
        self.d1, self.d2 = nn.Conv2d(w4, w3, 3, padding=1), nn.Conv2d(w3, w2, 3, padding=1)
        self.d3, self.d4 = nn.Conv2d(w2, w1, 3, padding=1), nn.Conv2d(w1, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = F.relu(self.e1(x))
        e2 = F.relu(self.e2(e1))
        e3 = F.relu(self.e3(e2))
        e4 = F.relu(self.e4(e3))
        d1 = F.relu(self.d1(e4) + e3)  # skip: every other encoder layer to its mirror
        d2 = F.relu(self.d2(d1))
        d3 = F.relu(self.d3(d2) + e1)
        return self.d4(d3)


VARIANTS = {
    "dncnn": ("DnCNN-edge (10 layers x 32 filters, green-weighted loss)",
              lambda: DnCNN(DnCNNConfig())),
    "autoencoder": ("Skip autoencoder (paper baseline, widths 8-16-32-64, MSE)",
                    lambda: SkipAutoencoder()),
    "dncnn-oct": ("DnCNN-edge for OCT (1 channel, 8 layers x 32, speckle)",
                  lambda: DnCNN(DnCNNConfig(channels=1, features=32, depth=8))),
}


def build(variant: str = "dncnn") -> nn.Module:
    return VARIANTS[variant][1]()
