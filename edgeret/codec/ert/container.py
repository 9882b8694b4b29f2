"""The ``.ert`` container: a checked header plus CRC-protected payload chunks.

A learned-codec stream is one header (which codec and model wrote it, the
image's shape, bit depth and modality, and for each latent tensor its shape and
entropy-table id) followed by the entropy-coded latents, split into chunks of at
most 64 KiB, each with its own CRC32. The byte layout is in ``docs/bitstream.md``.

Decoding never trusts the stream: every declared size is checked against a
fixed limit and against the bytes actually present before anything is
allocated, and every problem (wrong magic, unsupported version, bad CRC,
truncation, trailing bytes, out-of-range field) raises :class:`InputError`
naming the file. A stream written by a different model raises
:class:`BitstreamModelMismatch`, naming both models.

A *classical* stream (a JPEG XL codestream the camera sent because it beat the
learned codec on that capture, :mod:`edgeret.codec.classical`) is the same
container with no latents: its codec id is a classical one
(:data:`CLASSICAL_CODECS`), it has exactly one payload record describing the
image itself (shape = channels, height, width; no entropy table), the payload is
the opaque codestream, and the header's 32-byte hash is the codestream's
SHA-256. No version bump: a reader that predates it parses the header and
refuses the stream by its codec id ("codec 'jxl' ... not installed").

This module knows nothing about neural networks or entropy coding; see
:mod:`edgeret.codec.ert.entropy` for the payloads.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeret.errors import EdgeretError, InputError
from edgeret.link.atomic import write_bytes_atomic

MAGIC = b"\x89ERT\r\n\x1a\n"
FORMAT_VERSION = 2  # the newest this edgeret writes and reads; a full-scale stream is still written as 1
READ_VERSIONS = tuple(range(1, FORMAT_VERSION + 1))
BITSTREAM = "<bitstream>"

MAX_SIDE = 16384  # image height and width
MAX_IMAGE_CHANNELS = 4
BIT_DEPTHS = (8, 16)
MODALITIES = {1: "fundus", 2: "oct"}
SCALES = (1, 2)  # version 2: the image was coded at 1/scale of its size (edgeret.codec.scale)
MAX_NAME = 64  # codec id and model name, bytes
MAX_LATENTS = 16
MAX_LATENT_CHANNELS = 65536
MAX_LATENT_ELEMENTS = 1 << 26  # summed over all latents
CHUNK_SIZE = 1 << 16  # payloads are split into chunks of at most 64 KiB
MAX_CHUNKS = 4096
MAX_PAYLOAD = MAX_CHUNKS * CHUNK_SIZE  # 256 MiB over all latents
# Classical codecs a stream may carry instead of latents: codec id -> what the payload is. The id is fixed
# by the codec, not by a model, so a reader knows from the id alone how to decode the payload.
CLASSICAL_CODECS = {"jxl": "JPEG XL (ISO/IEC 18181-1) codestream"}
NO_TABLE = "0" * 16  # a classical payload record's table id: no entropy table

_PREAMBLE = struct.Struct("<8sHI")  # magic, version, header body length
_CRC = struct.Struct("<I")
_IMAGE = struct.Struct("<IIBBBB")  # height, width, channels, bit depth, modality, n latents
_SCALE = struct.Struct("<B")  # version 2 only: the coding scale
_LATENT = struct.Struct("<III8sI")  # C, H, W, table id, payload bytes
_CHUNK = struct.Struct("<II")  # length, CRC32
_MIN_BODY = 2 + 2 + 32 + _IMAGE.size + _LATENT.size + 4
_MAX_BODY = 2 * (1 + MAX_NAME) + 32 + _IMAGE.size + _SCALE.size + MAX_LATENTS * _LATENT.size + 4
MAX_STREAM = _PREAMBLE.size + _MAX_BODY + _CRC.size + MAX_CHUNKS * _CHUNK.size + MAX_PAYLOAD

_CODEC_RE = re.compile(rf"[\x21-\x7e]{{1,{MAX_NAME}}}")  # printable ASCII, no spaces
_NAME_RE = re.compile(rf"[\x20-\x7e]{{1,{MAX_NAME}}}")  # printable ASCII
_TABLE_ID_RE = re.compile(r"[0-9a-f]{16}")


class BitstreamModelMismatch(EdgeretError):
    """A stream was encoded with a different model than the decoder holds."""

    def __init__(self, source: str | Path, stream: ModelIdentity, decoder: ModelIdentity) -> None:
        self.source = str(source)
        self.stream = stream
        self.decoder = decoder
        super().__init__(f"{self.source}: encoded with model {stream.describe()}, "
                         f"this decoder has {decoder.describe()}")


@dataclass(frozen=True)
class ModelIdentity:
    """A model's human-readable name and the SHA-256 of what the encoder used."""

    name: str
    sha256: bytes

    def describe(self) -> str:
        return f"'{self.name}' (hash {self.sha256[:4].hex()}…)"


