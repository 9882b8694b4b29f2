"""Training losses in torch (build host only).

:func:`ms_ssim` is the same definition as the numpy evaluation metric in
``processing.ms_ssim`` (11x11 Gaussian, sigma 1.5, five scales, valid
filtering, negative contrast terms clamped to 0 before the powers), written in
torch so it is differentiable; it needs patches of at least 176 pixels.
Colour images: the mean over channels.

The distortion is the mix of Zhao, Gallo, Frosio & Kautz (2017):
``D = 0.84 (1 - MS-SSIM) + 0.16 L1``; a fine-tune may add :func:`lowpass_l1`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
ALPHA = 0.84


def _window(device, dtype) -> torch.Tensor:
    r = torch.arange(11, dtype=dtype, device=device) - 5
    g = torch.exp(-(r**2) / (2 * 1.5**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    x = x.reshape(n * c, 1, h, w)
    x = F.conv2d(x, g.view(1, 1, 1, 11))
    x = F.conv2d(x, g.view(1, 1, 11, 1))
    return x.reshape(n, c, x.shape[-2], x.shape[-1])


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image MS-SSIM (N,), averaged over channels."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    g = _window(x.device, x.dtype)
    values = []
    for scale in range(5):
        mx, my = _blur(x, g), _blur(y, g)
        sxx = _blur(x * x, g) - mx * mx
        syy = _blur(y * y, g) - my * my
        sxy = _blur(x * y, g) - mx * my
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        if scale < 4:
            values.append(cs.mean(dim=(2, 3)).clamp_min(1e-6))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        else:
            lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
            values.append((lum * cs).mean(dim=(2, 3)).clamp_min(1e-6))
    out = torch.ones_like(values[0])
    for v, wgt in zip(values, WEIGHTS, strict=True):
        out = out * v**wgt
    return out.mean(dim=1)


def distortion(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of 0.84 (1 - MS-SSIM) + 0.16 L1."""
    return ALPHA * (1 - ms_ssim(x_hat, x)).mean() + (1 - ALPHA) * (x_hat - x).abs().mean()


LOWPASS_BLOCK = 8  # px: the scale of the slow colour errors measured on the real photograph


def lowpass_l1(x: torch.Tensor, x_hat: torch.Tensor, block: int = LOWPASS_BLOCK) -> torch.Tensor:
    """Mean L1 between the two images' ``block`` x ``block`` averages.

    MS-SSIM sees brightness only at its coarsest scale and per-pixel L1 is swamped
    by fine detail, so neither stops slow colour drifts of 1-3 grey levels over
    8-30 px; on the real photograph they are most of what separates the codec
    from JPEG 2000 (plugins/tasks/codec/TRAINING.md, session 10)."""
    return (F.avg_pool2d(x_hat, block) - F.avg_pool2d(x, block)).abs().mean()
