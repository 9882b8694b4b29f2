"""Entropy coding of integer symbol arrays with integer probability tables.

The learned codec quantizes its latents to integers; this module turns those
integers into bytes and back. The probability model is an :class:`IntegerTable`
(:mod:`edgeret.codec.ert.tables`): per-channel *integer* CDFs at a fixed precision
(16 bits by default), built once at export time and shipped with the model. Encoder and decoder use the same
integers, never floats recomputed at decode time, so a stream written on one
machine decodes to exactly the same symbols on any other machine (the failure
described in CompressAI issues 279 and 309 cannot happen).

Coder: ``constriction``'s ``AnsCoder`` (rANS, 32-bit words, 64-bit state,
24-bit probability precision). Its Python API only takes float probabilities,
so each integer table is handed over in a form that its fast quantizer maps back
to exactly our integers (see :func:`_constriction_weights`); a pure-Python
reference coder (:func:`reference_encode`, :func:`reference_decode`) specifies
the bit format independently and is checked against ``constriction`` once per
process (:func:`self_check`) and by the tests.

Symbols outside a table's range are rejected (``clip=True`` clips them to the
range instead); there is no escape code.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

from edgeret.codec.ert.tables import CODER_PRECISION, DEFAULT_PRECISION, IntegerTable
from edgeret.errors import EdgeretError, InputError, one_line

MAX_SYMBOLS = 1 << 26  # per decode_symbols call; bounds memory before allocation
BITSTREAM = "<bitstream>"

__all__ = ["DEFAULT_PRECISION", "IntegerTable", "decode_symbols", "encode_symbols", "reference_decode",
           "reference_encode", "self_check"]


# --- the coder -------------------------------------------------------------------------


def _constriction_weights(cdf_row: np.ndarray, precision: int) -> np.ndarray:
    """Float weights that constriction quantizes back to exactly our integer CDF.

    ``Categorical(w, perfect=False)`` sets, for the K symbols at 24-bit precision,
    ``left[i] = floor(sum(w[:i]) * (2**24 - K) / sum(w)) + i``. With
    ``w[i] = f[i] * 2**(24 - precision) - 1`` (non-negative integers below 2**24,
    exact in float64, all partial sums exact) ``sum(w) = 2**24 - K``, the scale is
    exactly 1 and ``left[i] = cdf[i] * 2**(24 - precision)``: our table, scaled
    by a power of two. No rounding happens anywhere.
    """
    f = np.diff(cdf_row.astype(np.int64))
    return (f * (1 << (CODER_PRECISION - precision)) - 1).astype(np.float64)


def _models(table: IntegerTable, channels: int) -> list:
    import constriction

    cat = constriction.stream.model.Categorical
    rows = range(1) if table.channels == 1 else range(channels)
    models = [cat(_constriction_weights(table.row(c), table.precision), perfect=False) for c in rows]
    return models * channels if table.channels == 1 else models


def _check_table_for(shape: tuple[int, ...], table: IntegerTable) -> None:
    if len(shape) < 1:
        raise ValueError("symbols need a leading channel axis, got a scalar")
    if table.channels not in (1, shape[0]):
        raise ValueError(f"symbols have {shape[0]} channels, the entropy table {table.table_id} "
                         f"has {table.channels}")


def encode_symbols(symbols: np.ndarray, table: IntegerTable, *, clip: bool = False) -> bytes:
    """Entropy-code an integer array (C, ...) with ``table`` (row c for channel c).

    Returns the coder's 32-bit words as little-endian bytes (empty when every
    symbol is the table's ``min_symbol``: rANS then never leaves its initial
    state). Symbols outside ``[min_symbol, max_symbol]`` raise ``ValueError``
    unless ``clip=True``, which clips them to the range.
    """
    self_check()
    s = np.asarray(symbols)
    if not np.issubdtype(s.dtype, np.integer):
        raise ValueError(f"symbols must be integers, got {s.dtype}")
    _check_table_for(s.shape, table)
    if s.size > MAX_SYMBOLS:
        raise ValueError(f"{s.size} symbols exceed the limit of {MAX_SYMBOLS} per call")
    if s.size == 0:
        return b""
    c = s.shape[0]
    flat = s.reshape(c, -1).astype(np.int64)
    lo, hi = table.min_symbol, table.max_symbol
    if clip:
        flat = np.clip(flat, lo, hi)
    else:
        bad = (flat < lo) | (flat > hi)
        if bad.any():
            ch, pos = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(f"symbol {int(flat[ch, pos])} at channel {ch}, position {pos} is outside "
                             f"the entropy table's range [{lo}, {hi}] ({int(bad.sum())} symbols out "
                             "of range); clip the latent or pass clip=True")
    idx = (flat - lo).astype(np.int32)
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    models = _models(table, c)
    for ch in range(c - 1, -1, -1):  # a stack: push the last channel first
        coder.encode_reverse(idx[ch], models[ch])
    return coder.get_compressed().astype("<u4").tobytes()


def decode_symbols(data: bytes, shape: Sequence[int], table: IntegerTable, *,
                   source: str = BITSTREAM) -> np.ndarray:
    """Exact inverse of :func:`encode_symbols`; returns int32 of ``shape``.

    Decodes exactly ``prod(shape)`` symbols (at most 2**26), then requires the
    coder to be back in its initial state with every word consumed. Data that
    is not a valid encoding raises :class:`InputError` naming ``source``.
    """
    self_check()
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise InputError(source, f"latent shape {shape} has a negative dimension")
    n = math.prod(shape)
    if n > MAX_SYMBOLS:
        raise InputError(source, f"latent shape {shape} declares {n} symbols, more than the "
                                 f"limit of {MAX_SYMBOLS}")
    try:
        _check_table_for(shape, table)
    except ValueError as e:
        raise InputError(source, str(e)) from None
    data = bytes(data)
    if len(data) % 4:
        raise InputError(source, f"entropy-coded data is {len(data)} bytes, not a whole number "
                                 "of 32-bit words")
    # Each symbol costs at most `precision` bits; the final state adds at most 64.
    max_bytes = (n * table.precision + 64 + 31) // 32 * 4
    if len(data) > max_bytes:
        raise InputError(source, f"entropy-coded data is {len(data)} bytes, more than {n} symbols "
                                 f"can produce ({max_bytes} bytes at most)")
    if n == 0:
        if data:
            raise InputError(source, f"entropy-coded data is {len(data)} bytes for an empty latent")
        return np.zeros(shape, dtype=np.int32)
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    if words.size and words[-1] == 0:
        raise InputError(source, "entropy-coded data is corrupt (it ends in a zero word)")
    import constriction

    c = shape[0]
    per = n // c
    out = np.empty((c, per), dtype=np.int32)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        models = _models(table, c)
        for ch in range(c):
            out[ch] = coder.decode(models[ch], per)
        leftover = not coder.is_empty()
    except (ValueError, RuntimeError, OverflowError) as e:  # constriction's errors
        raise InputError(source, f"entropy-coded data is corrupt ({one_line(e)})") from None
    if leftover:
        raise InputError(source, f"entropy-coded data is corrupt (decoding {n} symbols did not "
                                 f"consume its {len(data)} bytes exactly)")
    out += np.int32(table.min_symbol)
    return out.reshape(shape)


# --- the format, specified without constriction ---------------------------------------

_MASK24 = (1 << CODER_PRECISION) - 1


def reference_encode(symbols: Sequence[int], cdfs: Sequence[Sequence[int]], precision: int) -> bytes:
    """Pure-Python rANS encoder producing the same bytes as :func:`encode_symbols`.

    ``symbols[i]`` is a 0-based symbol index coded with CDF ``cdfs[i]`` (at
    ``precision`` bits). Slow; this is the normative description of the format.
    """
    shift = CODER_PRECISION - precision
    state, words = 0, []
    for s, cdf in zip(reversed(symbols), reversed(cdfs), strict=True):
        lo, f = cdf[s] << shift, (cdf[s + 1] - cdf[s]) << shift
        if (state >> (64 - CODER_PRECISION)) >= f:
            words.append(state & 0xFFFFFFFF)
            state >>= 32
        state = ((state // f) << CODER_PRECISION) | (lo + state % f)
    if state >> 32:
        words += [state & 0xFFFFFFFF, state >> 32]
    elif state:
        words.append(state)
    return struct.pack(f"<{len(words)}I", *words)


def reference_decode(data: bytes, cdfs: Sequence[Sequence[int]], precision: int) -> list[int]:
    """Pure-Python inverse of :func:`reference_encode` (raises ValueError if invalid)."""
    shift = CODER_PRECISION - precision
    words = list(struct.unpack(f"<{len(data) // 4}I", data))
    if words and words[-1] == 0:
        raise ValueError("data ends in a zero word")
    state = 0
    if words:
        state = words.pop()
        if words:
            state = (state << 32) | words.pop()
    out = []
    for cdf in cdfs:
        q = state & _MASK24
        s = int(np.searchsorted(np.asarray(cdf) << shift, q, side="right")) - 1
        lo, f = cdf[s] << shift, (cdf[s + 1] - cdf[s]) << shift
        state = (state >> CODER_PRECISION) * f + (q - lo)
        if state < (1 << 32) and words:
            state = (state << 32) | words.pop()
        out.append(s)
    if state or words:
        raise ValueError("data not consumed exactly")
    return out


_SELF_CHECKED = False


def self_check() -> None:
    """Once per process: constriction must produce the reference format bit for bit.

    Guards against a constriction release that quantizes float weights
    differently, which would silently make streams unreadable elsewhere.
    """
    global _SELF_CHECKED
    if _SELF_CHECKED:
        return
    try:
        import constriction
    except ImportError as e:  # pragma: no cover - constriction is a runtime dependency
        raise EdgeretError(f"entropy coding needs the 'constriction' package ({e})") from None
    table = IntegerTable.from_freqs(np.array([[40000, 20000, 4000, 1000, 500, 35, 1],
                                              [1, 2, 3, 4, 5, 6, 65515]]), min_symbol=-3)
    rng = np.random.default_rng(20240607)
    idx = rng.integers(0, 7, size=(2, 40)).astype(np.int32)
    coder = constriction.stream.stack.AnsCoder()
    models = _models(table, 2)
    for ch in (1, 0):
        coder.encode_reverse(idx[ch], models[ch])
    got = coder.get_compressed().astype("<u4").tobytes()
    cdfs = [table.row(0).tolist()] * 40 + [table.row(1).tolist()] * 40
    want = reference_encode(idx.ravel().tolist(), cdfs, table.precision)
    if got != want:
        raise EdgeretError(f"constriction {getattr(constriction, '__version__', '?')} does not "
                           "produce the .ert entropy-coding format; install a compatible version")
    _SELF_CHECKED = True
