"""codec-encoder and codec-decoder: the learned codec for OCT B-scans and fundus photographs.

Two halves of one trained model: the encoder graph runs in the camera (device
bundle), the decoder graph at the hub. Everything else is numpy:

* runtime: ``edgeret/codec/session.py`` (quantizer, entropy coding, the ``.ert``
  stream; used by ``edgeret encode`` / ``edgeret decode``) and ``processing.py``
  here (re-exports plus the numpy MS-SSIM / PSNR);
* shipped models: ``weights/codec_models.json`` lists them (``oct-paper``,
  ``oct-factorized``, ``fundus-paper``, ``fundus-factorized``), each with an
  encoder ONNX, a decoder ONNX, a ``.npz`` of gains and integer entropy
  tables, and fp16 torch weights;
* build host: ``model.py`` (the seed paper's network and the factorized prior),
  ``losses.py`` (MS-SSIM + L1 in torch), ``specs.py`` (models and data), ``recipe.py``
  (training), ``shipping.py`` (export: rate points, tables, manifest), ``finetune.py``;
  ``TRAINING.md`` says how the weights were made.

The registered default model of both tasks is ``oct-factorized``; `edgeret
encode` picks the model for the image's modality.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.registrations import ExportScore, TaskPlugin, TensorSpec, TrainRequest

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = "oct-factorized"
LATENTS = (("y0", 32, "main latent, stride 32"), ("y1", 16, "skip from encoder layer 5, stride 16"),
           ("y2", 8, "skip from encoder layer 4, stride 8"), ("y3", 4, "skip from encoder layer 3, stride 4"))
# the default model's latent channels (codec_models.json: latent_channels; a test checks they agree)
DEFAULT_LATENT_CHANNELS = (32, 16, 8, 4)


@lru_cache(maxsize=1)
def catalog():
    """The shipped codec models (numpy only)."""
    from edgeret.codec.session import CodecCatalog

    return CodecCatalog(WEIGHTS_DIR)


def _encoder_preprocess(image: np.ndarray, task: TaskPlugin) -> dict[str, np.ndarray]:
    """Image -> encoder input; a device profile's static size crops/pads to it (export_checks)."""
    from edgeret.codec.session import image_for, to_model_input

    from .export_checks import fit_to_input, static_size

    model = catalog().models[DEFAULT_MODEL]
    image = fit_to_input(image_for(model, np.asarray(image), "<array>"), static_size(task))
    return {"image": to_model_input(image, 8 if image.dtype == np.uint8 else 16)}


def _encoder_postprocess(outputs: Mapping[str, np.ndarray], task: TaskPlugin) -> dict[str, Any]:
    """Quantize with the default model's default rate point and entropy-code: real bytes."""
    from edgeret.codec.ert.entropy import encode_symbols
    from edgeret.codec.session import LATENT_NAMES, quantize

    model = catalog().models[DEFAULT_MODEL]
    _, rate = catalog().choose(model.modality, model.variant)
    nbytes = 0
    for i, name in enumerate(LATENT_NAMES):
        q = quantize(outputs[name], None if rate.gains is None else rate.gains[i], rate.lo[i], rate.hi[i])
        nbytes += len(encode_symbols(q, rate.tables[i]))
    _, _, h, w = np.shape(outputs["y3"])
    return {"codec": rate.id, "payload_bytes": nbytes, "padded_size": [h * 4, w * 4],
            "bpp_padded": round(nbytes * 8 / (h * w * 16), 5)}


def _decoder_preprocess(image: np.ndarray, task: TaskPlugin) -> dict[str, np.ndarray]:
    """What the hub decoder is fed for an image: the shipped fp32 encoder's de-quantized symbols
    (export calibration and gate). To decode files use `edgeret decode FILE.ert -o OUT.png`."""
    from .export_checks import decoder_feed

    return decoder_feed(image, task)


def _encoder_score(raw: np.ndarray, outputs: Mapping[str, np.ndarray], task: TaskPlugin) -> float:
    from .export_checks import encoder_round_trip_psnr

    return encoder_round_trip_psnr(raw, outputs, task)


def _decoder_score(raw: np.ndarray, outputs: Mapping[str, np.ndarray], task: TaskPlugin) -> float:
    from .export_checks import decoder_psnr

    return decoder_psnr(raw, outputs, task)


