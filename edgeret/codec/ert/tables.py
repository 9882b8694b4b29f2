"""Integer probability tables for the entropy coder: per-channel quantized CDFs.

Built once at export time and shipped with a model; encoder and decoder use the
same integers, never floats recomputed at decode time, so a stream decodes to the
same symbols on any machine. The coder itself is :mod:`edgeret.codec.ert.entropy`. A table
serializes to a small binary record (``ERTT``, see :meth:`IntegerTable.to_bytes`)
whose SHA-256 names it in every bitstream.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edgeret.errors import InputError

DEFAULT_PRECISION = 16
CODER_PRECISION = 24  # constriction's DefaultAnsCoder / Categorical precision: a table's upper bound
MAX_CHANNELS = 65536
MAX_LEVELS = 65536
MAX_TABLE_ENTRIES = 1 << 24

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
