"""The Internet checksum: wireguard-go's TestChecksum/TestPseudoHeaderChecksum and more."""

from __future__ import annotations

import random
import struct

import dpkt
import pytest
from hypothesis import given, settings, strategies as st

from tunflow.packet import (
    checksum,
    checksum_no_fold,
    checksum_update,
    pseudo_header_checksum_no_fold,
)


def reference(data: bytes, initial: int = 0) -> int:
    """wireguard-go's ``checksumRef``: word by word, folding as it goes."""
    s = initial
    for i in range(0, len(data) - 1, 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    if len(data) & 1:
        s += data[-1] << 8
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_checksum_every_length_0_to_9001_against_reference() -> None:
    # TestChecksum: every length from 0 to 9001 of random data (seed 0x1234).
    rng = random.Random(0x1234)
    data = rng.randbytes(9001)
    # The reference, incrementally: a running sum of whole words, plus the odd byte.
    words = 0
    for n in range(9002):
        if n >= 2 and not n & 1:
            words += (data[n - 2] << 8) | data[n - 1]
        s = words + (data[n - 1] << 8 if n & 1 else 0)
        want = (s - 1) % 0xFFFF + 1 if s else 0
        assert checksum(data[:n]) == want, n
        assert checksum(memoryview(data)[:n]) == want, n
    for n in (0, 1, 2, 3, 1447, 1448, 9000, 9001):
        assert checksum(data[:n]) == reference(data[:n])


def test_checksum_against_dpkt() -> None:
    # A second, independent oracle: dpkt's in_cksum complements the folded sum.
    rng = random.Random(7)
    for n in (0, 1, 2, 3, 20, 40, 1447, 1448, 1500, 9000, 65535):
        data = rng.randbytes(n)
        assert ~checksum(data) & 0xFFFF == dpkt.in_cksum(data) or n == 0


@pytest.mark.parametrize(
    ("data", "initial", "want"),
    [
        # The fixed vectors of wireguard-go's TestChecksum that do not depend on Go's RNG.
        pytest.param(b"", 0, 0, id="empty"),
        pytest.param(b"", 0xFFFF, 0xFFFF, id="max initial"),
        pytest.param(b"\x01\x02\x01", 0, 0x0202, id="odd length"),
        pytest.param(b"\x01\x02\x01\x02\x01\x02", 0, 0x0306, id="tiny"),
        pytest.param(b"\x01\x02\x01\x02\x01\x02", 0x1000, 0x1306, id="initial"),
        pytest.param(b"\xfe" * 1282, 0, 0x7C7C, id="fe1282"),
        pytest.param(b"\xfe" * 65535, 0, 0x7E81, id="fe"),
        pytest.param(b"\xff" * 65535, 0, 0xFF00, id="maximum"),
    ],
)
def test_checksum_vectors(data: bytes, initial: int, want: int) -> None:
    assert checksum(data, initial) == want
    assert checksum(memoryview(data), initial) == want
    assert checksum(bytearray(data), initial) == want


@pytest.mark.parametrize("n", [2, 4, 1500, 9000, 65534])
def test_negative_zero(n: int) -> None:
    # All-ones words sum to 0xFFFF ("negative zero"), never to 0: the case a plain
    # ``% 0xFFFF`` gets wrong.
    assert checksum(b"\xff" * n) == 0xFFFF
    assert checksum(b"\x00" * n) == 0
    assert checksum(b"\x00" * n, 0xFFFF) == 0xFFFF
    assert checksum(b"\xff\xff", 0xFFFF) == 0xFFFF
    assert checksum_no_fold(b"\xff" * n) % 0xFFFF == 0
    assert checksum_no_fold(b"\xff" * n) != 0


def test_checksum_no_fold_sums_add() -> None:
    rng = random.Random(3)
    a, b = rng.randbytes(1000), rng.randbytes(501)
    # Sums of even-length pieces add up to the sum of the concatenation.
    assert checksum(b, checksum_no_fold(a)) == reference(a + b)
    assert checksum(b"", checksum_no_fold(b, checksum_no_fold(a))) == reference(a + b)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=20000), st.integers(min_value=0, max_value=(1 << 40)))
