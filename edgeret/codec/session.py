"""The learned codec at run time: image -> ``.ert`` and ``.ert`` -> image, on any backend.

No torch. The device runs the encoder graph, rounds its continuous latents in
numpy (:func:`quantize`: one rounding rule whatever backend produced the
floats), entropy-codes the symbols with the integer tables shipped with the
model (:mod:`edgeret.codec.ert.entropy`) and writes the ``.ert`` container
(:mod:`edgeret.codec.ert.container`). The hub reads the header, refuses a stream written
by another model, decodes exactly the symbols the stream holds, de-quantizes
them and runs the decoder graph. Which models exist is the catalogue's job
(:mod:`edgeret.codec.catalog`); an oversampled image may be coded at half
resolution (:mod:`edgeret.codec.scale`, the header's ``scale``). A stream the
camera sent as JPEG XL instead (:mod:`edgeret.codec.choice`) is routed by its
codec id to :mod:`edgeret.codec.classical`.

Latents, in payload order: ``y0`` (main, stride 32), ``y1`` (skip from encoder
layer 5, stride 16), ``y2`` (layer 4, stride 8), ``y3`` (layer 3, stride 4).
Images whose sides are not multiples of 32 are reflect-padded; the header
records the original size and the decoder crops back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeret.codec.catalog import (  # noqa: F401 - re-exported: callers import the catalogue from here
    MANIFEST,
    MODALITY_CHANNELS,
    MULTIPLE,
    STRIDES,
    CodecCatalog,
    CodecModel,
    RatePoint,
    padded_size,
    rate_digest,
)
from edgeret.codec.ert.container import (
    Header,
    LatentInfo,
    check_model,
    decode_header,
    decode_stream,
)
from edgeret.codec.ert.entropy import decode_symbols, encode_symbols
from edgeret.codec.scale import coded_scale, coded_size, downscale2, upscale2
from edgeret.errors import EdgeretError, InputError
from edgeret.images.grey_exports import as_grey

LATENT_NAMES = ("y0", "y1", "y2", "y3")
MAX_DECODE_PIXELS = 1 << 25  # 32 MP: the image, latents and symbols must fit in memory (the hub sets less)
# The decoder's activations cost about 1 GB per coded megapixel (measured on ONNX Runtime), so
# larger images decode in tiles of TILE_Y0 x TILE_Y0 main-latent cells (32 px each) with a halo of
# HALO_Y0 cells; the decoder's receptive field is narrower than the halo, so the tiled image equals
# the whole one (tests/test_codec_tiles.py) and memory stays near that of one 640 x 640 decode.
TILE_Y0, HALO_Y0 = 16, 2


# --- numpy pieces shared with training ----------------------------------------------------


def to_model_input(image: np.ndarray, bit_depth: int) -> np.ndarray:
    """uint8/uint16 (H, W) or (H, W, C) -> float32 (1, C, H', W') in [0, 1], reflect-padded."""
    x = image.astype(np.float32) * np.float32(1.0 / ((1 << bit_depth) - 1))
    if x.ndim == 2:
        x = x[:, :, None]
    h, w = x.shape[:2]
    ph, pw = padded_size(h, w)
    if (ph, pw) != (h, w):
        # numpy repeats the reflection when the pad is longer than the image; a
        # one-pixel side has nothing to reflect, so it is repeated instead
        mode = "reflect" if min(h, w) > 1 else "edge"
        x = np.pad(x, [(0, ph - h), (0, pw - w), (0, 0)], mode=mode)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def from_model_output(y: np.ndarray, height: int, width: int, bit_depth: int) -> np.ndarray:
    """float (1, C, H', W') -> uint8/uint16 (H, W) or (H, W, C): cropped, clipped, rounded."""
    maxval = (1 << bit_depth) - 1
    x = np.clip(np.asarray(y, dtype=np.float32)[0, :, :height, :width], 0.0, 1.0)
    x *= np.float32(maxval)  # in place: a 12-megapixel photo's float copies are 144 MB each
    x = np.rint(x, out=x).astype(np.uint8 if bit_depth == 8 else np.uint16)
    return x[0] if x.shape[0] == 1 else np.ascontiguousarray(x.transpose(1, 2, 0))


def quantize(y: np.ndarray, gain: np.ndarray | None, lo: int, hi: int) -> np.ndarray:
    """Continuous latent (1, C, H, W) -> int32 symbols (C, H, W) in [lo, hi].

    float32 product with the per-channel gain (if any), rounded half to even
    (``np.rint``), clipped to the table's range.
    """
    z = np.asarray(y, dtype=np.float32)[0]
    if gain is not None:
        z = z * np.asarray(gain, dtype=np.float32)[:, None, None]
    return np.clip(np.rint(z), lo, hi).astype(np.int32)


def dequantize(symbols: np.ndarray, inv_gain: np.ndarray | None) -> np.ndarray:
    """int symbols (C, H, W) -> float32 (1, C, H, W), times the per-channel inverse gain."""
    z = symbols.astype(np.float32)
    if inv_gain is not None:
        z = z * np.asarray(inv_gain, dtype=np.float32)[:, None, None]
    return z[None]


# --- encode / decode ----------------------------------------------------------------------


@dataclass
class Encoded:
    header: Header
    payloads: list[bytes]
    symbols: list[np.ndarray]
    model: CodecModel
    rate: RatePoint
    seconds: float  # encoder graph + quantization + entropy coding

    @property
    def nbytes(self) -> int:
        from edgeret.codec.ert.container import encode_stream

        return len(encode_stream(self.header, self.payloads))


@dataclass
class Decoded:
    image: np.ndarray
    header: Header
    symbols: list[np.ndarray]  # empty for a classical codestream
    rate: RatePoint | None  # None for a classical codestream
    seconds: float  # entropy decoding + decoder graph (classical: the codestream's decoder)


def _load_runner(backend, path: Path, threads: int | None):
    if not path.is_file():
        raise InputError(path, "codec graph is missing from the weights folder")
    return backend.load(path, threads=threads)


def image_for(model: CodecModel, image: np.ndarray, source: str) -> np.ndarray:
    """Check (and where unambiguous, adapt) an image for a model; errors name ``source``."""
    if image.dtype not in (np.uint8, np.uint16):
        raise InputError(source, f"pixel type {image.dtype} is not uint8 or uint16")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]  # alpha is not coded
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise InputError(source, f"image has shape {image.shape}; the codec takes one HxW or HxWx3 "
                                 "image (encode the frames of a volume one by one)")
    if model.channels == 3 and image.ndim == 2:
        raise InputError(source, "the fundus codec needs a colour (RGB) photograph; this image is "
                                 "grayscale (use --modality oct for OCT B-scans)")
    if model.channels == 1 and image.ndim == 3:
        grey = as_grey(image, source)
        if grey is not None:
            image = grey
        else:
            raise InputError(source, "the OCT codec takes grayscale B-scans; this image is colour "
                                     "(use --modality fundus for fundus photographs)")
    return image


def modality_of(image: np.ndarray, requested: str = "auto") -> str:
    if requested != "auto":
        if requested not in MODALITY_CHANNELS:
            raise EdgeretError(f"unknown modality '{requested}' (auto, oct or fundus)")
        return requested
    colour = image.ndim == 3 and image.shape[2] in (3, 4)
    return "fundus" if colour else "oct"


class CodecSession:
    """Encoder and/or decoder graphs of a catalogue loaded (lazily) on one backend."""

    def __init__(self, catalog: CodecCatalog, backend, threads: int | None = None) -> None:
        self.catalog = catalog
        self.backend = backend
        self.threads = threads
        self._runners: dict[Path, object] = {}

    def _runner(self, path: Path):
        if path not in self._runners:
            self._runners[path] = _load_runner(self.backend, path, self.threads)
        return self._runners[path]

    def latents(self, model: CodecModel, image: np.ndarray, bit_depth: int) -> list[np.ndarray]:
        """The encoder graph's continuous outputs y0..y3 for one (checked) image."""
        runner = self._runner(model.encoder_path)
        out = runner.run({"image": to_model_input(image, bit_depth)})
        return [np.asarray(out[n], dtype=np.float32) for n in LATENT_NAMES]

    def encode(self, image: np.ndarray, model: CodecModel, rate: RatePoint, *,
               source: str = "<array>", scale: str | int = "auto") -> Encoded:
        """Code one image; ``scale`` "auto" halves an oversampled one where the rate point allows."""
        image = image_for(model, image, source)
        bit_depth = 8 if image.dtype == np.uint8 else 16
        self._runner(model.encoder_path)  # load outside the timing
        start = time.perf_counter()
        factor = coded_scale(image, model.allows_half_scale(rate), scale)
        coded = downscale2(image) if factor == 2 else image
        ys = self.latents(model, coded, bit_depth)
        return encode_latents(ys, image.shape, bit_depth, model, rate, start, scale=factor)

    def lookup(self, header: Header, source: str, codec: str | None = None) -> tuple[CodecModel, RatePoint]:
        """The rate point that decodes this header (``codec`` forces one); wrong model -> error."""
        want = codec or header.codec
        if want not in self.catalog.rates:
            installed = ", ".join(sorted(self.catalog.rates))
            raise InputError(source, f"written by codec '{header.codec}', which is not installed "
                                     f"(installed: {installed})")
        model, rate = self.catalog.rates[want]
        check_model(header, rate.identity, source=source)
        return model, rate

    def decode_bytes(self, data: bytes, *, source: str = "<bitstream>", codec: str | None = None) -> Decoded:
        header, _, _ = decode_header(data, source=source)
        if header.classical:  # routed by the codec id: no model, the codestream is self-contained
            if codec is not None and codec != header.codec:
                raise InputError(source, f"written by codec '{header.codec}', not '{codec}'")
            return decode_classical_bytes(data, source=source)
        model, rate = self.lookup(header, source, codec)
        header, payloads = decode_stream(data, source=source, expect=rate.identity)
        return self.decode(header, payloads, model, rate, source=source)

    def decode(self, header: Header, payloads: Sequence[bytes], model: CodecModel, rate: RatePoint, *,
               source: str = "<bitstream>") -> Decoded:
        if header.modality != model.modality or header.channels != model.channels:
            raise InputError(source, f"header says {header.channels}-channel {header.modality}, codec "
                                     f"'{rate.id}' codes {model.channels}-channel {model.modality} images")
        if header.height * header.width > MAX_DECODE_PIXELS:
            raise InputError(source, f"image {header.width}x{header.height} exceeds the decoder's limit "
                                     f"of {MAX_DECODE_PIXELS} pixels")
        shapes = model.latent_shapes(header.height, header.width, header.scale)
        if [lat.shape for lat in header.latents] != shapes:
            at = "" if header.scale == 1 else f" coded at 1/{header.scale}"
            raise InputError(source, f"latent shapes {[lat.shape for lat in header.latents]} do not fit a "
                                     f"{header.width}x{header.height} image{at} (expected {shapes})")
        ids = [lat.table_id for lat in header.latents]
        if ids != [t.table_id for t in rate.tables]:
            raise InputError(source, f"entropy tables {ids} are not those of codec '{rate.id}'")
        runner = self._runner(model.decoder_path)
        start = time.perf_counter()
        symbols, feeds = [], {}
        for i, (payload, shape) in enumerate(zip(payloads, shapes, strict=True)):
            q = decode_symbols(payload, shape, rate.tables[i], source=source)
            symbols.append(q)
            feeds[LATENT_NAMES[i]] = dequantize(q, None if rate.inv_gains is None else rate.inv_gains[i])
        ch, cw = coded_size(header.height, header.width, header.scale)
        image = from_model_output(run_decoder(runner, feeds), ch, cw, header.bit_depth)
        if header.scale == 2:
            image = upscale2(image, header.height, header.width)
        return Decoded(image, header, symbols, rate, time.perf_counter() - start)


