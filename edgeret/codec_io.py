"""The learned codec at run time: image -> ``.ert`` and ``.ert`` -> image, on any backend.

No torch. The device runs the encoder graph, rounds its continuous latents in
numpy (:func:`quantize`: one rounding rule whatever backend produced the
floats), entropy-codes the symbols with the integer tables shipped with the
model (:mod:`edgeret.entropy`) and writes the ``.ert`` container
(:mod:`edgeret.bitstream`). The hub reads the header, refuses a stream written
by another model, decodes exactly the symbols the stream holds, de-quantizes
them and runs the decoder graph.

Models are described by a manifest, ``codec_models.json``, in a weights folder
(the built-in one is the ``codec-encoder`` task's folder). Each model has an
encoder and a decoder graph (ONNX), a parameter file (``.npz``: per rate point
the gains and the canonical bytes of the integer entropy tables) and one or
more *rate points*. A rate point is what a stream names: its id is the
header's codec id (e.g. ``oct-factorized-q2``) and its model hash is
:func:`rate_digest` over the encoder's and decoder's SHA-256, the gains and the
tables, so changing any of them changes the hash.

Latents, in payload order: ``y0`` (main, stride 32), ``y1`` (skip from encoder
layer 5, stride 16), ``y2`` (layer 4, stride 8), ``y3`` (layer 3, stride 4).
Images whose sides are not multiples of 32 are reflect-padded; the header
records the original size and the decoder crops back.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeret.bitstream import (
    Header,
    LatentInfo,
    ModelIdentity,
    check_model,
    decode_header,
    decode_stream,
    model_digest,
    write_ert,
)
from edgeret.entropy import IntegerTable, decode_symbols, encode_symbols
from edgeret.errors import EdgeretError, InputError

MANIFEST = "codec_models.json"
MULTIPLE = 32
STRIDES = (32, 16, 8, 4)
LATENT_NAMES = ("y0", "y1", "y2", "y3")
MAX_DECODE_PIXELS = 1 << 25  # 32 MP: the decoder's activations must fit in memory
MODALITY_CHANNELS = {"oct": 1, "fundus": 3}


# --- numpy pieces shared with training ----------------------------------------------------


def padded_size(height: int, width: int) -> tuple[int, int]:
    return -(-height // MULTIPLE) * MULTIPLE, -(-width // MULTIPLE) * MULTIPLE


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
    x = np.clip(np.asarray(y, dtype=np.float32)[0, :, :height, :width], 0.0, 1.0) * np.float32(maxval)
    x = np.rint(x).astype(np.uint8 if bit_depth == 8 else np.uint16)
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


def rate_digest(encoder_sha: bytes, decoder_sha: bytes, gains: Sequence[np.ndarray] | None,
                inv_gains: Sequence[np.ndarray] | None, tables: Sequence[IntegerTable]) -> bytes:
    """The model hash of one rate point (what every header carries)."""
    parts = [b"edgeret-codec-v1", encoder_sha, decoder_sha]
    for i, table in enumerate(tables):
        for arr in (gains, inv_gains):
            parts.append(b"" if arr is None else np.asarray(arr[i], "<f4").tobytes())
        parts.append(table.to_bytes())
    return model_digest(*parts)


# --- the catalogue ------------------------------------------------------------------------


@dataclass(frozen=True)
class RatePoint:
    id: str  # the header's codec id
    index: int
    model_hash: bytes
    tables: tuple[IntegerTable, ...]
    lo: tuple[int, ...]
    hi: tuple[int, ...]
    gains: tuple[np.ndarray, ...] | None
    inv_gains: tuple[np.ndarray, ...] | None
    nominal_bpp: float  # measured at export on validation phantoms
    model: str

    @property
    def model_name(self) -> str:
        return self.id

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity(self.model_name, self.model_hash)


@dataclass
class CodecModel:
    name: str
    modality: str
    variant: str
    channels: int
    latent_channels: tuple[int, ...]
    encoder_path: Path
    decoder_path: Path
    rates: list[RatePoint] = field(default_factory=list)
    levels: int | None = None
    description: str = ""
    default_rate: str | None = None  # rate-point id used when none is asked for (None: the middle one)

    def default_point(self) -> RatePoint:
        points = sorted(self.rates, key=lambda p: p.nominal_bpp)
        named = [p for p in points if p.id == self.default_rate]
        return named[0] if named else points[len(points) // 2]

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        ph, pw = padded_size(height, width)
        return [(c, ph // s, pw // s) for c, s in zip(self.latent_channels, STRIDES, strict=True)]


def _sha_file(path: Path) -> bytes | None:
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except FileNotFoundError:
        return None


class CodecCatalog:
    """The codec models of one weights folder, checked against their manifest."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(path, "no codec manifest here (is the codec plugin installed?)") from None
        except (OSError, ValueError) as e:
            raise InputError(path, f"unreadable codec manifest ({e})") from None
        self.models: dict[str, CodecModel] = {}
        try:
            for entry in manifest["models"]:
                model = self._load(entry)
                self.models[model.name] = model
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(path, f"malformed codec manifest ({type(e).__name__}: {e})") from None
        self.rates = {r.id: (m, r) for m in self.models.values() for r in m.rates}

    @classmethod
    def of_plugin(cls, host) -> CodecCatalog:
        """The models the installed `codec-encoder` task ships (its weights folder)."""
        task = host.task("codec-encoder")
        if task.default_model is None:
            raise EdgeretError("the codec-encoder task ships no models; pass --models DIR")
        return cls(task.default_model.parent)

    def _file(self, entry: dict, key: str) -> tuple[Path, bytes]:
        path = self.folder / entry[key]["file"]
        want = bytes.fromhex(entry[key]["sha256"])
        got = _sha_file(path)
        if got is not None and got != want:  # a device bundle may hold only one of the graphs
            raise InputError(path, f"file does not match the codec manifest (sha256 {got.hex()[:12]}…, "
                                   f"expected {want.hex()[:12]}…)")
        return path, want

    def _load(self, entry: dict) -> CodecModel:
        enc_path, enc_sha = self._file(entry, "encoder")
        dec_path, dec_sha = self._file(entry, "decoder")
        npz_path, _ = self._file(entry, "params")
        with np.load(io.BytesIO(npz_path.read_bytes())) as npz:
            arrays = {k: npz[k] for k in npz.files}
        model = CodecModel(
            name=entry["name"], modality=entry["modality"], variant=entry["variant"],
            channels=int(entry["channels"]), latent_channels=tuple(int(c) for c in entry["latent_channels"]),
            encoder_path=enc_path, decoder_path=dec_path, levels=entry.get("levels"),
            description=entry.get("description", ""), default_rate=entry.get("default_rate"))
        if model.modality not in MODALITY_CHANNELS or len(model.latent_channels) != 4:
            raise ValueError(f"model {model.name}: bad modality or latent count")
        for rate in entry["rates"]:
            r = int(rate["index"])
            tables = tuple(IntegerTable.from_bytes(arrays[f"table_{r}_{i}"].tobytes(), source=str(npz_path))
                           for i in range(4))
            gains = inv = None
            if f"gain_{r}_0" in arrays:
                gains = tuple(arrays[f"gain_{r}_{i}"].astype(np.float32) for i in range(4))
                inv = tuple(arrays[f"inv_gain_{r}_{i}"].astype(np.float32) for i in range(4))
            digest = rate_digest(enc_sha, dec_sha, gains, inv, tables)
            if digest.hex() != rate["model_hash"]:
                raise ValueError(f"rate {rate['id']}: its tables and gains do not give the recorded hash")
            lo, hi = zip(*[(int(a), int(b)) for a, b in rate["symbol_range"]], strict=True)
            model.rates.append(RatePoint(
                id=rate["id"], index=r, model_hash=digest, tables=tables, lo=lo, hi=hi, gains=gains,
                inv_gains=inv, nominal_bpp=float(rate["validation"]["bpp"]), model=model.name))
        return model

    # --- choosing a model ------------------------------------------------------------

    def choose(self, modality: str, variant: str = "factorized",
               rate: str | float | None = None) -> tuple[CodecModel, RatePoint]:
        """The model of this modality and variant, and the rate point closest to ``rate``.

        ``rate``: a target in bits per pixel (closest nominal bpp, in log scale),
        a rate-point id (``oct-factorized-q4``, or ``q4`` for the chosen model), or
        None (the model's default rate point: ``default_rate`` in the manifest,
        else the middle one).
        """
        if isinstance(rate, str) and rate in self.rates:
            model, point = self.rates[rate]
            if model.modality != modality:
                raise EdgeretError(f"rate point '{rate}' belongs to the {model.modality} codec, "
                                   f"not {modality}")
            return model, point
        models = [m for m in self.models.values() if m.modality == modality and m.variant == variant]
        if not models:
            have = ", ".join(sorted(self.models)) or "none"
            raise EdgeretError(f"no {variant} codec for {modality} images is installed (installed: {have})")
        model = models[0]
        points = sorted(model.rates, key=lambda p: p.nominal_bpp)
        if rate is None:
            return model, model.default_point()
        short = {p.id.removeprefix(f"{model.name}-"): p for p in points}  # "q4" for this model's q4
        if isinstance(rate, str) and rate in short:
            return model, short[rate]
        try:
            target = float(rate)
        except ValueError:
            raise EdgeretError(f"--rate {rate!r} is neither bits per pixel nor a rate point "
                               f"(known: {', '.join(sorted(self.rates))})") from None
        if not target > 0 or not math.isfinite(target):
            raise EdgeretError(f"--rate must be a positive number of bits per pixel, got {rate}")
        return model, min(points, key=lambda p: abs(math.log(p.nominal_bpp / target)))


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
        from edgeret.bitstream import encode_stream

        return len(encode_stream(self.header, self.payloads))