def test_checksum_property(data: bytes, initial: int) -> None:
    want = reference(data, initial)
    assert checksum(data, initial) == want
    assert checksum(b"", checksum_no_fold(data, initial)) == want


@pytest.mark.parametrize(
    ("src", "dst", "want"),
    [
        # TestPseudoHeaderChecksumNoFold: TCP, total length 1492.
        pytest.param("c0a80101", "c0a80102", 0x892E, id="ipv4"),
        pytest.param(
            "20010db8333344445555666677778888",
            "20010db8aaaabbbbccccddddeeeeffff",
            0x947F,
            id="ipv6",
        ),
    ],
)
def test_pseudo_header_vectors(src: str, dst: str, want: int) -> None:
    s = pseudo_header_checksum_no_fold(6, bytes.fromhex(src), bytes.fromhex(dst), 1492)
    assert checksum(b"", s) == want


def test_pseudo_header_every_length() -> None:
    # TestPseudoHeaderChecksum: address lengths 4 and 16, every length 0..9001.
    rng = random.Random(0x1234)
    for alen in (4, 16):
        src, dst = rng.randbytes(alen), rng.randbytes(alen)
        for length in range(9002):
            for proto in (6, 17):
                if alen == 4:
                    ph = struct.pack(">4s4sxBH", src, dst, proto, length)
                else:
                    ph = struct.pack(">16s16sIxxxB", src, dst, length, proto)
                got = checksum(b"", pseudo_header_checksum_no_fold(proto, src, dst, length))
                assert got == reference(ph), (alen, length)


def test_pseudo_header_accepts_memoryview() -> None:
    hdr = memoryview(bytes.fromhex("c0a80101c0a80102"))
    s = pseudo_header_checksum_no_fold(6, hdr[:4], hdr[4:], 1492)
    assert checksum(b"", s) == 0x892E


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=2, max_size=200).filter(lambda b: len(b) % 2 == 0),
    st.data(),
)
def test_checksum_update_matches_recompute(data: bytes, draw: st.DataObject) -> None:
    # RFC 1624: patching the stored checksum equals recomputing it.
    buf = bytearray(data)
    field = ~checksum(buf) & 0xFFFF
    i = draw.draw(st.integers(min_value=0, max_value=len(buf) // 2 - 1)) * 2
    new = draw.draw(st.integers(min_value=0, max_value=0xFFFF))
    old = (buf[i] << 8) | buf[i + 1]
    buf[i : i + 2] = new.to_bytes(2, "big")
    patched = checksum_update(field, old, new)
    # Both verify (sum including the field is 0xFFFF, or the data is all zero)...
    assert checksum(buf, patched) in (0xFFFF, 0) or not any(buf)
    # ...and equal the recomputed value up to one's-complement zero (0 vs 0xFFFF).
    assert patched % 0xFFFF == (~checksum(buf) & 0xFFFF) % 0xFFFF


def test_checksum_update_folds_the_carry_of_its_first_fold() -> None:
    # ~field + ~old + new = 0xFFFF + 0xFFFF + 1 = 0x1FFFF; one fold leaves 0x10000, a second 1
    # (RFC 1624 folds until no carry is left). dpkt recomputes the changed buffer.
    field = ~checksum(b"\xff\xff\x00\x00") & 0xFFFF
    assert field == 0
    assert checksum_update(field, 0x0000, 0x0001) == dpkt.in_cksum(b"\xff\xff\x00\x01") == 0xFFFE


def test_checksum_update_gives_rfc_1624s_answer() -> None:
    # RFC 1624 section 4: eqn. 3 gives 0x0000, as recomputing does (RFC 1141 gave 0xFFFF)
    assert checksum_update(0xDD2F, 0x5555, 0x3285) == 0x0000
