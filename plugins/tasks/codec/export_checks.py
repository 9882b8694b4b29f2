"""What `edgeret export` feeds the codec's two halves, and how its gate scores them.

The codec's quality is a round trip: image -> encoder -> quantizer -> entropy coder -> .ert ->
entropy decoder -> decoder -> image. An exported half (INT8 encoder on a camera, a hub decoder)
is judged by the PSNR of that whole trip against the original, the other half being the plugin's
fp32 ONNX on ONNX Runtime (numpy + onnxruntime: no torch). The encoder's score also proves that
the stream decodes to exactly the symbols the exported encoder wrote, or it raises.

A bundle's graphs have the profile's static input size (e.g. 512x512); images are centre-cropped
or reflect-padded to it (`fit_to_input`), the same for the gate, the golden pairs and calibration.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from edgeret.plugin.registrations import TaskPlugin


def static_size(task: TaskPlugin) -> tuple[int, int] | None:
    """The image size a device profile fixed: the encoder's input / the decoder's output "image"."""
    dims = next(s for s in (*task.inputs, *task.outputs) if s.name == "image").shape[2:]
    return (int(dims[0]), int(dims[1])) if all(isinstance(d, int) for d in dims) else None


def fit_to_input(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Centre-crop, then reflect-pad, an (H, W[, C]) image to `size` (None: unchanged)."""
    if size is None:
        return image
    th, tw = size
    h, w = image.shape[:2]
    top, left = max(0, (h - th) // 2), max(0, (w - tw) // 2)
    image = image[top:top + th, left:left + tw]
    h, w = image.shape[:2]
    if (h, w) != (th, tw):
        pad = [(0, th - h), (0, tw - w)] + [(0, 0)] * (image.ndim - 2)
        image = np.pad(image, pad, mode="reflect" if min(h, w) > 1 else "edge")
    return np.ascontiguousarray(image)


@lru_cache(maxsize=1)
def _hub():
    """The shipped catalogue, its default model at its default rate point, and an ORT session."""
    from edgeret.codec.session import CodecSession
    from edgeret_plugins.backends import onnxruntime_backend

    from . import DEFAULT_MODEL, catalog

    cat = catalog()
    model = cat.models[DEFAULT_MODEL]
    _, rate = cat.choose(model.modality, model.variant)
    backend = next(iter(onnxruntime_backend.edgeret_backends()))
    return CodecSession(cat, backend), model, rate


def prepared(raw: np.ndarray, task: TaskPlugin) -> np.ndarray:
    """The raw image as the default model codes it, at the task's static size."""
    from edgeret.codec.session import image_for

    _, model, _ = _hub()
    return fit_to_input(image_for(model, np.asarray(raw), "<array>"), static_size(task))


def _bits(image: np.ndarray) -> int:
    return 8 if image.dtype == np.uint8 else 16


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    from edgeret.metrics import psnr

    return psnr(a, b, float((1 << _bits(a)) - 1))


def decoder_feed(image: np.ndarray, task: TaskPlugin) -> dict[str, np.ndarray]:
    """De-quantized latents of the fp32 encoder at the default rate point: what a hub decoder is fed."""
    from edgeret.codec.session import LATENT_NAMES, dequantize, quantize

    session, model, rate = _hub()
    image = prepared(image, task)
    ys = session.latents(model, image, _bits(image))
    feed = {}
    for i, (name, y) in enumerate(zip(LATENT_NAMES, ys, strict=True)):
        q = quantize(y, None if rate.gains is None else rate.gains[i], rate.lo[i], rate.hi[i])
        feed[name] = dequantize(q, None if rate.inv_gains is None else rate.inv_gains[i])
    return feed


def encoder_round_trip_psnr(raw: np.ndarray, outputs: Mapping[str, np.ndarray], task: TaskPlugin) -> float:
    """Exported encoder's latents -> .ert bytes -> hub decode (fp32 ONNX) -> PSNR vs the original."""
    from edgeret.codec.ert.container import encode_stream
    from edgeret.codec.session import LATENT_NAMES, encode_latents
    from edgeret.errors import EdgeretError

    session, model, rate = _hub()
    image = prepared(raw, task)
    ys = [np.asarray(outputs[name], dtype=np.float32) for name in LATENT_NAMES]
    encoded = encode_latents(ys, image.shape, _bits(image), model, rate)
    decoded = session.decode_bytes(encode_stream(encoded.header, encoded.payloads))
    for i, (wrote, read) in enumerate(zip(encoded.symbols, decoded.symbols, strict=True)):
        if not np.array_equal(wrote, read):
            raise EdgeretError(f"codec stream round trip lost symbols in latent {LATENT_NAMES[i]}")
    return _psnr(image, decoded.image)


def decoder_psnr(raw: np.ndarray, outputs: Mapping[str, np.ndarray], task: TaskPlugin) -> float:
    """The decoder's reconstruction (from the fp32 encoder's symbols) vs the original image."""
    from edgeret.codec.session import from_model_output

    image = prepared(raw, task)
    h, w = image.shape[:2]
    return _psnr(image, from_model_output(outputs["image"], h, w, _bits(image)))
