"""The learned codec's network (build host only; imports torch).

The seed paper's compression / reconstruction CNNs (Guo, Li & Li 2019, Fig. 2):

* encoder, six conv layers: layer 1 is a 7x7 conv at full resolution, layers
  2-6 each down-sample by 2 (five stride-2 convs, total factor 32), LeakyReLU
  with slope 0.2;
* the main latent y0 is layer 6's output (H/32 x W/32 x C0);
* three skip connections: the first C1, C2, C3 channels of layers 5, 4 and 3
  (before the activation; H/16, H/8, H/4) go **through the quantizer** to the
  decoder, so they are part of the bitstream;
* decoder, six layers: five stride-2 transposed convs mirror the encoder (the
  quantized skips are concatenated at H/16, H/8 and H/4), then a 7x7 conv back
  to the image channels; ReLU.

Differences from the paper, all for a two-core CPU: channel widths are smaller
than the paper's 64 (see ``WIDTHS``), there is no normalization layer (the
codec must behave the same on any image size, and instance normalization would
make the latents depend on the whole image) and the PatchGAN term is left out.

Two variants share this skeleton:

``paper``       latents bounded by 3.49 tanh(y / 3.49) (part of the encoder graph) and
                scalar quantization to L = 7 levels (symbols -3..3), entropy
                coded with a uniform table: the rate is fixed by the channel
                counts (paper Eq. 1).
``factorized``  rounding to integers after a per-channel *gain* (one gain vector
                per rate point, Cui et al. 2021, "asymmetric gained" variable
                rate; the decoder has its own inverse gains), entropy coded
                with a learned factorized prior: one density per channel, latent
                and rate point (a mixture of three logistics), tabulated to
                integer CDFs at export. Training minimises R + lambda_r * D with
                the rate R measured by the prior.

Quantization is not in the exported graphs: the encoder ONNX outputs the
continuous latents, the runtime rounds them in numpy (so the rounding rule is
the same on every backend) and the decoder ONNX takes the de-quantized latents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

STRIDES = (32, 16, 8, 4)  # latent order in the bitstream: main, then skips from layers 5, 4, 3


@dataclass(frozen=True)
class CodecConfig:
    """Architecture of one trained codec (saved next to its weights)."""

    in_channels: int = 1
    variant: str = "paper"  # "paper" or "factorized"
    widths: tuple[int, ...] = (8, 16, 32, 48, 64)  # encoder layers 1-5 (layer 6 outputs C0)
    latents: tuple[int, int, int, int] = (8, 2, 1, 1)  # C0 (/32), C1 (/16), C2 (/8), C3 (/4)
    levels: int = 7  # paper variant's quantizer levels L
    lambdas: tuple[float, ...] = ()  # factorized: one rate-distortion weight per rate point
    mixture: int = 3  # factorized: logistic components per channel density
    dec_widths: tuple[int, ...] = field(default=())  # decoder layers (mirror); () = encoder widths
    # factorized: the first `extrapolated` entries of `lambdas` are not trained rate points but
    # added at export by extrapolating the trained gains (lambda 0 as a placeholder)
    extrapolated: int = 0
    # decoder image edges: "zeros" (plain padding, as trained first: the outermost pixels come out
    # wrong, MSE ~3000 in a 2-px ring) or "mirror" (edge-replicated inputs to every transposed
    # conv, mirrored ones to the last 7x7 conv: the same weights then see the border as interior)
    decoder_edge: str = "zeros"

    @property
    def n_rates(self) -> int:
        return max(1, len(self.lambdas))

    def to_dict(self) -> dict:
        return {"in_channels": self.in_channels, "variant": self.variant, "widths": list(self.widths),
                "latents": list(self.latents), "levels": self.levels, "lambdas": list(self.lambdas),
                "mixture": self.mixture, "dec_widths": list(self.dec_widths),
                "extrapolated": self.extrapolated, "decoder_edge": self.decoder_edge}

    @classmethod
    def from_dict(cls, d: dict) -> CodecConfig:
        return cls(in_channels=int(d["in_channels"]), variant=d["variant"], widths=tuple(d["widths"]),
                   latents=tuple(d["latents"]), levels=int(d["levels"]), lambdas=tuple(d["lambdas"]),
                   mixture=int(d["mixture"]), dec_widths=tuple(d.get("dec_widths", ())),
                   extrapolated=int(d.get("extrapolated", 0)),
                   decoder_edge=d.get("decoder_edge", "zeros"))


def eq1_compression_ratio(cfg: CodecConfig, bit_depth: int) -> float:
    """Paper Eq. 1: H*W*S / sum_i(H_i*W_i*C_i*log2 L), independent of the image size.

    S counts the bits of one pixel over all its channels (8 for 8-bit gray, 24
    for 8-bit RGB).
    """
    bits_per_pixel = sum(c / s**2 for c, s in zip(cfg.latents, STRIDES, strict=True)) * math.log2(cfg.levels)
    return bit_depth * cfg.in_channels / bits_per_pixel


class Encoder(nn.Module):
    """Image (N, C, H, W) in [0, 1], H and W multiples of 32 -> four continuous latents."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        w = cfg.widths
        c0, c1, c2, c3 = cfg.latents
        self.splits = (c3, c2, c1)
        # paper variant: latents bounded to (-L/2, L/2) by a scaled tanh, so the straight-through
        # rounding never sees values the L-level quantizer would clip (unbounded latents drift
        # outwards and saturate it: seen in training)
        self.bound = cfg.levels // 2 + 0.49 if cfg.variant == "paper" else None
        self.l1 = nn.Conv2d(cfg.in_channels, w[0], 7, 1, 3)
        self.l2 = nn.Conv2d(w[0], w[1], 3, 2, 1)  # 3x3 at the two finest scales: the time budget
        self.l3 = nn.Conv2d(w[1], w[2], 3, 2, 1)
        self.l4 = nn.Conv2d(w[2], w[3], 5, 2, 2)
        self.l5 = nn.Conv2d(w[3], w[4], 5, 2, 2)
        self.l6 = nn.Conv2d(w[4], c0, 5, 2, 2)

    def forward(self, x: torch.Tensor):
        act = F.leaky_relu
        h = act(self.l1(x - 0.5), 0.2)
        h = act(self.l2(h), 0.2)
        a3 = self.l3(h)
        a4 = self.l4(act(a3, 0.2))
        a5 = self.l5(act(a4, 0.2))
        y0 = self.l6(act(a5, 0.2))
        c3, c2, c1 = self.splits
        ys = (y0, a5[:, :c1], a4[:, :c2], a3[:, :c3])
        if self.bound is not None:
            ys = tuple(self.bound * torch.tanh(y / self.bound) for y in ys)
        return ys