def decode_classical_bytes(data: bytes, *, source: str = "<bitstream>") -> Decoded:
    """A classical (JPEG XL) ``.ert`` stream's image: container checked, then the codestream decoded."""
    from edgeret.codec.classical import decode_classical  # imagecodecs only when such a stream arrives

    header, payloads = decode_stream(data, source=source)
    start = time.perf_counter()
    image = decode_classical(header, payloads[0], source=source)
    return Decoded(image, header, [], None, time.perf_counter() - start)


def run_decoder(runner, feeds: dict[str, np.ndarray], tile: int = TILE_Y0, halo: int = HALO_Y0) -> np.ndarray:
    """The decoder graph's image for latents y0..y3: whole when it fits one tile, else tile by tile."""
    rows, cols = feeds[LATENT_NAMES[0]].shape[2:]
    if rows <= tile + halo and cols <= tile + halo:
        return runner.run(feeds)["image"]
    cell = STRIDES[0]
    out = None
    for r0 in range(0, rows, tile):
        for c0 in range(0, cols, tile):
            r1, c1 = min(r0 + tile, rows), min(c0 + tile, cols)
            a0, b0 = max(r0 - halo, 0), max(c0 - halo, 0)
            a1, b1 = min(r1 + halo, rows), min(c1 + halo, cols)
            part = {}
            for name, stride in zip(LATENT_NAMES, STRIDES, strict=True):
                m = cell // stride  # this latent's cells per main-latent cell
                part[name] = np.ascontiguousarray(feeds[name][:, :, a0 * m:a1 * m, b0 * m:b1 * m])
            y = runner.run(part)["image"]
            if out is None:
                out = np.empty((1, y.shape[1], rows * cell, cols * cell), dtype=np.float32)
            out[:, :, r0 * cell:r1 * cell, c0 * cell:c1 * cell] = \
                y[:, :, (r0 - a0) * cell:(r1 - a0) * cell, (c0 - b0) * cell:(c1 - b0) * cell]
    return out


