"""quality-oct network (build host only): DSFF-Net and its ablations.

Deep stream: ResNetLite (stem + one BasicBlock per stage, widths 16-32-64-128,
a ResNet-10-like net; the paper's ResNet50 is ~80x larger). Shallow stream: a
3x3 stride-2 conv + BN + ReLU down-sampling block, then CBAM (channel attention
from summed max- and average-pooled features, then spatial attention). Fusion
block: the shallow map is average- and max-pooled onto the deep map's grid,
concatenated with it and mixed by a 1x1 conv + BN + ReLU, then pooled.

Heads: the backbone's four sigmoid sub-labels (Loss_B), the fusion block's four
sigmoid sub-labels (Loss_F) and three-way softmax grade (Loss_P). The ablations
switch parts off:

  mode-a      backbone -> grade softmax only
  mode-b      backbone -> sub-label sigmoid + grade softmax
  dsff-noatt  + shallow stream without CBAM + fusion block
  dsff        the full network (ships)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgeret.build.training.blocks import CBAM, ResNetLite, conv_bn_act, global_pool

from .processing import LABELS, SUBLABELS


@dataclass(frozen=True)
class Architecture:
    backbone_sublabels: bool  # sigmoid head on the backbone (Output1 of the deep stream)
    shallow: bool  # shallow stream + fusion block
    attention: bool  # CBAM in the shallow stream


ARCHITECTURES = {
    "mode-a": Architecture(False, False, False),
    "mode-b": Architecture(True, False, False),
    "dsff-noatt": Architecture(True, True, False),
    "dsff": Architecture(True, True, True),
}


class DSFFNet(nn.Module):
    def __init__(self, arch: Architecture, widths: tuple[int, ...] = (16, 32, 64, 128),
                 shallow_channels: int = 16) -> None:
        super().__init__()
        self.arch = arch
        self.backbone = ResNetLite(1, widths)
        deep = self.backbone.out_channels
        self.backbone_head = nn.Linear(deep, len(SUBLABELS)) if arch.backbone_sublabels else None
        if arch.shallow:
            self.down = conv_bn_act(1, shallow_channels, 3, 2)
            self.attention = CBAM(shallow_channels) if arch.attention else nn.Identity()
            # Shallow map: stride 2. Deep map: stride 2**(stages + 1) (stem conv and max-pool,
            # then every stage after the first). Pooling by 2**stages puts both on one grid;
            # a constant, so the ONNX graph has no shape arithmetic.
            self.pool = 2 ** len(widths)
            self.fuse = conv_bn_act(deep + 2 * shallow_channels, deep, 1)
            self.fusion_head = nn.Linear(deep, len(SUBLABELS))
        self.dropout = nn.Dropout(0.2)
        self.grade_head = nn.Linear(deep, len(LABELS))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits: "grade" always, "backbone" and "fusion" sub-labels when the variant has them."""
        deep = self.backbone(x)
        out: dict[str, torch.Tensor] = {}
        features = global_pool(deep)
        if self.backbone_head is not None:
            out["backbone"] = self.backbone_head(features)
        if self.arch.shallow:
            shallow = self.attention(self.down(x))
            fused = self.fuse(torch.cat([deep, F.avg_pool2d(shallow, self.pool),
                                         F.max_pool2d(shallow, self.pool)], dim=1))
            features = global_pool(fused)
            out["fusion"] = self.fusion_head(features)
        out["grade"] = self.grade_head(self.dropout(features))
        return out

    def sublabel_logits(self, out: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The sub-labels the network reports: the fusion head's, else the backbone's."""
        return out.get("fusion", out.get("backbone"))


class RuntimeOutputs(nn.Module):
    """What ships: bscan -> (grade_probs softmax, sublabel_probs sigmoid)."""

    def __init__(self, net: DSFFNet) -> None:
        super().__init__()
        if not net.arch.backbone_sublabels:
            raise ValueError("mode-a has no sub-label head and cannot be shipped")
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x)
        return torch.softmax(out["grade"], dim=1), torch.sigmoid(self.net.sublabel_logits(out))


class StackedOutputs(nn.Module):
    """For evaluation: one (N, 3 + 4) array; sub-label columns are NaN without a sigmoid head."""

    def __init__(self, net: DSFFNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        grade = torch.softmax(out["grade"], dim=1)
        logits = self.net.sublabel_logits(out)
        subs = (torch.full((len(x), len(SUBLABELS)), float("nan")) if logits is None
                else torch.sigmoid(logits))
        return torch.cat([grade, subs], dim=1)


def build(variant: str = "dsff") -> DSFFNet:
    return DSFFNet(ARCHITECTURES[variant])