def _decoder_postprocess(outputs: Mapping[str, np.ndarray], task: TaskPlugin) -> dict[str, Any]:
    _, c, h, w = np.shape(outputs["image"])
    return {"channels": int(c), "height": int(h), "width": int(w)}


def _ms_ssim(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from .processing import ms_ssim

    return ms_ssim(y_true, y_pred, 255.0 if np.asarray(y_true).dtype == np.uint8 else 65535.0)


def _psnr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from edgeret.metrics import psnr

    return psnr(y_true, y_pred, 255.0 if np.asarray(y_true).dtype == np.uint8 else 65535.0)


def _encoder_factory():
    from .model import EncoderGraph
    from .shipping import load_codec

    return EncoderGraph(load_codec(DEFAULT_MODEL))


def _decoder_factory():
    from .model import DecoderGraph
    from .shipping import load_codec

    return DecoderGraph(load_codec(DEFAULT_MODEL))


def _calibration(n: int, seed: int):
    from edgeret.build.data.oct import generate_oct

    for i in range(n):  # never a training (0..) or benchmark (100_000..) seed
        yield generate_oct(200_000 + seed * 10_000 + i, quality="good").image


def _train(request: TrainRequest) -> Path:
    from .recipe import train

    return train(request)


_METRICS = {"ms_ssim": _ms_ssim, "psnr": _psnr}


def encoder_task() -> TaskPlugin:
    return TaskPlugin(
        name="codec-encoder",
        modality="any",
        description="Learned codec, device half: image -> latents (use `edgeret encode` for .ert files)",
        inputs=(TensorSpec("image", ("batch", "channels", "height", "width"), "float32", (0.0, 1.0),
                           "1 channel (OCT) or RGB (fundus), pixel / (2**bits - 1), H and W reflect-padded "
                           "to multiples of 32"),),
        outputs=tuple(TensorSpec(name, ("batch", c, f"height/{s}", f"width/{s}"), "float32", None,
                                 f"{what}; rounded (after the rate point's gain) by the runtime")
                      for (name, s, what), c in zip(LATENTS, DEFAULT_LATENT_CHANNELS, strict=True)),
        preprocess=_encoder_preprocess,
        postprocess=_encoder_postprocess,
        image_kind=None,
        default_model=WEIGHTS_DIR / f"{DEFAULT_MODEL}.encoder.onnx",
        model_factory=_encoder_factory,
        default_weights=WEIGHTS_DIR / f"{DEFAULT_MODEL}.pt",
        metrics=_METRICS,
        calibration=_calibration,
        train=_train,
        export_score=ExportScore("round_trip_psnr", "dB", _encoder_score),
        # l3's output is the finest latent (y3, 1/4 scale), rounded as it is: int8 noise at its input moves
        # symbols. Float there: OpenVINO int8 loss on 8 fresh B-scans, max 0.38 -> 0.18 dB (wider model),
        # 0.12 -> 0.11 dB (session-8 model), for 3-4 ms more (TRAINING.md, "int8 export of the encoder").
        int8_keep_float=("encoder.l3",),
    )


def decoder_task() -> TaskPlugin:
    return TaskPlugin(
        name="codec-decoder",
        modality="any",
        description="Learned codec, hub half: de-quantized latents -> image (use `edgeret decode`)",
        inputs=tuple(TensorSpec(name, ("batch", c, f"height/{s}", f"width/{s}"), "float32", None,
                                f"{what}: symbols times the rate point's inverse gain")
                     for (name, s, what), c in zip(LATENTS, DEFAULT_LATENT_CHANNELS, strict=True)),
        outputs=(TensorSpec("image", ("batch", 1, "height", "width"), "float32", (0.0, 1.0),
                            "reconstruction (1 channel: the default OCT model), cropped to the original "
                            "size by the runtime"),),
        preprocess=_decoder_preprocess,
        postprocess=_decoder_postprocess,
        default_model=WEIGHTS_DIR / f"{DEFAULT_MODEL}.decoder.onnx",
        model_factory=_decoder_factory,
        default_weights=WEIGHTS_DIR / f"{DEFAULT_MODEL}.pt",
        metrics=_METRICS,
        calibration=_calibration,
        export_score=ExportScore("round_trip_psnr", "dB", _decoder_score),
    )


@hookimpl
def edgeret_tasks() -> Iterable[TaskPlugin]:
    yield encoder_task()
    yield decoder_task()