def encode_latents(ys: Sequence[np.ndarray], image_shape: Sequence[int], bit_depth: int, model: CodecModel,
                   rate: RatePoint, start: float | None = None, *, scale: int = 1) -> Encoded:
    """Quantize and entropy-code latents y0..y3 however they were computed (the plugin's ONNX encoder,
    or an exported one from a device bundle: INT8, OpenVINO, LiteRT) into one stream's parts.

    ``image_shape`` is the original image's; ``scale`` 2 if the latents code it halved."""
    start = time.perf_counter() if start is None else start
    h, w = image_shape[:2]
    symbols, payloads, infos = [], [], []
    for i, (y, shape) in enumerate(zip(ys, model.latent_shapes(h, w, scale), strict=True)):
        if tuple(y.shape[1:]) != shape:
            raise EdgeretError(f"codec {model.name}: encoder output {LATENT_NAMES[i]} has shape "
                               f"{y.shape[1:]}, expected {shape}")
        q = quantize(y, None if rate.gains is None else rate.gains[i], rate.lo[i], rate.hi[i])
        symbols.append(q)
        payloads.append(encode_symbols(q, rate.tables[i]))
        infos.append(LatentInfo(shape, rate.tables[i].table_id))
    seconds = time.perf_counter() - start
    header = Header(codec=rate.id, model_name=rate.model_name, model_hash=rate.model_hash,
                    height=h, width=w, channels=model.channels, bit_depth=bit_depth,
                    modality=model.modality, latents=tuple(infos), scale=scale)
    return Encoded(header, payloads, symbols, model, rate, seconds)


def stream_stats(nbytes: int, header: Header) -> dict:
    """Size, bits per pixel and compression ratio against the raw pixels."""
    pixels = header.height * header.width
    raw = pixels * header.channels * header.bit_depth / 8
    return {"bytes": nbytes, "bpp": nbytes * 8 / pixels, "compression_ratio": raw / nbytes,
            "height": header.height, "width": header.width, "channels": header.channels,
            "bit_depth": header.bit_depth, "modality": header.modality, "codec": header.codec,
            "scale": header.scale}
