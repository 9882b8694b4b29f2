"""Entropy layer: integer tables, exact round trips, rate, determinism, corrupt input."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from edgeret.codec.ert import entropy
from edgeret.codec.ert.entropy import IntegerTable, decode_symbols, encode_symbols
from edgeret.errors import InputError


def laplace_probs(levels: int, scale: float, shift: float = 0.0) -> np.ndarray:
    x = np.arange(levels) - levels // 2 - shift
    p = np.exp(-np.abs(x) / scale)
    return p / p.sum()


def sample(rng: np.random.Generator, probs: np.ndarray, per_channel: int) -> np.ndarray:
    """Symbol indices (C, per_channel), channel c drawn from probs[c]."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random((probs.shape[0], per_channel))
    return np.minimum((u[:, :, None] > cum[:, None, :]).sum(axis=2), probs.shape[1] - 1)


def cross_entropy_bits(idx: np.ndarray, table: IntegerTable) -> float:
    """Ideal code length of the symbol indices (C, N) under the integer table."""
    f = table.freqs
    rows = f if table.channels > 1 else np.repeat(f, idx.shape[0], axis=0)
    p = np.take_along_axis(rows, idx, axis=1) / float(1 << table.precision)
    return float(-np.log2(p).sum())


def skewed_case(seed: int = 0, shape=(6, 96, 96), levels: int = 9):
    rng = np.random.default_rng(seed)
    scales = np.array([0.3, 0.6, 1.0, 1.7, 3.0, 6.0])[: shape[0]]
    probs = np.stack([laplace_probs(levels, s, shift=0.3 * (i % 2)) for i, s in enumerate(scales)])
    idx = sample(rng, probs, shape[1] * shape[2])
    lo = -(levels // 2)
    return probs, (idx + lo).reshape(shape), lo


def test_round_trip_and_rate_near_entropy():
    probs, symbols, lo = skewed_case()
    # table from the true per-channel probabilities (what a trained prior ships)
    table = IntegerTable.from_probabilities(probs, min_symbol=lo)
    data = encode_symbols(symbols, table)
    out = decode_symbols(data, symbols.shape, table)
    assert out.dtype == np.int32 and out.shape == symbols.shape
    assert np.array_equal(out, symbols)
    idx = (symbols - lo).reshape(symbols.shape[0], -1)
    ideal = cross_entropy_bits(idx, table)
    actual = 8 * len(data)
    overhead = actual / ideal - 1
    # table fitted to the empirical histogram: rate vs the empirical entropy itself
    counts = np.stack([np.bincount(row, minlength=probs.shape[1]) for row in idx]).astype(float)
    emp_table = IntegerTable.from_probabilities(counts, min_symbol=lo)
    emp_data = encode_symbols(symbols, emp_table)
    assert np.array_equal(decode_symbols(emp_data, symbols.shape, emp_table), symbols)
    pe = counts / counts.sum(axis=1, keepdims=True)
    emp_entropy = float(-(counts * np.log2(np.where(pe > 0, pe, 1))).sum())
    emp_overhead = 8 * len(emp_data) / emp_entropy - 1
    print(f"\n{symbols.size} symbols: {actual} bits coded vs {ideal:.0f} bits ideal under the "
          f"integer table ({100 * overhead:+.3f}%); empirical-histogram table: {8 * len(emp_data)} "
          f"bits vs empirical entropy {emp_entropy:.0f} ({100 * emp_overhead:+.3f}%)")
    assert abs(overhead) < 0.02
    assert abs(emp_overhead) < 0.02


def test_constriction_uses_exactly_the_integer_table():
    """A pure-Python integer rANS gives the same bytes; no float model anywhere."""
    rng = np.random.default_rng(7)
    for trial in range(12):
        levels = int(rng.integers(2, 12))
        precision = int(rng.choice([8, 12, 16, 20, 24]))
        channels = int(rng.integers(1, 4))
        probs = rng.dirichlet(np.full(levels, 0.3), size=channels)
        table = IntegerTable.from_probabilities(probs, min_symbol=-1, precision=precision)
        idx = sample(rng, probs, int(rng.integers(1, 40)))
        data = encode_symbols(idx - 1, table)
        cdfs = [table.row(c).tolist() for c in range(channels) for _ in range(idx.shape[1])]
        assert entropy.reference_encode(idx.ravel().tolist(), cdfs, precision) == data, trial
        assert entropy.reference_decode(data, cdfs, precision) == idx.ravel().tolist()


def test_golden_bytes_are_stable():
    """The same integers must give the same bytes on every machine and release."""
    table = IntegerTable.from_freqs(np.array([[30000, 20000, 10000, 5000, 500, 35, 1]]), min_symbol=-3)
    symbols = (np.arange(3 * 5 * 7).reshape(3, 5, 7) * 7919 % 7 - 3)
    data = encode_symbols(symbols, table)
    assert data == encode_symbols(symbols, table)  # deterministic
    assert table.table_id == hashlib.sha256(table.to_bytes()).hexdigest()[:16]
    assert hashlib.sha256(data).hexdigest()[:16] == GOLDEN_DATA
    assert table.table_id == GOLDEN_TABLE


GOLDEN_DATA = "a0932fd6f32168e4"
GOLDEN_TABLE = "226757a6b530c5b1"


def test_table_serialisation_round_trip():
    probs, symbols, lo = skewed_case(seed=3, shape=(4, 32, 32))
    table = IntegerTable.from_probabilities(probs, min_symbol=lo)
    blob = table.to_bytes()
    loaded = IntegerTable.from_bytes(blob)
    assert loaded == table and loaded.sha256 == table.sha256 and loaded.table_id == table.table_id
    assert np.array_equal(loaded.cdf, table.cdf) and loaded.cdf.dtype == np.uint32
    data = encode_symbols(symbols, table)
    assert encode_symbols(symbols, loaded) == data
    assert np.array_equal(decode_symbols(data, symbols.shape, loaded), symbols)
    other = IntegerTable.from_probabilities(probs[::-1], min_symbol=lo)
    assert other.table_id != table.table_id


@pytest.mark.parametrize("mutate, words", [
    (lambda b: b"XXXX" + b[4:], "not an entropy table"),
    (lambda b: b[:4] + b"\x02" + b[5:], "unsupported entropy table version 2"),
    (lambda b: b[:-1], "header declares"),
    (lambda b: b[:10], "shorter than its header"),
    (lambda b: b[:-4] + (2**16 + 1).to_bytes(4, "little"), r"expected 2\*\*16"),
    (lambda b: b[:24] + (0).to_bytes(4, "little") + b[28:], "below 1"),
    (lambda b: b[:8] + (2**31).to_bytes(4, "little") + b[12:], "channels is outside"),
])
def test_corrupt_table_bytes(mutate, words):
    blob = IntegerTable.uniform(7, channels=2).to_bytes()
    with pytest.raises(InputError, match=words):
        IntegerTable.from_bytes(mutate(blob), source="model/tables.bin")


def test_from_probabilities_is_exact_and_keeps_every_symbol():
    probs = np.array([[0.0, 1e-12, 0.5, 0.5, 0.0], [1, 1, 1, 1, 1e6]], dtype=np.float64)
    table = IntegerTable.from_probabilities(probs, precision=16)
    f = table.freqs
    assert f.min() >= 1 and np.all(f.sum(axis=1) == 2**16)
    assert abs(f[0, 2] - f[0, 3]) <= 1
    again = IntegerTable.from_probabilities(probs.copy(), precision=16)
    assert again.sha256 == table.sha256
    p = np.random.default_rng(1).dirichlet(np.ones(50), size=3)
    t = IntegerTable.from_probabilities(p)
    # 1 + floor(p * (2**16 - K)), plus 1 for the largest remainders
    assert np.abs(t.freqs - (1 + p * (2**16 - 50))).max() <= 1
    for bad in (np.array([[0.0, 0.0]]), np.array([[1.0, np.nan]]), np.array([[1.0, -0.1]]),
                np.array([[1.0]])):
        with pytest.raises(ValueError):
            IntegerTable.from_probabilities(bad)


def test_uniform_table_for_seven_level_quantizer():
    table = IntegerTable.uniform(7)
    assert (table.min_symbol, table.max_symbol, table.channels) == (-3, 3, 1)
    assert table.freqs.sum() == 2**16 and table.freqs.max() - table.freqs.min() <= 1
    symbols = np.random.default_rng(2).integers(-3, 4, size=(8, 40, 40))  # one row serves 8 channels
    data = encode_symbols(symbols, table)
    assert np.array_equal(decode_symbols(data, symbols.shape, table), symbols)
    assert abs(8 * len(data) / (symbols.size * np.log2(7)) - 1) < 0.01


def test_out_of_range_symbols_are_named_or_clipped():
    table = IntegerTable.uniform(7)
    symbols = np.zeros((2, 3, 3), dtype=np.int64)
    symbols[1, 2, 0] = 9
    with pytest.raises(ValueError, match=r"symbol 9 at channel 1, position 6 .*\[-3, 3\]"):
        encode_symbols(symbols, table)
    data = encode_symbols(symbols, table, clip=True)
    expect = symbols.copy()
    expect[1, 2, 0] = 3
    assert np.array_equal(decode_symbols(data, symbols.shape, table), expect)
    with pytest.raises(ValueError, match="integers"):
        encode_symbols(symbols.astype(float), table)
    with pytest.raises(ValueError, match="2 channels, the entropy table .* has 3"):
        encode_symbols(np.zeros((2, 4, 4), dtype=int), IntegerTable.uniform(7, channels=3))


def test_empty_and_all_min_symbol_arrays():
    table = IntegerTable.uniform(5)
    assert encode_symbols(np.zeros((0, 4, 4), dtype=int), table) == b""
    assert decode_symbols(b"", (0, 4, 4), table).shape == (0, 4, 4)
    lows = np.full((2, 3, 3), -2)
    data = encode_symbols(lows, table)  # rANS stays in its initial state: no bytes
    assert np.array_equal(decode_symbols(data, lows.shape, table), lows)


def test_corrupt_data_raises_or_decodes_in_range_never_crashes():
    probs, symbols, lo = skewed_case(seed=5, shape=(3, 24, 24))
    table = IntegerTable.from_probabilities(probs[:3], min_symbol=lo)
    data = encode_symbols(symbols, table)
    rng = np.random.default_rng(11)
    raised = 0
    for _ in range(200):
        b = bytearray(data)
        b[rng.integers(len(b))] ^= int(rng.integers(1, 256))
        try:
            out = decode_symbols(bytes(b), symbols.shape, table, source="x.ert")
        except InputError as e:
            assert e.path == "x.ert"
            raised += 1
            continue
        # an ANS stream has no checksum of its own (the .ert chunks carry CRC32s)
        assert out.shape == symbols.shape and out.min() >= lo and out.max() <= table.max_symbol
    assert raised >= 150


@pytest.mark.parametrize("data, shape, words", [
    (b"\x01\x02\x03", (1, 2, 2), "whole number of 32-bit words"),
    (b"\x00" * 4, (1, 2, 2), "ends in a zero word"),
    (b"\x01" * 400, (1, 2, 2), "more than 4 symbols can produce"),
    (b"\x01" * 4, (0, 2, 2), "empty latent"),
    (b"", (2**13, 2**13, 2**13), "more than the limit of 67108864"),
    (b"", (1, -2, 2), "negative"),
    (b"\x01" * 4, (3, 2, 2), "3 channels"),
])
def test_decode_rejects_before_work(data, shape, words):
    table = IntegerTable.uniform(7, channels=2) if shape[0] == 3 else IntegerTable.uniform(7)
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=words):
        decode_symbols(data, shape, table, source="a.ert")
    assert time.perf_counter() - t0 < 0.5


def test_truncated_data_is_rejected():
    probs, symbols, lo = skewed_case(seed=9, shape=(2, 16, 16))
    table = IntegerTable.from_probabilities(probs[:2], min_symbol=lo)
    data = encode_symbols(symbols, table)
    for n in range(0, len(data), 4):
        try:
            out = decode_symbols(data[:n], symbols.shape, table)
        except InputError:
            continue
        assert not np.array_equal(out, symbols)
