"""JPEG XL inside ``.ert``: code an image into a byte budget, and decode a codestream safely.

The learned codec loses to JPEG XL on some real photographs (issue 22), so the
camera may send a JPEG XL codestream instead (:mod:`edgeret.codec.choice`
decides). The codestream travels as the one opaque payload of a version-3
``.ert`` stream (:mod:`edgeret.codec.ert.container`, :func:`~edgeret.codec.ert.container.classical_header`):
same preamble, header CRC and chunks as a learned stream.

``imagecodecs`` (libjxl) is an optional dependency (the ``fallback`` extra: its
wheel bundles ~90 codecs, 26 MB, 80 MB installed); :func:`unavailable_reason`
says why JPEG XL cannot be used here, and callers degrade to the learned codec.

Decoding never trusts the codestream: its own size header is parsed (a few
bits, no allocation) and must match the ``.ert`` header before libjxl decodes
it, so a small stream cannot make the hub allocate a huge image.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from edgeret.codec.ert.container import Header, classical_header, encode_stream
from edgeret.errors import EdgeretError, InputError

JXL = "jxl"
# libjxl effort 7 is its default; the search encodes several times, so a lower effort buys device time.
# Effort 5 costs ~2-4x less time than 7 and, on real colour photographs, scores as well in the same bytes;
# on B-scans effort 7 scores higher (benchmarks/codec-fallback.md, the independent check), and a grey
# image is a third of the work, so OCT gets 7.
EFFORT = 5
EFFORTS = {"fundus": 5, "oct": 7}
MAX_TRIES = 8  # encodes per capture while fitting the budget
MIN_DISTANCE, MAX_DISTANCE = 0.05, 25.0  # libjxl's lossy range (butteraugli distance)
FILL = 0.97  # a fit using at least this share of the budget ends the search early
INSTALL_HINT = "pip install 'edgeret[fallback]'"


def unavailable_reason() -> str | None:
    """Why JPEG XL cannot be coded or decoded here, or None when it can."""
    try:
        import imagecodecs
    except ImportError:
        return f"imagecodecs is not installed ({INSTALL_HINT})"
    if not getattr(imagecodecs.JPEGXL, "available", False):
        return "this imagecodecs build has no JPEG XL codec"
    return None


def _imagecodecs():
    reason = unavailable_reason()
    if reason:
        raise EdgeretError(f"JPEG XL unavailable: {reason}")
    import imagecodecs

    return imagecodecs


def encoder_name() -> str:
    """The encoder library and version written into the header's name field, e.g. 'libjxl 0.11.2'."""
    return _imagecodecs().jpegxl_version()[:64]


@dataclass
class ClassicalEncoded:
    header: Header
    payload: bytes  # the codestream
    distance: float
    tries: int  # encodes spent fitting the budget
    seconds: float

    @property
    def stream(self) -> bytes:
        return encode_stream(self.header, [self.payload])


def jxl_header(image: np.ndarray, modality: str, codestream: bytes) -> Header:
    """The ``.ert`` header of a JPEG XL codestream of ``image`` (uint8/uint16, HxW or HxWx3)."""
    return classical_header(JXL, encoder_name(), codestream, height=image.shape[0], width=image.shape[1],
                            channels=1 if image.ndim == 2 else image.shape[2],
                            bit_depth=8 if image.dtype == np.uint8 else 16, modality=modality)


def encode_jxl(image: np.ndarray, modality: str, distance: float, effort: int = EFFORT,
               threads: int = 1) -> ClassicalEncoded:
    """One JPEG XL encode at a butteraugli ``distance``."""
    ic = _imagecodecs()
    start = time.perf_counter()
    payload = bytes(ic.jpegxl_encode(np.ascontiguousarray(image), distance=float(distance), effort=effort,
                                     numthreads=threads))
    return ClassicalEncoded(jxl_header(image, modality, payload), payload, float(distance), 1,
                            time.perf_counter() - start)


def fit_jxl(image: np.ndarray, modality: str, max_bytes: int, *, effort: int | None = None,
            max_tries: int = MAX_TRIES, threads: int = 1) -> ClassicalEncoded | None:
    """The best JPEG XL ``.ert`` stream of at most ``max_bytes`` bytes, or None if none fits.

    Bytes fall with the distance roughly as a power law, so the search steps in log-distance along
    the secant through the two nearest tries (bisection when that misbehaves); the smallest distance
    whose whole stream fits is kept."""
    effort = EFFORTS.get(modality, EFFORT) if effort is None else effort
    start = time.perf_counter()
    fits: tuple[float, ClassicalEncoded] | None = None  # the smallest fitting distance so far
    over: tuple[float, int] | None = None  # the largest distance that did not fit, and its bytes
    distance, tries = 1.0, 0
    while tries < max_tries:
        tries += 1
        enc = encode_jxl(image, modality, distance, effort, threads)
        size = len(enc.stream)
        if size <= max_bytes:
            if fits is None or distance < fits[0]:
                fits = (distance, enc)
            if size >= FILL * max_bytes or distance <= MIN_DISTANCE:
                break
        else:
            if over is None or distance > over[0]:
                over = (distance, size)
            if distance >= MAX_DISTANCE:
                break  # even the coarsest JPEG XL is larger than the budget
        distance = _next_distance(distance, size, max_bytes, fits, over)
        if distance is None:
            break
    if fits is None:
        return None
    best = fits[1]
    best.tries, best.seconds = tries, time.perf_counter() - start
    return best