@dataclass
class Decoded:
    image: np.ndarray
    header: Header
    symbols: list[np.ndarray]
    rate: RatePoint
    seconds: float  # entropy decoding + decoder graph


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
        if np.array_equal(image[:, :, 0], image[:, :, 1]) and np.array_equal(image[:, :, 0], image[:, :, 2]):
            image = image[:, :, 0]  # grey stored as RGB
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
               source: str = "<array>") -> Encoded:
        image = image_for(model, image, source)
        bit_depth = 8 if image.dtype == np.uint8 else 16
        self._runner(model.encoder_path)  # load outside the timing
        start = time.perf_counter()
        ys = self.latents(model, image, bit_depth)
        return encode_latents(ys, image.shape, bit_depth, model, rate, start)

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
        shapes = model.latent_shapes(header.height, header.width)
        if [lat.shape for lat in header.latents] != shapes:
            raise InputError(source, f"latent shapes {[lat.shape for lat in header.latents]} do not fit a "
                                     f"{header.width}x{header.height} image (expected {shapes})")
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
        out = runner.run(feeds)
        image = from_model_output(out["image"], header.height, header.width, header.bit_depth)
        return Decoded(image, header, symbols, rate, time.perf_counter() - start)


def encode_latents(ys: Sequence[np.ndarray], image_shape: Sequence[int], bit_depth: int, model: CodecModel,
               rate: RatePoint, start: float | None = None) -> Encoded:
    """Quantize and entropy-code latents y0..y3 however they were computed (the plugin's ONNX encoder,
    or an exported one from a device bundle: INT8, OpenVINO, LiteRT) into one stream's parts."""
    start = time.perf_counter() if start is None else start
    h, w = image_shape[:2]
    symbols, payloads, infos = [], [], []
    for i, (y, shape) in enumerate(zip(ys, model.latent_shapes(h, w), strict=True)):
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
                    modality=model.modality, latents=tuple(infos))
    return Encoded(header, payloads, symbols, model, rate, seconds)


def write_encoded(path: str | Path, encoded: Encoded) -> Path:
    return write_ert(path, encoded.header, encoded.payloads)


def stream_stats(nbytes: int, header: Header) -> dict:
    """Size, bits per pixel and compression ratio against the raw pixels."""
    pixels = header.height * header.width
    raw = pixels * header.channels * header.bit_depth / 8
    return {"bytes": nbytes, "bpp": nbytes * 8 / pixels, "compression_ratio": raw / nbytes,
            "height": header.height, "width": header.width, "channels": header.channels,
            "bit_depth": header.bit_depth, "modality": header.modality, "codec": header.codec}