def model_digest(*parts: bytes) -> bytes:
    """SHA-256 over byte strings (e.g. the ONNX model and each table's ``to_bytes()``).

    Each part is prefixed with its length (u64) so different splits never collide.
    """
    h = hashlib.sha256()
    for part in parts:
        h.update(struct.pack("<Q", len(part)))
        h.update(part)
    return h.digest()


@dataclass(frozen=True)
class LatentInfo:
    """One entropy-coded tensor: its shape (C, H, W) and its entropy table's id."""

    shape: tuple[int, int, int]
    table_id: str  # IntegerTable.table_id: 16 lowercase hex digits

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Header:
    """What a decoder needs to know before it reads the payload.

    A classical stream (``codec`` in :data:`CLASSICAL_CODECS`, see :func:`classical_header`) has one
    payload record, the image's own shape; its ``model_name`` names the encoder library (e.g.
    "libjxl 0.11.2") and ``model_hash`` is the codestream's SHA-256."""

    codec: str  # e.g. "oct-l7-r0.25" or "jxl": printable ASCII, no spaces, <= 64 bytes
    model_name: str  # human-readable model (or encoder library) name, printable ASCII, <= 64 bytes
    model_hash: bytes  # 32-byte SHA-256 of the model and entropy tables (classical: of the codestream)
    height: int
    width: int
    channels: int  # image channels, 1..4
    bit_depth: int  # 8 or 16
    modality: str  # "fundus" or "oct"
    latents: tuple[LatentInfo, ...]
    scale: int = 1  # the latents code the image at 1/scale of height x width; the decoder scales back

    def __post_init__(self) -> None:
        object.__setattr__(self, "latents", tuple(
            LatentInfo(tuple(int(d) for d in lat.shape), lat.table_id) for lat in self.latents))
        problem = _header_problem(self)
        if problem:
            raise ValueError(f"invalid .ert header: {problem}")

    @property
    def model(self) -> ModelIdentity:
        return ModelIdentity(self.model_name, self.model_hash)

    @property
    def classical(self) -> bool:
        """True for a classical codestream (one opaque payload, no latents)."""
        return self.codec in CLASSICAL_CODECS


def classical_header(codec: str, encoder: str, codestream: bytes, *, height: int, width: int,
                     channels: int, bit_depth: int, modality: str) -> Header:
    """The header of a classical codestream of an image: its one payload record is the image's shape."""
    return Header(codec=codec, model_name=encoder, model_hash=hashlib.sha256(codestream).digest(),
                  height=height, width=width, channels=channels, bit_depth=bit_depth, modality=modality,
                  latents=(LatentInfo((channels, height, width), NO_TABLE),))


