"""Entropy coding of integer symbol arrays with integer probability tables.

The learned codec quantizes its latents to integers; this module turns those
integers into bytes and back. The probability model is an :class:`IntegerTable`:
per-channel *integer* CDFs at a fixed precision (16 bits by default), built once
at export time and shipped with the model. Encoder and decoder use the same
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

import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edgeret.errors import EdgeretError, InputError

DEFAULT_PRECISION = 16
CODER_PRECISION = 24  # constriction's DefaultAnsCoder / Categorical precision
MAX_CHANNELS = 65536
MAX_LEVELS = 65536
MAX_TABLE_ENTRIES = 1 << 24
MAX_SYMBOLS = 1 << 26  # per decode_symbols call; bounds memory before allocation
BITSTREAM = "<bitstream>"

_TABLE_MAGIC = b"ERTT"
_TABLE_VERSION = 1
_TABLE_HEAD = struct.Struct("<4sBBHIIi")  # magic, version, precision, reserved, C, K, min_symbol


@dataclass(frozen=True, eq=False)
class IntegerTable:
    """Per-channel quantized CDFs for integer symbols in ``[min_symbol, max_symbol]``.

    ``cdf`` has shape ``(C, K + 1)`` and dtype uint32, with ``cdf[c, 0] == 0``,
    ``cdf[c, K] == 2**precision`` and every step ``cdf[c, k+1] - cdf[c, k] >= 1``
    (every symbol is encodable). Channel ``c`` of a symbol array is coded with
    row ``c``; a one-row table applies to every channel.
    """

    cdf: np.ndarray
    min_symbol: int = 0
    precision: int = DEFAULT_PRECISION
    _sha: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cdf = np.asarray(self.cdf)
        _validate_cdf(cdf, self.min_symbol, self.precision, where="IntegerTable")
        cdf = np.ascontiguousarray(cdf, dtype=np.uint32)
        cdf.setflags(write=False)
        object.__setattr__(self, "cdf", cdf)
        object.__setattr__(self, "min_symbol", int(self.min_symbol))
        object.__setattr__(self, "precision", int(self.precision))
        object.__setattr__(self, "_sha", hashlib.sha256(self.to_bytes()).digest())

    # --- shape and identity --------------------------------------------------------

    @property
    def channels(self) -> int:
        return int(self.cdf.shape[0])

    @property
    def levels(self) -> int:
        """Number of symbols K per channel."""
        return int(self.cdf.shape[1] - 1)

    @property
    def max_symbol(self) -> int:
        return self.min_symbol + self.levels - 1

    @property
    def freqs(self) -> np.ndarray:
        """Integer frequencies (C, K), each >= 1, each row summing to 2**precision."""
        return np.diff(self.cdf.astype(np.int64), axis=1)

    @property
    def sha256(self) -> bytes:
        """SHA-256 over :meth:`to_bytes`, i.e. over the exact integer content."""
        return self._sha

    @property
    def table_id(self) -> str:
        """First 8 bytes of :attr:`sha256` as 16 hex digits (what a bitstream names)."""
        return self._sha[:8].hex()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IntegerTable) and self._sha == other._sha

    def __hash__(self) -> int:
        return hash(self._sha)

    # --- construction --------------------------------------------------------------

    @classmethod
    def from_probabilities(cls, probs: np.ndarray | Sequence[Sequence[float]], *,
                           min_symbol: int = 0, precision: int = DEFAULT_PRECISION) -> IntegerTable:
        """Quantize float probabilities (C, K) (or (K,)) to an integer table.

        Rows need not be normalised. Each symbol first gets frequency 1; the
        remaining ``2**precision - K`` counts are shared in proportion to the
        probabilities, rounding down, and the counts lost to rounding go to the
        symbols with the largest remainders (ties to the lower symbol). The result
        is deterministic for given float64 input; it is computed once at export
        time and the integers are shipped, so decoders never repeat it.
        """
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim == 1:
            p = p[None, :]
        if p.ndim != 2:
            raise ValueError(f"probabilities must have shape (C, K) or (K,), got {p.shape}")
        c, k = p.shape
        _check_sizes(c, k, precision, ValueError)
        if not np.all(np.isfinite(p)) or np.any(p < 0):
            raise ValueError("probabilities must be finite and non-negative")
        totals = p.sum(axis=1, keepdims=True)
        if np.any(totals <= 0):
            bad = int(np.flatnonzero(totals[:, 0] <= 0)[0])
            raise ValueError(f"channel {bad}: probabilities sum to 0")
        free = (1 << precision) - k
        share = p / totals * free
        base = np.floor(share).astype(np.int64)
        rem = share - base
        left = free - base.sum(axis=1)  # 0 <= left < K per row
        # stable argsort on -rem: largest remainder first, ties to the lower index
        order = np.argsort(-rem, axis=1, kind="stable")
        bonus = np.zeros_like(base)
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(k)[None, :].repeat(c, axis=0), axis=1)
        bonus[ranks < left[:, None]] = 1
        freqs = base + bonus + 1
        return cls.from_freqs(freqs, min_symbol=min_symbol, precision=precision)

    @classmethod
    def from_freqs(cls, freqs: np.ndarray, *, min_symbol: int = 0,
                   precision: int = DEFAULT_PRECISION) -> IntegerTable:
        """Build from integer frequencies (C, K), each >= 1, rows summing to 2**precision."""
        f = np.asarray(freqs)
        if f.ndim == 1:
            f = f[None, :]
        if f.ndim != 2 or not np.issubdtype(f.dtype, np.integer):
            raise ValueError(f"freqs must be an integer array (C, K), got {f.dtype} {f.shape}")
        f = f.astype(np.int64)
        cdf = np.zeros((f.shape[0], f.shape[1] + 1), dtype=np.int64)
        np.cumsum(f, axis=1, out=cdf[:, 1:])
        if np.any(f < 1):
            raise ValueError("every frequency must be >= 1")
        return cls(cdf, min_symbol=min_symbol, precision=precision)

    @classmethod
    def uniform(cls, levels: int = 7, *, channels: int = 1, min_symbol: int | None = None,
                precision: int = DEFAULT_PRECISION) -> IntegerTable:
        """Table for an L-level scalar quantizer without a learned prior.

        Symbols default to ``-(L // 2) .. L - 1 - L // 2`` (L = 7: -3..3). Each of
        the L symbols gets ``2**precision // L`` counts and the first
        ``2**precision % L`` symbols one more.
        """
        _check_sizes(channels, levels, precision, ValueError)
        if min_symbol is None:
            min_symbol = -(levels // 2)
        total = 1 << precision
        f = np.full(levels, total // levels, dtype=np.int64)
        f[: total % levels] += 1
        return cls.from_freqs(np.tile(f, (channels, 1)), min_symbol=min_symbol, precision=precision)

    # --- serialisation -------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Canonical little-endian form; :attr:`sha256` is taken over these bytes.

        ``"ERTT"``, u8 version (1), u8 precision, u16 reserved (0), u32 C, u32 K,
        i32 min_symbol, then the C x (K+1) CDF as u32, row-major.
        """
        head = _TABLE_HEAD.pack(_TABLE_MAGIC, _TABLE_VERSION, self.precision, 0,
                                self.channels, self.levels, self.min_symbol)
        return head + self.cdf.astype("<u4").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<entropy table>") -> IntegerTable:
        """Inverse of :meth:`to_bytes`; anything malformed raises :class:`InputError`."""
        data = bytes(data)
        if len(data) < _TABLE_HEAD.size:
            raise InputError(source, f"entropy table is {len(data)} bytes, shorter than its header")
        magic, version, precision, reserved, c, k, min_symbol = _TABLE_HEAD.unpack_from(data)
        if magic != _TABLE_MAGIC:
            raise InputError(source, f"not an entropy table (magic {magic!r}, expected {_TABLE_MAGIC!r})")
        if version != _TABLE_VERSION:
            raise InputError(source, f"unsupported entropy table version {version} "
                                     f"(this edgeret reads version {_TABLE_VERSION})")
        if reserved != 0:
            raise InputError(source, f"entropy table reserved field is {reserved}, expected 0")
        try:
            _check_sizes(c, k, precision, ValueError)
        except ValueError as e:
            raise InputError(source, f"entropy table: {e}") from None
        want = _TABLE_HEAD.size + 4 * c * (k + 1)
        if len(data) != want:
            raise InputError(source, f"entropy table is {len(data)} bytes, its header "
                                     f"declares {c}x{k + 1} CDF entries ({want} bytes)")
        cdf = np.frombuffer(data, dtype="<u4", offset=_TABLE_HEAD.size).reshape(c, k + 1)
        try:
            return cls(cdf.astype(np.uint32), min_symbol=min_symbol, precision=precision)
        except ValueError as e:
            raise InputError(source, f"entropy table: {e}") from None

    def row(self, channel: int) -> np.ndarray:
        """The CDF (K+1,) used for ``channel`` (a one-row table serves all channels)."""
        return self.cdf[0 if self.channels == 1 else channel]


def _check_sizes(c: int, k: int, precision: int, exc: type[Exception]) -> None:
    if not 1 <= precision <= CODER_PRECISION:
        raise exc(f"precision {precision} bits is outside 1..{CODER_PRECISION}")
    if not 1 <= c <= MAX_CHANNELS:
        raise exc(f"{c} channels is outside 1..{MAX_CHANNELS}")
    if not 2 <= k <= MAX_LEVELS:
        raise exc(f"{k} symbols per channel is outside 2..{MAX_LEVELS}")
    if k >= (1 << precision):
        raise exc(f"{k} symbols cannot each get frequency >= 1 at {precision}-bit precision")
    if c * (k + 1) > MAX_TABLE_ENTRIES:
        raise exc(f"{c}x{k + 1} CDF entries exceed the limit of {MAX_TABLE_ENTRIES}")


def _validate_cdf(cdf: np.ndarray, min_symbol: int, precision: int, where: str) -> None:
    if cdf.ndim != 2 or not np.issubdtype(cdf.dtype, np.integer):
        raise ValueError(f"{where}: cdf must be an integer array (C, K+1), got {cdf.dtype} {cdf.shape}")
    _check_sizes(cdf.shape[0], cdf.shape[1] - 1, precision, ValueError)
    lo, hi = int(min_symbol), int(min_symbol) + cdf.shape[1] - 2
    if lo < -(1 << 31) or hi >= (1 << 31):
        raise ValueError(f"{where}: symbol range starting at {min_symbol} does not fit in int32")
    c64 = cdf.astype(np.int64)
    if np.any(c64[:, 0] != 0):
        raise ValueError("every CDF row must start at 0")
    if np.any(c64[:, -1] != (1 << precision)):
        bad = int(np.flatnonzero(c64[:, -1] != (1 << precision))[0])
        raise ValueError(f"channel {bad}: CDF ends at {int(c64[bad, -1])}, expected 2**{precision}")
    steps = np.diff(c64, axis=1)
    if np.any(steps < 1):
        bad = np.argwhere(steps < 1)[0]
        raise ValueError(f"channel {int(bad[0])}, symbol {int(bad[1]) + int(min_symbol)}: "
                         "frequency is below 1")


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
        raise InputError(source, f"entropy-coded data is corrupt ({_one_line(e)})") from None
    if leftover:
        raise InputError(source, f"entropy-coded data is corrupt (decoding {n} symbols did not "
                                 f"consume its {len(data)} bytes exactly)")
    out += np.int32(table.min_symbol)
    return out.reshape(shape)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


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
