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

* `denoise-oct` (`OCT_CONFIGS`, trained on real SD-OCT speckle): the same
  residual design with two changes for heavy, spatially correlated speckle at
  the same cost per pixel. The body runs on 2×2 pixel-unshuffled planes
  (12 layers × 48 filters at half resolution: ~212 k parameters, ~60 k
  multiply-adds per pixel, receptive field ±25 px instead of ±8), and the
  residual is subtracted from a fixed Gaussian blur of the input (sigma 3 px,
  separable) instead of the input itself: the untrained net is already a
  reasonable smoother and training learns what the blur gets wrong (edges of
  layers, vessels' shadows). Odd sizes are padded inside the model.

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
    base_blur: float = 0.0  # > 0: the residual is taken from a fixed Gaussian blur of the input (sigma px)


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
        nn.init.zeros_(self.body[-1].weight)  # start as the identity (zero noise) or the blur
        nn.init.zeros_(self.body[-1].bias)
        if config.base_blur > 0:
            radius = int(round(3 * config.base_blur))
            t = torch.arange(-radius, radius + 1, dtype=torch.float32)
            g = torch.exp(-0.5 * (t / config.base_blur) ** 2)
            self.register_buffer("blur_kernel", (g / g.sum()).repeat(config.channels, 1, 1, 1),
                                 persistent=False)

    def base(self, x: torch.Tensor) -> torch.Tensor:
        """What the predicted noise is subtracted from: the input, or its fixed Gaussian blur."""
        if self.config.base_blur <= 0:
            return x
        k = self.blur_kernel  # C×1×1×K, separable: rows then columns
        r, c = k.shape[-1] // 2, self.config.channels
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k, groups=c)
        return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.transpose(2, 3), groups=c)

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        r = self.config.unshuffle
        if r == 1:
            return self.body(x)
        # any size: pad bottom/right to a multiple of r (traced into ONNX as dynamic shape ops)
        height, width = x.shape[-2], x.shape[-1]
        padded = F.pad(x, (0, (r - width % r) % r, 0, (r - height % r) % r), mode="replicate")
        return F.pixel_shuffle(self.body(F.pixel_unshuffle(padded, r)), r)[..., :height, :width]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) - self.noise(x)


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


# denoise-oct architectures compared by subject-level cross-validation on real OCT (TRAINING.md);
# OCT_ARCH is the one that ships. "plain-8x32" is the phantom-trained model's architecture.
OCT_CONFIGS = {
    "plain-8x32": DnCNNConfig(channels=1, features=32, depth=8),
    "blur-8x32": DnCNNConfig(channels=1, features=32, depth=8, base_blur=3.0),
    "unshuffle-12x48": DnCNNConfig(channels=1, features=48, depth=12, unshuffle=2),
    "blur-unshuffle-12x48": DnCNNConfig(channels=1, features=48, depth=12, unshuffle=2, base_blur=3.0),
}
OCT_ARCH = "blur-unshuffle-12x48"


def build_oct(arch: str = OCT_ARCH) -> DnCNN:
    return DnCNN(OCT_CONFIGS[arch])


VARIANTS = {
    "dncnn": ("DnCNN-edge (10 layers x 32 filters, green-weighted loss)",
              lambda: DnCNN(DnCNNConfig())),
    "autoencoder": ("Skip autoencoder (paper baseline, widths 8-16-32-64, MSE)",
                    lambda: SkipAutoencoder()),
    "dncnn-oct": ("DnCNN-edge for OCT (1 channel; Gaussian-blur base sigma 3 minus the residual a "
                  "12 layers x 48 body predicts on 2x2 pixel-unshuffled planes)",
                  lambda: DnCNN(OCT_CONFIGS[OCT_ARCH])),
}


def build(variant: str = "dncnn") -> nn.Module:
    return VARIANTS[variant][1]()
