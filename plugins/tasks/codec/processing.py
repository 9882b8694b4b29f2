"""Codec pre/post-processing and image metrics: pure numpy (runtime, no torch).

The quantizer and the padding live in :mod:`edgeret.codec.session` (the runtime);
they are re-exported here so the task's story reads in one folder.

* :func:`to_model_input` turns a uint8/uint16 image into the float NCHW tensor
  the encoder takes: values / (2**bits - 1), reflect-padded to multiples of 32.
* :func:`from_model_output` crops the decoder's output back to the original
  size and rounds it to the original bit depth.
* :func:`quantize` / :func:`dequantize` are the codec's quantizer, in numpy so
  every backend's continuous output is rounded by the same rule
  (``np.rint``: round half to even).
* :func:`ms_ssim` is Wang, Simoncelli & Bovik (2003) multi-scale SSIM with the
  standard constants (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, five
  scales with weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333, 2x2 average
  pooling between scales, "valid" filtering), as in the reference MATLAB code
  and tf.image.ssim_multiscale. Colour: the mean over the R, G, B channels.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeret.codec.session import (
    MULTIPLE,
    STRIDES,
    dequantize,
    from_model_output,
    padded_size,
    quantize,
    to_model_input,
)

__all__ = ["MULTIPLE", "STRIDES", "dequantize", "from_model_output", "latent_shapes", "ms_ssim",
           "padded_size", "quantize", "to_model_input"]

MSSSIM_WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])


def latent_shapes(height: int, width: int, channels: tuple[int, ...],
                  strides: tuple[int, ...] = STRIDES) -> list[tuple[int, int, int]]:
    """Shapes (C, H, W) of the latents for an image of this (unpadded) size."""
    ph, pw = padded_size(height, width)
    return [(c, ph // s, pw // s) for c, s in zip(channels, strides, strict=True)]


# --- metrics -------------------------------------------------------------------------------


def _as_float_channels(image: np.ndarray) -> np.ndarray:
    x = np.asarray(image, dtype=np.float64)
    return x[:, :, None] if x.ndim == 2 else x


def _gauss_valid(x: np.ndarray) -> np.ndarray:
    """11x11 Gaussian (sigma 1.5) filter, keeping only the fully covered pixels."""
    out = cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_CONSTANT)
    return out[5:-5, 5:-5]


def _ssim_terms(x: np.ndarray, y: np.ndarray, data_range: float) -> tuple[float, float]:
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _gauss_valid(x), _gauss_valid(y)
    sxx = _gauss_valid(x * x) - mx * mx
    syy = _gauss_valid(y * y) - my * my
    sxy = _gauss_valid(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return float(np.mean(lum * cs)), float(np.mean(cs))


def ms_ssim(reference: np.ndarray, test: np.ndarray, data_range: float) -> float:
    """Five-scale MS-SSIM (see the module docstring); images at least 176 px on each side."""
    ref, tst = _as_float_channels(reference), _as_float_channels(test)
    if ref.shape != tst.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {tst.shape}")
    if min(ref.shape[:2]) < 11 * 16:
        raise ValueError(f"MS-SSIM needs at least 176x176 pixels, got {ref.shape[:2]}")
    scores = []
    for ch in range(ref.shape[2]):
        x, y = ref[:, :, ch], tst[:, :, ch]
        cs_values = []
        for scale in range(5):
            ssim, cs = _ssim_terms(x, y, data_range)
            if scale == 4:
                break
            cs_values.append(cs)
            h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
            x = x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
            y = y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        values = np.maximum(np.array([*cs_values, ssim]), 0.0)
        scores.append(float(np.prod(values ** MSSSIM_WEIGHTS)))
    return float(np.mean(scores))
