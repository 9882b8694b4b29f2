"""The .ert container: round trips, every corruption, bounds before allocation, atomic writes."""

from __future__ import annotations

import os
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgeret.codec.ert import container as bs
from edgeret.codec.ert.container import (
    BitstreamModelMismatch,
    Header,
    LatentInfo,
    ModelIdentity,
    decode_stream,
    encode_stream,
    read_ert,
    write_ert,
)
from edgeret.codec.ert.entropy import IntegerTable, decode_symbols, encode_symbols
from edgeret.errors import EdgeretError, InputError
from edgeret.link import atomic

HASH_A = bs.model_digest(b"oct model weights", b"tables")
HASH_B = bs.model_digest(b"fundus model weights", b"tables")


def make_header(**changes) -> Header:
    fields = dict(codec="oct-l7-r0.25", model_name="oct-l7-r0.25", model_hash=HASH_A, height=496,
                  width=512, channels=1, bit_depth=16, modality="oct",
                  latents=(LatentInfo((32, 31, 32), "00112233445566ff"),
                           LatentInfo((8, 62, 64), "a0b1c2d3e4f50617")))
    fields.update(changes)
    return Header(**fields)


def small_stream() -> tuple[Header, list[bytes], bytes]:
    header = make_header()
    payloads = [b"main latent bytes" * 3, b"skip"]
    return header, payloads, encode_stream(header, payloads)


def restamp(data: bytes | bytearray) -> bytes:
    """Recompute the header CRC after editing header bytes (a crafted, 'valid' stream)."""
    data = bytearray(data)
    end = 14 + struct.unpack_from("<I", data, 10)[0]
    struct.pack_into("<I", data, end, zlib.crc32(bytes(data[:end])))
    return bytes(data)


def image_fields_offset(header: Header) -> int:
    return 14 + 1 + len(header.codec) + 1 + len(header.model_name) + 32


def test_round_trip_multi_chunk_and_empty_payloads():
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, size=3 * bs.CHUNK_SIZE + 123, dtype=np.uint8).tobytes()
    header = make_header(latents=(LatentInfo((192, 32, 32), "00" * 8), LatentInfo((4, 8, 8), "11" * 8),
                                  LatentInfo((1, 1, 1), "22" * 8)))
    payloads = [big, b"", b"x" * bs.CHUNK_SIZE]
    data = encode_stream(header, payloads)
    got_header, got = decode_stream(data)
    assert got_header == header and got == payloads
    assert got_header.model == ModelIdentity("oct-l7-r0.25", HASH_A)
    # 4 chunks for `big`, none for the empty payload, exactly 1 for the 64 KiB one
    assert struct.unpack_from("<I", data, image_fields_offset(header) + 12 + 3 * 24)[0] == 5
    assert encode_stream(header, payloads) == data  # deterministic


def test_entropy_coded_latents_in_a_stream():
    rng = np.random.default_rng(1)
    table = IntegerTable.uniform(7, channels=8)
    latent = rng.integers(-3, 4, size=(8, 16, 16))
    header = make_header(latents=(LatentInfo(latent.shape, table.table_id),))
    data = encode_stream(header, [encode_symbols(latent, table)])
    h, (payload,) = decode_stream(data)
    assert h.latents[0].table_id == table.table_id
    assert np.array_equal(decode_symbols(payload, h.latents[0].shape, table), latent)


def test_every_single_byte_flip_is_caught():
    header, payloads, data = small_stream()
    rng = np.random.default_rng(2)
    for _ in range(200):
        b = bytearray(data)
        b[rng.integers(len(b))] ^= int(rng.integers(1, 256))
        try:
            h, p = decode_stream(bytes(b), source="scan.ert")
        except EdgeretError as e:
            assert str(e).startswith("scan.ert: ") and "\n" not in str(e)
            continue
        assert (h, p) == (header, payloads)  # impossible with CRCs, but would be harmless


def test_every_truncation_is_caught():
    _, _, data = small_stream()
    for n in range(len(data)):
        with pytest.raises(InputError):
            decode_stream(data[:n])
    with pytest.raises(InputError, match="truncated"):
        decode_stream(data[:-1])