def _replicate_edges(h: torch.Tensor) -> torch.Tensor:
    """Pad H and W by one copied edge pixel (concatenation: every exporter and runtime has it)."""
    h = torch.cat([h[:, :, :1], h, h[:, :, -1:]], 2)
    return torch.cat([h[:, :, :, :1], h, h[:, :, :, -1:]], 3)


def mirror_edges(h: torch.Tensor, n: int) -> torch.Tensor:
    """Reflect-pad H and W by ``n`` from one-pixel slices: any size, every exporter and runtime."""
    rows = [h[:, :, i:i + 1] for i in range(n, 0, -1)]
    rows += [h] + [h[:, :, -i - 1:-i] for i in range(1, n + 1)]
    h = torch.cat(rows, 2)
    cols = [h[:, :, :, i:i + 1] for i in range(n, 0, -1)]
    cols += [h] + [h[:, :, :, -i - 1:-i] for i in range(1, n + 1)]
    return torch.cat(cols, 3)


class Decoder(nn.Module):
    """Four de-quantized latents -> image (N, C, H, W), nominally [0, 1] (not clamped)."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        if cfg.decoder_edge not in ("zeros", "mirror"):
            raise ValueError(f"unknown decoder_edge {cfg.decoder_edge!r}")
        self.mirror = cfg.decoder_edge == "mirror"
        w = cfg.dec_widths or cfg.widths
        c0, c1, c2, c3 = cfg.latents
        self.d1 = nn.ConvTranspose2d(c0, w[4], 4, 2, 1)  # /32 -> /16
        self.d2 = nn.ConvTranspose2d(w[4] + c1, w[3], 4, 2, 1)  # -> /8
        self.d3 = nn.ConvTranspose2d(w[3] + c2, w[2], 4, 2, 1)  # -> /4
        self.d4 = nn.ConvTranspose2d(w[2] + c3, w[1], 4, 2, 1)  # -> /2
        self.d5 = nn.ConvTranspose2d(w[1], w[0], 4, 2, 1)  # -> /1
        self.d6 = nn.Conv2d(w[0], cfg.in_channels, 7, 1, 3)

    def _up(self, layer: nn.ConvTranspose2d, h: torch.Tensor) -> torch.Tensor:
        if not self.mirror:
            return layer(h)
        # one replicated pixel each side gives 2 more outputs each side: crop them, so the edge
        # outputs get every kernel tap, as inside the image
        return layer(_replicate_edges(h))[:, :, 2:-2, 2:-2]

    def features(self, y0, y1, y2, y3):
        """Layers 1-5: the full-resolution features the last 7x7 conv reads."""
        h = F.relu(self._up(self.d1, y0))
        h = F.relu(self._up(self.d2, torch.cat([h, y1], 1)))
        h = F.relu(self._up(self.d3, torch.cat([h, y2], 1)))
        h = F.relu(self._up(self.d4, torch.cat([h, y3], 1)))
        return F.relu(self._up(self.d5, h))

    def output_input(self, h: torch.Tensor) -> torch.Tensor:
        """Features from :meth:`features`, padded as the last 7x7 conv reads them."""
        pad = self.d6.padding[0]
        return mirror_edges(h, pad) if self.mirror else F.pad(h, (pad, pad, pad, pad))

    def output_layer(self, h: torch.Tensor) -> torch.Tensor:
        """The last 7x7 conv (+ 0.5), on features from :meth:`features`."""
        return F.conv2d(self.output_input(h), self.d6.weight, self.d6.bias) + 0.5

    def forward(self, y0, y1, y2, y3):
        return self.output_layer(self.features(y0, y1, y2, y3))


class FactorizedPrior(nn.Module):
    """Per (rate point, channel) density: a mixture of ``K`` logistics.

    ``likelihood(y, r)`` is the probability of the unit bin around ``y``:
    sum_k w_k [sigmoid((y + 0.5 - mu_k) / s_k) - sigmoid((y - 0.5 - mu_k) / s_k)].
    """

    def __init__(self, n_rates: int, channels: int, k: int) -> None:
        super().__init__()
        self.means = nn.Parameter(torch.linspace(-0.5, 0.5, k).repeat(n_rates, channels, 1))
        self.log_scales = nn.Parameter(torch.zeros(n_rates, channels, k))
        self.logits = nn.Parameter(torch.zeros(n_rates, channels, k))

    def _params(self, r: int):
        return self.means[r], self.log_scales[r].clamp(-4.0, 6.0).exp(), self.logits[r].softmax(-1)

    def cdf(self, y: torch.Tensor, r: int) -> torch.Tensor:
        """CDF at ``y`` (N, C, H, W) or (C, S) — channel axis 1 for 4-D, 0 for 2-D."""
        mu, s, w = self._params(r)
        if y.dim() == 4:
            mu, s, w = (t[None, :, None, None, :] for t in (mu, s, w))
        else:
            mu, s, w = (t[:, None, :] for t in (mu, s, w))
        return (torch.sigmoid((y.unsqueeze(-1) - mu) / s) * w).sum(-1)

    def likelihood(self, y: torch.Tensor, r: int) -> torch.Tensor:
        return (self.cdf(y + 0.5, r) - self.cdf(y - 0.5, r)).clamp_min(1e-9)


class Codec(nn.Module):
    """Encoder + quantizer relaxation + decoder (+ the priors and gains of the factorized variant)."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        if cfg.variant == "factorized":
            n = cfg.n_rates
            # log-gains: the encoder multiplies latent i by exp(gain), the decoder by exp(inv_gain)
            self.gains = nn.ParameterList(
                [nn.Parameter(torch.zeros(n, c)) for c in cfg.latents])
            self.inv_gains = nn.ParameterList(
                [nn.Parameter(torch.zeros(n, c)) for c in cfg.latents])
            self.priors = nn.ModuleList([FactorizedPrior(n, c, cfg.mixture) for c in cfg.latents])
            with torch.no_grad():  # spread the rate points: larger gain = finer steps = more bits
                for g, ig in zip(self.gains, self.inv_gains, strict=True):
                    steps = torch.linspace(-1.0, 1.0, n)[:, None] if n > 1 else torch.zeros(1, 1)
                    g.copy_(steps.expand_as(g))
                    ig.copy_(-steps.expand_as(ig))
        elif cfg.variant != "paper":
            raise ValueError(f"unknown codec variant {cfg.variant!r}")

    def gain(self, i: int, r: int) -> torch.Tensor:
        return self.gains[i][r].exp()

    def inv_gain(self, i: int, r: int) -> torch.Tensor:
        return self.inv_gains[i][r].exp()

    def forward(self, x: torch.Tensor, r: int = 0):
        """Training forward: returns (reconstruction, bits) — bits is None for ``paper``."""
        ys = self.encoder(x)
        if self.cfg.variant == "paper":
            half = self.cfg.levels // 2
            ys_hat = []
            for y in ys:  # already inside (-half - 0.5, half + 0.5): rounding gives the L levels
                # forward: round (and clip, for safety); backward: identity (straight-through)
                ys_hat.append(y + (torch.round(y).clamp(-half, half) - y).detach())
            return self.decoder(*ys_hat), None
        bits = x.new_zeros(())
        ys_hat = []
        for i, y in enumerate(ys):
            g = self.gain(i, r)[None, :, None, None]
            z = y * g
            noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)  # rate: additive uniform noise
            bits = bits - torch.log2(self.priors[i].likelihood(noisy, r)).sum()
            z_hat = z + (torch.round(z) - z).detach()  # distortion: straight-through rounding
            ys_hat.append(z_hat * self.inv_gain(i, r)[None, :, None, None])
        return self.decoder(*ys_hat), bits


def load_shipped(path) -> Codec:
    """A shipped ``.pt`` ({config, state_dict} with fp16 weights) as an fp32 Codec."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = Codec(CodecConfig.from_dict(state["config"]))
    model.load_state_dict({k: v.float() for k, v in state["state_dict"].items()})
    return model.eval()


class EncoderGraph(nn.Module):
    """What the encoder ONNX computes: image -> y0, y1, y2, y3 (continuous)."""

    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.encoder = codec.encoder

    def load_weights(self, path) -> None:
        """`edgeret export` loads the task's default_weights (a whole shipped codec) through this."""
        self.encoder.load_state_dict(load_shipped(path).encoder.state_dict())

    def forward(self, image):
        return self.encoder(image)


class DecoderGraph(nn.Module):
    """What the decoder ONNX computes: de-quantized latents -> image clamped to [0, 1]."""

    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.decoder = codec.decoder

    def load_weights(self, path) -> None:
        self.decoder.load_state_dict(load_shipped(path).decoder.state_dict())

    def forward(self, y0, y1, y2, y3):
        return self.decoder(y0, y1, y2, y3).clamp(0.0, 1.0)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
