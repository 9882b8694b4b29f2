"""quality-fundus network (build host only): ResNetLite features -> 3-class logits.

The 128-d pooled features are what the center loss pulls towards class centres.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeret.build.training.blocks import ResNetLite, global_pool

from .processing import LABELS


class FundusQualityNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.backbone = ResNetLite(3, widths)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(self.backbone.out_channels, len(LABELS))
        self.feature_dim = self.backbone.out_channels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return global_pool(self.backbone(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return self.classifier(self.dropout(features)), features


class ProbabilitiesOnly(nn.Module):
    """What ships: image -> softmax probabilities (the runtime needs no features)."""

    def __init__(self, net: FundusQualityNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x)[0], dim=1)


def build() -> FundusQualityNet:
    return FundusQualityNet()