def _header_problem(h: Header) -> str | None:
    """The first thing wrong with a header, as a phrase, or None."""
    if not isinstance(h.codec, str) or not _CODEC_RE.fullmatch(h.codec):
        return f"codec id {h.codec!r} must be 1-{MAX_NAME} printable ASCII characters without spaces"
    if not isinstance(h.model_name, str) or not _NAME_RE.fullmatch(h.model_name):
        return f"model name {h.model_name!r} must be 1-{MAX_NAME} printable ASCII characters"
    if not isinstance(h.model_hash, bytes) or len(h.model_hash) != 32:
        return "model hash must be 32 bytes (SHA-256)"
    for name, value in (("height", h.height), ("width", h.width)):
        if not 1 <= value <= MAX_SIDE:
            return f"image {name} {value} is outside 1..{MAX_SIDE}"
    if not 1 <= h.channels <= MAX_IMAGE_CHANNELS:
        return f"image has {h.channels} channels, the limit is {MAX_IMAGE_CHANNELS}"
    if h.bit_depth not in BIT_DEPTHS:
        return f"bit depth {h.bit_depth} is not 8 or 16"
    if h.scale not in SCALES:
        return f"coding scale {h.scale} is not one of {list(SCALES)}"
    if h.modality not in MODALITIES.values():
        return f"modality {h.modality!r} is not one of {sorted(MODALITIES.values())}"
    if h.codec in CLASSICAL_CODECS:  # one opaque codestream: its record only restates the image
        image = (h.channels, h.height, h.width)
        if len(h.latents) != 1 or h.latents[0].shape != image or h.latents[0].table_id != NO_TABLE:
            return (f"a {h.codec} stream has one payload record of shape {image} and table id {NO_TABLE}, "
                    f"got {[(lat.shape, lat.table_id) for lat in h.latents]}")
        if h.scale != 1:
            return f"a {h.codec} stream codes the image at full size, got coding scale {h.scale}"
        return None
    if not 1 <= len(h.latents) <= MAX_LATENTS:
        return f"{len(h.latents)} latent tensors is outside 1..{MAX_LATENTS}"
    total = 0
    for i, lat in enumerate(h.latents):
        if len(lat.shape) != 3 or any(d < 1 for d in lat.shape):
            return f"latent {i} shape {lat.shape} is not three positive sizes (C, H, W)"
        if lat.shape[0] > MAX_LATENT_CHANNELS:
            return f"latent {i} has {lat.shape[0]} channels, the limit is {MAX_LATENT_CHANNELS}"
        if max(lat.shape[1:]) > MAX_SIDE:
            return f"latent {i} shape {lat.shape} has a side above the limit of {MAX_SIDE}"
        total += lat.elements
        if total > MAX_LATENT_ELEMENTS:
            return f"latents hold {total} elements or more, the limit is {MAX_LATENT_ELEMENTS} (2**26)"
        if not isinstance(lat.table_id, str) or not _TABLE_ID_RE.fullmatch(lat.table_id):
            return f"latent {i} table id {lat.table_id!r} is not 16 lowercase hex digits"
    return None


def _chunk_lengths(payload_bytes: int) -> list[int]:
    full, rest = divmod(payload_bytes, CHUNK_SIZE)
    return [CHUNK_SIZE] * full + ([rest] if rest else [])


def _chunk_crc(index: int, data: bytes | memoryview) -> int:
    return zlib.crc32(data, zlib.crc32(struct.pack("<I", index)))


# --- encoding ---------------------------------------------------------------------------


def encode_stream(header: Header, payloads: Sequence[bytes]) -> bytes:
    """Serialise a header and one payload per latent (in ``header.latents`` order); a classical
    header takes its codestream, whose SHA-256 must be ``header.model_hash``."""
    if len(payloads) != len(header.latents):
        raise ValueError(f"{len(payloads)} payloads for {len(header.latents)} latent tensors")
    sizes = [len(p) for p in payloads]
    if sum(sizes) > MAX_PAYLOAD:
        raise ValueError(f"payloads total {sum(sizes)} bytes, the limit is {MAX_PAYLOAD}")
    if header.classical and hashlib.sha256(payloads[0]).digest() != header.model_hash:
        raise ValueError("a classical header's hash must be the SHA-256 of its codestream")
    n_chunks = sum(len(_chunk_lengths(s)) for s in sizes)
    codec, name = header.codec.encode("ascii"), header.model_name.encode("ascii")
    body = [bytes([len(codec)]), codec, bytes([len(name)]), name, header.model_hash,
            _IMAGE.pack(header.height, header.width, header.channels, header.bit_depth,
                        _modality_code(header.modality), len(header.latents))]
    version = 1 if header.scale == 1 else 2  # readers of version 1 still read every full-scale stream
    if version == 2:
        body.append(_SCALE.pack(header.scale))
    for lat, size in zip(header.latents, sizes, strict=True):
        body.append(_LATENT.pack(*lat.shape, bytes.fromhex(lat.table_id), size))
    body.append(struct.pack("<I", n_chunks))
    body_bytes = b"".join(body)
    head = _PREAMBLE.pack(MAGIC, version, len(body_bytes)) + body_bytes
    out = [head, _CRC.pack(zlib.crc32(head))]
    index = 0
    for payload in payloads:
        view = memoryview(payload)
        for start in range(0, len(view), CHUNK_SIZE):
            piece = view[start:start + CHUNK_SIZE]
            out += [_CHUNK.pack(len(piece), _chunk_crc(index, piece)), bytes(piece)]
            index += 1
    return b"".join(out)


