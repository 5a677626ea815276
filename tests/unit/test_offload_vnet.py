"""The virtio-net header codec and the offload constants."""

from __future__ import annotations

import ctypes
import struct
import sys

import pytest

import tunflow.offload as offload
from tunflow.errors import TruncatedPacketError
from tunflow.offload import (
    VIRTIO_NET_HDR,
    VIRTIO_NET_HDR_LEN,
    VirtioNetHdr,
    decode_vnet_hdr,
    encode_vnet_hdr_into,
)
from tunflow.packet import HEADROOM, IDEAL_BATCH_SIZE


class _CVirtioNetHdr(ctypes.Structure):
    # include/uapi/linux/virtio_net.h, struct virtio_net_hdr (host byte order on a TUN).
    _fields_ = [
        ("flags", ctypes.c_uint8),
        ("gso_type", ctypes.c_uint8),
        ("hdr_len", ctypes.c_uint16),
        ("gso_size", ctypes.c_uint16),
        ("csum_start", ctypes.c_uint16),
        ("csum_offset", ctypes.c_uint16),
    ]


def test_length_is_ten_like_the_c_struct() -> None:
    # tun-rs's doc comment says 12; the struct is 10 bytes, as wireguard-go's unsafe.Sizeof says.
    assert ctypes.sizeof(_CVirtioNetHdr) == VIRTIO_NET_HDR_LEN == 10 == HEADROOM
    assert VIRTIO_NET_HDR.size == 10


def test_constants() -> None:
    assert offload.IDEAL_BATCH_SIZE == IDEAL_BATCH_SIZE == 128
    assert (offload.VIRTIO_NET_HDR_F_NEEDS_CSUM, offload.VIRTIO_NET_HDR_F_DATA_VALID) == (1, 2)
    assert (
        offload.VIRTIO_NET_HDR_GSO_NONE,
        offload.VIRTIO_NET_HDR_GSO_TCPV4,
        offload.VIRTIO_NET_HDR_GSO_UDP,
        offload.VIRTIO_NET_HDR_GSO_TCPV6,
        offload.VIRTIO_NET_HDR_GSO_UDP_L4,
        offload.VIRTIO_NET_HDR_GSO_ECN,
    ) == (0, 1, 3, 4, 5, 0x80)
    assert (
        offload.TUN_F_CSUM,
        offload.TUN_F_TSO4,
        offload.TUN_F_TSO6,
        offload.TUN_F_TSO_ECN,
        offload.TUN_F_UFO,
        offload.TUN_F_USO4,
        offload.TUN_F_USO6,
    ) == (1, 2, 4, 8, 0x10, 0x20, 0x40)
    for name in offload.__all__:
        assert hasattr(offload, name), name


def test_native_byte_order_matches_c_layout() -> None:
    hdr = VirtioNetHdr(
        flags=1, gso_type=4, hdr_len=0x1234, gso_size=1448, csum_start=40, csum_offset=16
    )
    c = _CVirtioNetHdr(1, 4, 0x1234, 1448, 40, 16)
    assert hdr.encode() == bytes(c)
    order = "<" if sys.byteorder == "little" else ">"
    assert hdr.encode() == struct.pack(order + "BBHHHH", 1, 4, 0x1234, 1448, 40, 16)


def test_round_trip_and_encode_into() -> None:
    hdr = VirtioNetHdr(1, 5, 28, 1400, 20, 6)
    assert VirtioNetHdr.decode(hdr.encode()) == hdr
    buf = bytearray(b"\xaa" * 24)
    hdr.encode_into(buf, 7)
    assert buf[:7] == b"\xaa" * 7 and buf[17:] == b"\xaa" * 7
    assert VirtioNetHdr.decode(buf, 7) == hdr
    assert decode_vnet_hdr(memoryview(buf), 7) == (1, 5, 28, 1400, 20, 6)
    encode_vnet_hdr_into(buf, 0, 0, 0, 0, 0, 0, 0)
    assert decode_vnet_hdr(buf) == (0,) * 6


@pytest.mark.parametrize("n", [0, 1, 9])
def test_decode_short_buffer(n: int) -> None:
    with pytest.raises(TruncatedPacketError):
        VirtioNetHdr.decode(bytes(n))
    with pytest.raises(TruncatedPacketError):
        decode_vnet_hdr(bytes(n + 10), n + 1)


def test_encode_into_short_buffer() -> None:
    with pytest.raises(TruncatedPacketError):
        VirtioNetHdr().encode_into(bytearray(9))
    with pytest.raises(TruncatedPacketError):
        encode_vnet_hdr_into(bytearray(12), 3, 0, 0, 0, 0, 0, 0)


def test_negative_offsets_are_refused_not_counted_from_the_end() -> None:
    # struct reads and writes the buffer's last 10 bytes at offset -10
    buf = bytearray(range(20))
    with pytest.raises(TruncatedPacketError):
        decode_vnet_hdr(buf, -10)
    with pytest.raises(TruncatedPacketError):
        encode_vnet_hdr_into(buf, -10, 0, 0, 0, 0, 0, 0)
    assert buf == bytearray(range(20))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"flags": 256},
        {"gso_type": -1},
        {"hdr_len": 65536},
        {"gso_size": -1},
        {"csum_start": 1 << 16},
    ],
)
def test_fields_are_validated(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        VirtioNetHdr(**kwargs)
    with pytest.raises(ValueError, match="out of range"):
        encode_vnet_hdr_into(bytearray(10), 0, 0, 0, 0, 70000, 0, 0)


def test_frozen() -> None:
    hdr = VirtioNetHdr()
    with pytest.raises(AttributeError):
        hdr.flags = 1  # type: ignore[misc]
