"""dr-grade network (build host only): one trunk, two heads (DR grade and quality).

The multi-task variant learns both (L = L_dr + L_q, weight decay in the optimizer);
the single-task variant trains the DR head only, as the paper's baseline.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeret.task_inputs import QUALITY_LABELS
from edgeret.training.blocks import ResNetLite, global_pool

from .processing import DR_LABELS


class DRGradeNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.backbone = ResNetLite(3, widths)
        self.dropout = nn.Dropout(0.2)
        self.dr_head = nn.Linear(self.backbone.out_channels, len(DR_LABELS))
        self.quality_head = nn.Linear(self.backbone.out_channels, len(QUALITY_LABELS))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.dropout(global_pool(self.backbone(x)))
        return self.dr_head(features), self.quality_head(features)


class Probabilities(nn.Module):
    """What ships: image -> (DR probabilities, quality probabilities)."""

    def __init__(self, net: DRGradeNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dr, quality = self.net(x)
        return torch.softmax(dr, dim=1), torch.softmax(quality, dim=1)


def build() -> DRGradeNet:
    return DRGradeNet()