def test_trailing_garbage():
    _, _, data = small_stream()
    with pytest.raises(InputError, match="3 unexpected bytes after the last chunk"):
        decode_stream(data + b"abc", source="x.ert")


@pytest.mark.parametrize("mutate, words", [
    (lambda d: b"\x89PNG\r\n\x1a\n" + d[8:], "not an .ert bitstream"),
    (lambda d: b"", "empty"),
    (lambda d: d[:8] + struct.pack("<H", 3) + d[10:], "unsupported .ert format version 3"),
    (lambda d: restamp(d[:8] + struct.pack("<H", 9) + d[10:]), "unsupported .ert format version 9"),
    (lambda d: d[:20] + bytes([d[20] ^ 1]) + d[21:], "header CRC32 mismatch"),
    (lambda d: d[:-3] + bytes([d[-3] ^ 0x40]) + d[-2:], "chunk 1 CRC32 mismatch"),
    (lambda d: d[:10] + struct.pack("<I", 2**31) + d[14:], "header declares 2147483648 bytes"),
])
def test_rejected_streams(mutate, words):
    _, _, data = small_stream()
    with pytest.raises(InputError, match=words):
        decode_stream(mutate(data), source="in.ert")


def test_swapped_chunks_are_caught():
    header = make_header(latents=(LatentInfo((1, 8, 8), "00" * 8),))
    a, b = b"A" * bs.CHUNK_SIZE, b"B" * bs.CHUNK_SIZE
    data = encode_stream(header, [a + b])
    start = len(data) - 2 * (8 + bs.CHUNK_SIZE)
    first, second = data[start:start + 8 + bs.CHUNK_SIZE], data[start + 8 + bs.CHUNK_SIZE:]
    with pytest.raises(InputError, match="chunk 0 CRC32 mismatch"):
        decode_stream(data[:start] + second + first)


@pytest.mark.parametrize("field, value, words", [
    ("width", 2**31, "image width 2147483648 is outside 1..16384"),
    ("height", 0, "image height 0 is outside 1..16384"),
    ("channels", 200, "200 channels, the limit is 4"),
    ("bit_depth", 12, "bit depth 12"),
    ("modality", 9, "unknown modality code 9"),
    ("latent", (4096, 4096, 4096), "the limit is 67108864"),
    ("latent", (2**31, 1, 1), "the limit is 65536"),
    ("latents", 200, "200 latent tensors"),
    ("payload", 2**31, "the limit is 268435456"),
    ("payload", 5 * bs.CHUNK_SIZE, "declares 2 chunks, its payload sizes need 6"),
    ("chunks", 10**9, "1000000000 chunks, the limit is 4096"),
    ("chunks_and_payload", 100 * bs.CHUNK_SIZE,
     "the header declares 6554412 bytes of chunks, 71 are present"),
])
def test_huge_declared_sizes_rejected_before_allocation(field, value, words):
    header, _, data = small_stream()
    d = bytearray(data)
    img = image_fields_offset(header)
    lat = img + 12  # first latent record
    chunks_at = lat + 2 * 24
    if field in ("width", "height"):
        struct.pack_into("<I", d, img + (4 if field == "width" else 0), value)
    elif field in ("channels", "bit_depth", "modality", "latents"):
        d[img + 8 + ["channels", "bit_depth", "modality", "latents"].index(field)] = value
    elif field == "latent":
        struct.pack_into("<III", d, lat, *value)
    elif field == "payload":
        struct.pack_into("<I", d, lat + 20, value)
    elif field == "chunks":
        struct.pack_into("<I", d, chunks_at, value)
    else:  # consistent header, payload simply absent
        struct.pack_into("<I", d, lat + 20, value)
        struct.pack_into("<I", d, chunks_at, 101)
    crafted = restamp(d)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(InputError, match=words) as info:
            decode_stream(crafted, source="crafted.ert")
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 0.5
    assert peak < 1 << 20, f"{peak} bytes allocated while rejecting"
    assert str(info.value).startswith("crafted.ert: ")