def _next_distance(distance: float, size: int, budget: int, fits, over) -> float | None:
    target = FILL ** 0.5 * budget  # aim inside the accepted band, not at its edge
    lo = over[0] if over else MIN_DISTANCE  # distances below lo are known (or assumed) too large
    hi = fits[0] if fits else MAX_DISTANCE
    if hi / lo < 1.01:
        return None  # bracketed as tightly as the rate control can resolve
    guess = distance * (size / target) ** 1.2  # bytes ~ distance**-0.8 on photographs
    if fits and over:  # secant in log-log between the two bracketing tries
        (d0, b0), (d1, b1) = (over[0], over[1]), (fits[0], len(fits[1].stream))
        if b0 > b1 and d1 > d0:
            slope = (math.log(b1) - math.log(b0)) / (math.log(d1) - math.log(d0))
            guess = math.exp(math.log(d0) + (math.log(target) - math.log(b0)) / slope)
    if guess >= hi and fits is None:
        guess = MAX_DISTANCE  # the coarsest try settles at once whether anything fits
    elif guess <= lo and over is None:
        guess = MIN_DISTANCE
    elif not lo < guess < hi:
        guess = math.sqrt(lo * hi)
    return min(max(guess, MIN_DISTANCE), MAX_DISTANCE)


# --- decoding ---------------------------------------------------------------------------------------


class _Bits:
    """LSB-first bit reader (JPEG XL's bit order)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u(self, n: int) -> int:
        value = 0
        for i in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise ValueError("codestream ends inside its size header")
            value |= ((self.data[byte] >> (self.pos & 7)) & 1) << i
            self.pos += 1
        return value

    def size(self) -> int:
        """U32(Bits(9), Bits(13), Bits(18), Bits(30)) + 1: a 2-bit selector, then that many bits."""
        return self.u((9, 13, 18, 30)[self.u(2)]) + 1


_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


def jxl_size(codestream: bytes) -> tuple[int, int]:
    """(height, width) from a bare JPEG XL codestream's SizeHeader (ISO/IEC 18181-1, A.3.1)."""
    if codestream[:2] != b"\xff\x0a":
        raise ValueError("not a bare JPEG XL codestream (no FF 0A signature)")
    bits = _Bits(codestream[2:16])
    small = bits.u(1)  # both sides are multiples of 8 up to 256, five bits each

    def side() -> int:
        return 8 * (bits.u(5) + 1) if small else bits.size()

    height = side()
    ratio = bits.u(3)  # 0: the width follows; else a fixed aspect ratio
    if ratio:
        num, den = _RATIOS[ratio]
        return height, height * num // den
    return height, side()


def decode_classical(header: Header, payload: bytes, *, source: str = "<bitstream>") -> np.ndarray:
    """The image a classical stream's codestream decodes to, checked against its header."""
    if header.codec != JXL:
        raise InputError(source, f"classical codec '{header.codec}' has no decoder here")
    try:
        size = jxl_size(payload)
    except ValueError as exc:
        raise InputError(source, f"JPEG XL codestream: {exc}") from None
    if size != (header.height, header.width):  # before libjxl allocates what the codestream declares
        raise InputError(source, f"JPEG XL codestream is {size[1]}x{size[0]}, the header says "
                                 f"{header.width}x{header.height}")
    ic = _imagecodecs()
    try:
        image = ic.jpegxl_decode(payload, numthreads=1)
    except Exception as exc:  # libjxl's errors (JpegxlError) name the failing call
        raise InputError(source, f"JPEG XL codestream does not decode ({exc})") from None
    channels = 1 if image.ndim == 2 else image.shape[2]
    want = np.uint8 if header.bit_depth == 8 else np.uint16
    if image.shape[:2] != (header.height, header.width) or channels != header.channels or image.dtype != want:
        raise InputError(source, f"JPEG XL codestream decodes to {image.shape} {image.dtype}, the header "
                                 f"says {header.height}x{header.width}x{header.channels} "
                                 f"{header.bit_depth}-bit")
    return image
