"""Widen a trained codec's full- and half-resolution layers without changing what it computes.

TRAINING.md's probes found the 8- and 16-channel layers at full and half
resolution to be the bottleneck for fine detail (speckle, vessel edges), and
training from scratch is hours of CPU. So a shipped model is widened in place
(Net2Net-style, Chen et al. 2016): every added channel gets small random
incoming weights and **zero** outgoing weights, so the widened network decodes
exactly as before, and training then puts the new channels to use.

Encoder layers 1-2 produce ``widths[0]``, ``widths[1]`` channels; decoder
layers d4-d5 produce ``dec_widths[1]``, ``dec_widths[0]``. Only those grow:
the latents, gains and priors (the bitstream's shape) are untouched.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .model import Codec

INIT_STD = 0.02  # new incoming weights: small, so the new channels start near the old activations' scale


def _grow(weight: torch.Tensor, dim: int, size: int, init_std: float, generator: torch.Generator):
    """``weight`` padded along ``dim`` to ``size``: random (std ``init_std``) or zeros if 0."""
    extra = list(weight.shape)
    extra[dim] = size - weight.shape[dim]
    if extra[dim] < 0:
        raise ValueError(f"cannot narrow a layer from {weight.shape[dim]} to {size} channels")
    fill = torch.randn(extra, generator=generator) * init_std if init_std else torch.zeros(extra)
    return torch.cat([weight, fill.to(weight.dtype)], dim)


def _conv(layer: nn.Conv2d | nn.ConvTranspose2d, in_ch: int, out_ch: int,
          generator: torch.Generator) -> None:
    """Grow ``layer`` in place: new inputs read with weight 0, new outputs random."""
    transposed = isinstance(layer, nn.ConvTranspose2d)
    in_dim, out_dim = (0, 1) if transposed else (1, 0)
    w = _grow(layer.weight.data, in_dim, in_ch, 0.0, generator)
    w = _grow(w, out_dim, out_ch, INIT_STD, generator)
    layer.weight = nn.Parameter(w)
    layer.bias = nn.Parameter(_grow(layer.bias.data, 0, out_ch, 0.0, generator))
    layer.in_channels, layer.out_channels = in_ch, out_ch


def widened(model: Codec, encoder: tuple[int, int] | None = None, decoder: tuple[int, int] | None = None,
            seed: int = 0) -> Codec:
    """A copy of ``model`` whose encoder layers 1-2 / decoder layers 5-4 have the given widths.

    ``encoder=(w0, w1)`` sets ``widths[:2]``; ``decoder=(w0, w1)`` sets
    ``dec_widths[:2]`` (full, half resolution). The copy's output equals the
    original's up to float rounding.
    """
    cfg = model.cfg
    enc = tuple(encoder or cfg.widths[:2]) + tuple(cfg.widths[2:])
    dec_old = cfg.dec_widths or cfg.widths
    dec = tuple(decoder or dec_old[:2]) + tuple(dec_old[2:])
    new = Codec(dataclasses.replace(cfg, widths=enc, dec_widths=dec))
    copy = Codec(cfg)
    copy.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(seed)
    e, d = copy.encoder, copy.decoder
    _conv(e.l1, cfg.in_channels, enc[0], g)
    _conv(e.l2, enc[0], enc[1], g)
    _conv(e.l3, enc[1], e.l3.out_channels, g)
    _conv(d.d4, d.d4.in_channels, dec[1], g)
    _conv(d.d5, dec[1], dec[0], g)
    _conv(d.d6, dec[0], cfg.in_channels, g)
    new.load_state_dict(copy.state_dict())
    return new