def test_model_mismatch_names_both_models():
    _, _, data = small_stream()
    decoder = ModelIdentity("fundus-l7-r0.5", HASH_B)
    with pytest.raises(BitstreamModelMismatch) as info:
        decode_stream(data, source="scan.ert", expect=decoder)
    msg = str(info.value)
    assert msg == (f"scan.ert: encoded with model 'oct-l7-r0.25' (hash {HASH_A[:4].hex()}…), "
                   f"this decoder has 'fundus-l7-r0.5' (hash {HASH_B[:4].hex()}…)")
    assert isinstance(info.value, EdgeretError)
    header, payloads = decode_stream(data, expect=ModelIdentity("oct-l7-r0.25", HASH_A))
    assert payloads == small_stream()[1]


@pytest.mark.parametrize("changes, words", [
    (dict(codec="oct l7"), "codec id"),
    (dict(codec=""), "codec id"),
    (dict(model_name="x" * 65), "model name"),
    (dict(model_name="caf\u00e9"), "model name"),
    (dict(model_hash=b"short"), "32 bytes"),
    (dict(width=16385), "outside 1..16384"),
    (dict(modality="xray"), "modality"),
    (dict(latents=()), "0 latent tensors"),
    (dict(latents=(LatentInfo((1, 2, 3), "XYZ"),)), "table id"),
    (dict(scale=3), "coding scale 3"),
])
def test_encoder_rejects_invalid_headers(changes, words):
    with pytest.raises(ValueError, match=words):
        make_header(**changes)


def test_encoder_payload_count_must_match():
    with pytest.raises(ValueError, match="1 payloads for 2 latent tensors"):
        encode_stream(make_header(), [b"x"])


def test_write_and_read_file(tmp_path):
    header, payloads, data = small_stream()
    path = write_ert(tmp_path / "sub" / "scan.ert", header, payloads)
    assert path.read_bytes() == data
    assert read_ert(path) == (header, payloads)
    assert sorted(p.name for p in path.parent.iterdir()) == ["scan.ert"]
    with pytest.raises(InputError, match="no such file"):
        read_ert(tmp_path / "missing.ert")
    with pytest.raises(InputError, match="folder"):
        read_ert(tmp_path)
    with pytest.raises(BitstreamModelMismatch, match=str(path)):
        read_ert(path, expect=ModelIdentity("fundus-l7-r0.5", HASH_B))


def test_atomic_write_when_parent_is_a_file(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    header, payloads, _ = small_stream()
    with pytest.raises(InputError, match="cannot write file"):
        write_ert(blocker / "scan.ert", header, payloads)
    assert blocker.read_text() == "x" and sorted(os.listdir(tmp_path)) == ["not_a_dir"]


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    header, payloads, data = small_stream()
    target = write_ert(tmp_path / "scan.ert", header, payloads)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(InputError, match="No space left on device"):
        write_ert(target, make_header(width=64), [b"new", b"bytes"])
    assert target.read_bytes() == data  # the old stream is intact
    assert [p.name for p in Path(tmp_path).iterdir()] == ["scan.ert"]  # no temp file left


def test_half_scale_streams_are_version_2_and_full_scale_ones_stay_version_1():
    """Readers of version 1 keep reading every full-scale stream; only a halved image needs version 2."""
    payloads = [b"main", b"skip"]
    full = encode_stream(make_header(), payloads)
    half = encode_stream(make_header(scale=2), payloads)
    assert struct.unpack_from("<H", full, 8)[0] == 1 and struct.unpack_from("<H", half, 8)[0] == 2
    assert len(half) == len(full) + 1  # one byte: the scale
    header, got = decode_stream(half)
    assert header.scale == 2 and header == make_header(scale=2) and got == payloads
    assert decode_stream(full)[0].scale == 1


def test_version_2_corruption_is_caught():
    header = make_header(scale=2)
    data = encode_stream(header, [b"main latent bytes" * 3, b"skip"])
    for n in range(len(data)):
        with pytest.raises(InputError):
            decode_stream(data[:n])
    at = image_fields_offset(header) + 12  # the scale byte follows the image fields
    assert data[at] == 2
    with pytest.raises(InputError, match="coding scale 7 is not one of"):
        decode_stream(restamp(data[:at] + bytes([7]) + data[at + 1:]), source="crafted.ert")