def _modality_code(modality: str) -> int:
    return next(code for code, name in MODALITIES.items() if name == modality)


# --- decoding ---------------------------------------------------------------------------


class _Reader:
    """Bounds-checked reads from the header body; running out is an InputError."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.pos, self.source = data, 0, source

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise InputError(self.source, f"header is too short for its {what}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, st: struct.Struct, what: str) -> tuple:
        return st.unpack(self.take(st.size, what))


def decode_header(data: bytes, *, source: str = BITSTREAM) -> tuple[Header, list[int], int]:
    """Parse and check the header; returns it, each latent's payload size and the payload offset.

    Only the header is read: the payload may be absent (a partial download).
    """
    data = memoryview(data)
    if not data:
        raise InputError(source, "empty, not an .ert bitstream")
    if len(data) < len(MAGIC):
        if bytes(data) == MAGIC[:len(data)]:
            raise InputError(source, f"truncated .ert stream ({len(data)} bytes)")
        raise InputError(source, "not an .ert bitstream (too short for the magic bytes)")
    if bytes(data[:len(MAGIC)]) != MAGIC:
        raise InputError(source, f"not an .ert bitstream (starts with {bytes(data[:8]).hex()}, "
                                 f"expected {MAGIC.hex()})")
    if len(data) < _PREAMBLE.size:
        raise InputError(source, f"truncated .ert stream ({len(data)} bytes, header incomplete)")
    _, version, body_len = _PREAMBLE.unpack_from(data)
    if version not in READ_VERSIONS:
        raise InputError(source, f"unsupported .ert format version {version} "
                                 f"(this edgeret reads versions {', '.join(map(str, READ_VERSIONS))})")
    if not _MIN_BODY <= body_len <= _MAX_BODY:
        raise InputError(source, f"header declares {body_len} bytes, outside {_MIN_BODY}..{_MAX_BODY}")
    end = _PREAMBLE.size + body_len
    if len(data) < end + _CRC.size:
        raise InputError(source, f"truncated .ert stream ({len(data)} bytes, the header "
                                 f"alone needs {end + _CRC.size})")
    (crc,) = _CRC.unpack_from(data, end)
    if zlib.crc32(data[:end]) != crc:
        raise InputError(source, "header CRC32 mismatch (the header is corrupt)")
    r = _Reader(bytes(data[_PREAMBLE.size:end]), source)
    codec = _read_name(r, "codec id")
    model_name = _read_name(r, "model name")
    model_hash = r.take(32, "model hash")
    height, width, channels, bit_depth, modality, n_latents = r.unpack(_IMAGE, "image fields")
    (scale,) = r.unpack(_SCALE, "coding scale") if version >= 2 else (1,)
    if modality not in MODALITIES:
        raise InputError(source, f"unknown modality code {modality} (known: "
                                 f"{', '.join(f'{k}={v}' for k, v in MODALITIES.items())})")
    if not 1 <= n_latents <= MAX_LATENTS:
        raise InputError(source, f"header declares {n_latents} latent tensors, outside 1..{MAX_LATENTS}")
    latents, sizes = [], []
    for i in range(n_latents):
        c, h, w, table_id, size = r.unpack(_LATENT, f"latent {i}")
        latents.append(LatentInfo((c, h, w), table_id.hex()))
        sizes.append(size)
    (n_chunks,) = r.unpack(struct.Struct("<I"), "chunk count")
    if r.pos != len(r.data):
        raise InputError(source, f"header has {len(r.data) - r.pos} unexpected trailing bytes")
    try:  # checks every bound; nothing has been allocated from the declared sizes yet
        header = Header(codec=codec, model_name=model_name, model_hash=model_hash, height=height,
                        width=width, channels=channels, bit_depth=bit_depth,
                        modality=MODALITIES[modality], latents=tuple(latents), scale=scale)
    except ValueError as e:
        raise InputError(source, str(e).removeprefix("invalid .ert header: ")) from None
    if header.classical and sizes[0] == 0:
        raise InputError(source, f"the {codec} codestream is empty")
    if n_chunks > MAX_CHUNKS:
        raise InputError(source, f"header declares {n_chunks} chunks, the limit is {MAX_CHUNKS}")
    total = sum(sizes)
    if total > MAX_PAYLOAD:
        raise InputError(source, f"header declares {total} payload bytes, the limit is {MAX_PAYLOAD}")
    expected_chunks = sum(len(_chunk_lengths(s)) for s in sizes)
    if n_chunks != expected_chunks:
        raise InputError(source, f"header declares {n_chunks} chunks, its payload sizes need "
                                 f"{expected_chunks}")
    offset = end + _CRC.size
    return header, sizes, offset


def _read_name(r: _Reader, what: str) -> str:
    (n,) = r.take(1, f"{what} length")
    raw = r.take(n, what)
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise InputError(r.source, f"{what} is not ASCII") from None


def check_model(header: Header, expect: ModelIdentity, *, source: str = BITSTREAM) -> None:
    """Raise :class:`BitstreamModelMismatch` unless the stream was written by ``expect``."""
    if header.model_hash != expect.sha256:
        raise BitstreamModelMismatch(source, header.model, expect)


def decode_stream(data: bytes, *, source: str = BITSTREAM,
                  expect: ModelIdentity | None = None) -> tuple[Header, list[bytes]]:
    """Inverse of :func:`encode_stream`: the header and one payload per latent.

    With ``expect``, a stream from another model raises
    :class:`BitstreamModelMismatch` (checked right after the header CRC).
    """
    header, sizes, pos = decode_header(data, source=source)
    if expect is not None:
        check_model(header, expect, source=source)
    data = memoryview(data)
    lengths = [_chunk_lengths(s) for s in sizes]
    need = sum(sizes) + _CHUNK.size * sum(len(ls) for ls in lengths)
    if len(data) - pos < need:
        raise InputError(source, f"truncated .ert stream: the header declares {need} bytes of "
                                 f"chunks, {len(data) - pos} are present")
    if len(data) - pos > need:
        raise InputError(source, f"{len(data) - pos - need} unexpected bytes after the last chunk")
    payloads, index = [], 0
    for lat_lengths in lengths:
        parts = []
        for want in lat_lengths:
            length, crc = _CHUNK.unpack_from(data, pos)
            pos += _CHUNK.size
            if length != want:
                raise InputError(source, f"chunk {index} declares {length} bytes, expected {want}")
            piece = data[pos:pos + length]
            if _chunk_crc(index, piece) != crc:
                raise InputError(source, f"chunk {index} CRC32 mismatch (the payload is corrupt)")
            parts.append(piece)
            pos += length
            index += 1
        payloads.append(b"".join(parts))
    if header.classical and hashlib.sha256(payloads[0]).digest() != header.model_hash:
        # the chunk CRCs passed, so this is a stream assembled wrongly, not line noise
        raise InputError(source, "codestream SHA-256 does not match the header's")
    return header, payloads


# --- files ------------------------------------------------------------------------------


def write_ert(path: str | Path, header: Header, payloads: Sequence[bytes]) -> Path:
    """Write a stream atomically: temp file in the target folder, fsync, os.replace."""
    p = Path(path)
    data = encode_stream(header, payloads)
    return write_bytes_atomic(p, data)


def read_ert(path: str | Path, *, expect: ModelIdentity | None = None) -> tuple[Header, list[bytes]]:
    """Read and check a ``.ert`` file; see :func:`decode_stream`."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if p.is_dir():
            raise InputError(p, "is a folder, expected an .ert file")
        if size > MAX_STREAM:
            raise InputError(p, f"file is {size} bytes, larger than any .ert stream "
                                f"(limit {MAX_STREAM})")
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(p, "no such file") from None
    except OSError as e:
        raise InputError(p, f"cannot read file ({e.strerror})") from None
    return decode_stream(data, source=str(p), expect=expect)
