"""dr-grade network (build host only): one trunk, two heads (DR grade and quality).

Designs (``DRGradeNet(design=...)``), all with L = L_dr + L_q (weight decay in the optimizer)
when the quality head is trained:

``shared``  the paper's, ships: both heads are linear layers on the same pooled deep features.
``guided``  an attempt to stop the quality task taking DR capacity: the quality head reads
            the *shallow* stage-2 features (blur, noise, exposure, occlusion are low-level
            properties, as in DSFF-Net's shallow stream) through one more
            stride-2 conv and average+max pooling; the DR head reads the deep features **and the
            quality probabilities**, so it can temper its grade on a degraded capture. Measured
            worse than ``shared`` on the phantoms (TRAINING.md), so it does not ship.

The single-task variant is the ``shared`` network trained on L_dr only (its quality head is
untrained and ignored), the paper's baseline.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeret.build.training.blocks import ResNetLite, conv_bn_act, global_pool
from edgeret.runtime.task_inputs import QUALITY_LABELS

from .processing import DR_LABELS

DESIGNS = ("shared", "guided")


class DRGradeNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), design: str = "shared",
                 dme: bool = True) -> None:
        super().__init__()
        if design not in DESIGNS:
            raise ValueError(f"unknown design {design!r} (known: {', '.join(DESIGNS)})")
        self.design = design
        self.backbone = ResNetLite(3, widths)
        self.dropout = nn.Dropout(0.2)
        n_q = len(QUALITY_LABELS)
        if design == "shared":
            self.quality_head = nn.Linear(self.backbone.out_channels, n_q)
            self.dr_head = nn.Linear(self.backbone.out_channels, len(DR_LABELS))
        else:
            self.quality_branch = conv_bn_act(widths[1], widths[1], 3, 2)
            self.quality_head = nn.Linear(2 * widths[1], n_q)
            self.dr_head = nn.Linear(self.backbone.out_channels + n_q, len(DR_LABELS))
        # diabetic macular oedema (exudates near the fovea): referable on its own, whatever the grade
        self.dme_head = nn.Linear(self.backbone.out_channels, 1) if dme else None

    def load_weights(self, path) -> None:
        """Load a saved state dict; one without a DME head (phantom-only weights) drops this one's."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if "dme_head.weight" not in state:
            self.dme_head = None
        self.load_state_dict(state)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(DR logits, quality logits) and, with the DME head, a DME logit (N, 1)."""
        stages = self.backbone.forward_stages(x)
        deep = self.dropout(global_pool(stages[-1]))
        dme = () if self.dme_head is None else (self.dme_head(deep),)
        if self.design == "shared":
            return self.dr_head(deep), self.quality_head(deep), *dme
        q = self.quality_branch(stages[1])
        q_logits = self.quality_head(torch.cat([q.mean(dim=(2, 3)), q.amax(dim=(2, 3))], 1))
        dr_logits = self.dr_head(torch.cat([deep, torch.softmax(q_logits, dim=1)], 1))
        return dr_logits, q_logits, *dme


class Probabilities(nn.Module):
    """What ships: image -> (DR probabilities, quality probabilities[, p(DME)])."""

    def __init__(self, net: DRGradeNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dr, quality, *dme = self.net(x)
        return (torch.softmax(dr, dim=1), torch.softmax(quality, dim=1), *(torch.sigmoid(d) for d in dme))


def build() -> DRGradeNet:
    return DRGradeNet()


def load_net(path, design: str = "shared") -> DRGradeNet:
    """A saved state dict in a network of its own shape (phantom-only variants have no DME head)."""
    net = DRGradeNet(design=design)
    net.load_weights(path)
    return net
