"""Linux TUN offload, sans-I/O: the virtio-net header, GSO splitting and GRO coalescing.

With ``IFF_VNET_HDR`` and ``TUNSETOFFLOAD`` a Linux TUN hands over TCP and UDP *super-packets* of
up to 64 KiB, each preceded by a 10-byte :class:`VirtioNetHdr`, and accepts the same on write.
This module turns one super-packet into MTU-sized packets (:func:`gso_split`) and a batch of
MTU-sized packets back into as few super-packets as the kernel's rules allow
(:class:`GROTable`). It is a port of wireguard-go's ``tun/offload_linux.go`` with the
improvements of Tailscale's fork (explicit 64 KiB cap, zero IPv4 UDP checksums, run-time
switches, resumable splits) and a few of its own (PSH kept on prepend, ECN/CWR on split, strict
validation of every header before any output is written).

Everything works on :class:`~tunflow.packet.PacketBatch` arenas with precompiled ``struct``
formats and no object per packet. The module makes no system calls: it must not import ``os``,
``socket``, ``select``, ``fcntl``, ``anyio``, ``trio``, ``asyncio`` nor the
``tunflow.platform``/``device``/``pipeline``/``transport`` layers (an import-linter contract
checks this).

Example:
    >>> from tunflow.packet import PacketBatch
    >>> table = GROTable(tcp=True, udp=True)
    >>> out = PacketBatch()
    >>> table.coalesce(PacketBatch(), out)
    0
"""

from __future__ import annotations

import enum
import functools
import struct
from collections.abc import Sequence
from itertools import pairwise
from typing import Any, Final, TypeAlias

import attrs

from .datagram import UDP_MAX_SEGMENTS
from .errors import (
    ConfigError,
    MalformedPacketError,
    OffloadError,
    PacketTooLargeError,
    TruncatedPacketError,
)
from .packet import _HIGH_NIBBLE, HEADROOM, IDEAL_BATCH_SIZE, PacketBatch, _mask, _sum16

__all__ = [
    "VIRTIO_NET_HDR_LEN",
    "IDEAL_BATCH_SIZE",
    "VIRTIO_NET_HDR_F_NEEDS_CSUM",
    "VIRTIO_NET_HDR_F_DATA_VALID",
    "VIRTIO_NET_HDR_GSO_NONE",
    "VIRTIO_NET_HDR_GSO_TCPV4",
    "VIRTIO_NET_HDR_GSO_UDP",
    "VIRTIO_NET_HDR_GSO_TCPV6",
    "VIRTIO_NET_HDR_GSO_UDP_L4",
    "VIRTIO_NET_HDR_GSO_ECN",
    "TUN_F_CSUM",
    "TUN_F_TSO4",
    "TUN_F_TSO6",
    "TUN_F_TSO_ECN",
    "TUN_F_UFO",
    "TUN_F_USO4",
    "TUN_F_USO6",
    "VIRTIO_NET_HDR",
    "VirtioNetHdr",
    "decode_vnet_hdr",
    "encode_vnet_hdr_into",
    "pseudo_header_sum",
    "complete_checksum",
    "gso_segment_count",
    "gso_split_size",
    "gso_split",
    "gso_split_into",
    "GROCandidate",
    "gro_candidate",
    "GROStatistics",
    "GROTable",
]

Buffer: TypeAlias = bytes | bytearray | memoryview
WritableBuffer: TypeAlias = bytearray | memoryview

# --- constants (include/uapi/linux/virtio_net.h, if_tun.h) ----------------------------------

#: Size of ``struct virtio_net_hdr`` (the legacy header a TUN uses; 10, not 12).
VIRTIO_NET_HDR_LEN: Final = 10
assert VIRTIO_NET_HDR_LEN == HEADROOM

#: The checksum from ``csum_start`` on is partial: finish it (CHECKSUM_PARTIAL).
VIRTIO_NET_HDR_F_NEEDS_CSUM: Final = 1
#: The checksum has been validated (CHECKSUM_UNNECESSARY).
VIRTIO_NET_HDR_F_DATA_VALID: Final = 2

VIRTIO_NET_HDR_GSO_NONE: Final = 0
VIRTIO_NET_HDR_GSO_TCPV4: Final = 1
#: Legacy UDP fragmentation offload (UFO); never produced by current kernels, not supported.
VIRTIO_NET_HDR_GSO_UDP: Final = 3
VIRTIO_NET_HDR_GSO_TCPV6: Final = 4
VIRTIO_NET_HDR_GSO_UDP_L4: Final = 5
#: Flag or-ed into a TCP gso_type when the first segment carries CWR.
VIRTIO_NET_HDR_GSO_ECN: Final = 0x80

#: ``TUNSETOFFLOAD`` bits.
TUN_F_CSUM: Final = 0x01
TUN_F_TSO4: Final = 0x02
TUN_F_TSO6: Final = 0x04
TUN_F_TSO_ECN: Final = 0x08
TUN_F_UFO: Final = 0x10
TUN_F_USO4: Final = 0x20
TUN_F_USO6: Final = 0x40

#: The header as a precompiled struct, native byte order as the kernel's legacy header uses
#: (``TUNSETVNETLE``/``BE`` are never set). ``VIRTIO_NET_HDR.unpack_from(buf, off)`` is the
#: fastest way to read one.
VIRTIO_NET_HDR: Final = struct.Struct("=BBHHHH")

_MAX_IP: Final = 65535
_ZERO_HDR: Final = bytes(VIRTIO_NET_HDR_LEN)

_TCP: Final = 6
_UDP: Final = 17
_FIN: Final = 0x01
_PSH: Final = 0x08
_ACK: Final = 0x10
_CWR: Final = 0x80

_pack_H = struct.Struct(">H").pack_into
_pack_I = struct.Struct(">I").pack_into
_pack_ip4 = struct.Struct(">HHHHH").pack_into
_unpack_H = struct.Struct(">H").unpack_from
_unpack_HH = struct.Struct(">HH").unpack_from
_unpack_I = struct.Struct(">I").unpack_from
_unpack_ip4_words = struct.Struct(">QQI").unpack_from  # a 20-byte IPv4 header
_pack_vnet = VIRTIO_NET_HDR.pack_into
_unpack_vnet = VIRTIO_NET_HDR.unpack_from

# --- the virtio-net header ---------------------------------------------------------------


def _u8(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{attr.name} must be 0..255, not {value!r}")


def _u16(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{attr.name} must be 0..65535, not {value!r}")


@attrs.frozen
class VirtioNetHdr:
    """``struct virtio_net_hdr``: what a TUN with ``IFF_VNET_HDR`` puts before each packet.

    A value object for configuration, tests and slow paths; the hot path uses
    :func:`decode_vnet_hdr`/:func:`encode_vnet_hdr_into` (or :data:`VIRTIO_NET_HDR`) instead.

    Attributes:
        flags: :data:`VIRTIO_NET_HDR_F_NEEDS_CSUM` and/or :data:`VIRTIO_NET_HDR_F_DATA_VALID`.
        gso_type: one of the ``VIRTIO_NET_HDR_GSO_*`` values, optionally or-ed with ``ECN``.
        hdr_len: bytes of IP plus transport headers (the kernel's value is advisory).
        gso_size: payload bytes per segment (the MSS).
        csum_start: offset of the transport header in the packet.
        csum_offset: offset of the checksum field from ``csum_start`` (TCP 16, UDP 6).

    Example:
        >>> hdr = VirtioNetHdr(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type=VIRTIO_NET_HDR_GSO_TCPV4,
        ...                    hdr_len=40, gso_size=1448, csum_start=20, csum_offset=16)
        >>> VirtioNetHdr.decode(hdr.encode()) == hdr
        True
    """

    flags: int = attrs.field(default=0, validator=_u8)
    gso_type: int = attrs.field(default=0, validator=_u8)
    hdr_len: int = attrs.field(default=0, validator=_u16)
    gso_size: int = attrs.field(default=0, validator=_u16)
    csum_start: int = attrs.field(default=0, validator=_u16)
    csum_offset: int = attrs.field(default=0, validator=_u16)

    @classmethod
    def decode(cls, buf: Buffer, offset: int = 0) -> VirtioNetHdr:
        """Read a header from ``buf[offset:offset + 10]``.

        Raises:
            TruncatedPacketError: fewer than 10 bytes are available.
        """
        return cls(*decode_vnet_hdr(buf, offset))

    def encode(self) -> bytes:
        """The 10 header bytes."""
        return VIRTIO_NET_HDR.pack(
            self.flags,
            self.gso_type,
            self.hdr_len,
            self.gso_size,
            self.csum_start,
            self.csum_offset,
        )

    def encode_into(self, buf: WritableBuffer, offset: int = 0) -> None:
        """Write the header into ``buf[offset:offset + 10]``.

        Raises:
            TruncatedPacketError: ``buf`` has fewer than 10 bytes from ``offset``.
        """
        encode_vnet_hdr_into(
            buf,
            offset,
            self.flags,
            self.gso_type,
            self.hdr_len,
            self.gso_size,
            self.csum_start,
            self.csum_offset,
        )


def decode_vnet_hdr(buf: Buffer, offset: int = 0) -> tuple[int, int, int, int, int, int]:
    """``(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)`` at ``buf[offset:]``.

    Raises:
        TruncatedPacketError: fewer than 10 bytes are available.

    Example:
        >>> decode_vnet_hdr(bytes(10))
        (0, 0, 0, 0, 0, 0)
    """
    if offset < 0 or len(buf) - offset < VIRTIO_NET_HDR_LEN:
        raise TruncatedPacketError(
            f"a virtio-net header needs {VIRTIO_NET_HDR_LEN} bytes, "
            f"{max(0, len(buf) - max(offset, 0))} available"
        )
    return _unpack_vnet(buf, offset)


def encode_vnet_hdr_into(
    buf: WritableBuffer,
    offset: int,
    flags: int,
    gso_type: int,
    hdr_len: int,
    gso_size: int,
    csum_start: int,
    csum_offset: int,
) -> None:
    """Write a virtio-net header into ``buf[offset:offset + 10]``.

    Raises:
        TruncatedPacketError: ``buf`` has fewer than 10 bytes from ``offset``.
        ValueError: a field is out of range.
    """
    if offset < 0 or len(buf) - offset < VIRTIO_NET_HDR_LEN:
        raise TruncatedPacketError(f"no room for a virtio-net header at offset {offset}")
    try:
        _pack_vnet(buf, offset, flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)
    except struct.error as exc:
        raise ValueError(f"virtio-net header field out of range: {exc}") from None


# --- checksum helpers --------------------------------------------------------------------


def pseudo_header_sum(packet: Buffer, protocol: int, length: int) -> int:
    """The unfolded TCP/UDP pseudo-header sum, addresses read from ``packet``'s IP header.

    Args:
        packet: an IPv4 or IPv6 packet (at least its fixed header).
        protocol: 6 for TCP, 17 for UDP.
        length: the transport length (transport header plus payload).

    Returns:
        An unfolded sum for :func:`tunflow.packet.checksum`'s ``initial``.

    Raises:
        MalformedPacketError: the version nibble is neither 4 nor 6.
        TruncatedPacketError: the packet is shorter than its fixed IP header.

    Example:
        >>> from tunflow.packet import checksum
        >>> ip = bytes.fromhex("45000000000000004006 0000 c0a80101c0a80102")
        >>> hex(checksum(b"", pseudo_header_sum(ip, 6, 1492)))
        '0x892e'
    """
    n = len(packet)
    v = packet[0] >> 4 if n else 0
    if v == 4:
        if n < 20:
            raise TruncatedPacketError(f"IPv4 header needs 20 bytes, {n} given")
        # src and dst are contiguous: one integer is congruent to the sum of both.
        return int.from_bytes(packet[12:20], "big") + protocol + length
    if v == 6:
        if n < 40:
            raise TruncatedPacketError(f"IPv6 header needs 40 bytes, {n} given")
        return int.from_bytes(packet[8:40], "big") + protocol + length
    raise MalformedPacketError(f"IP version nibble is {v}, not 4 or 6")


def complete_checksum(packet: WritableBuffer, csum_start: int, csum_offset: int) -> None:
    """Finish a CHECKSUM_PARTIAL packet in place (``NEEDS_CSUM`` with gso type ``NONE``).

    The kernel leaves the folded pseudo-header sum in the checksum field; the final value is the
    complement of the sum from ``csum_start`` to the end with that field as the initial sum. A
    result of 0 is stored as 0xFFFF (the same number in one's complement; mandatory for UDP).

    Args:
        packet: the IP packet, writable.
        csum_start: where the summed region (the transport header) starts.
        csum_offset: offset of the 16-bit checksum field from ``csum_start``.

    Raises:
        TruncatedPacketError: the checksum field lies outside the packet.

    Example:
        >>> from tunflow.packet import checksum
        >>> udp = bytearray(bytes.fromhex("4500001e0000000040110000c0000201c0000202")
        ...                 + bytes.fromhex("000100010000000a") + b"hi")
        >>> p = checksum(b"", pseudo_header_sum(udp, 17, 10))
        >>> udp[26:28] = p.to_bytes(2, "big")
        >>> complete_checksum(udp, 20, 6)
        >>> checksum(udp[20:], pseudo_header_sum(udp, 17, 10))
        65535
    """
    at = csum_start + csum_offset
    if csum_start < 0 or csum_offset < 0 or at + 2 > len(packet):
        raise TruncatedPacketError(
            f"checksum field at {csum_start}+{csum_offset} lies outside a {len(packet)}-byte packet"
        )
    if csum_offset & 1:
        # The field is not word-aligned within the sum: take it out and add it back as a word.
        initial = (packet[at] << 8) | packet[at + 1]
        packet[at] = packet[at + 1] = 0
        s = initial + _sum16(packet[csum_start:])
    else:
        # Word-aligned: summing the region with the partial sum in place adds it exactly once.
        s = _sum16(packet[csum_start:])
    c = ~((s - 1) % 0xFFFF + 1) & 0xFFFF if s else 0xFFFF
    _pack_H(packet, at, c or 0xFFFF)


# --- GSO split ---------------------------------------------------------------------------

# Extension headers a GSO IPv6 packet may carry before its TCP/UDP header. The fragment header
# (44) is absent on purpose: a fragment is never a GSO packet.
_IPV6_EXT_8: Final = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_IPV6_ROUTING: Final = 43
_IPV6_AH: Final = 51
_IPV6_FRAG: Final = 44


def _final_destination(pkt: memoryview, at: int, size: int) -> int:
    """Where the final destination lies in the IPv6 packet ``pkt`` whose routing header of
    ``size`` bytes at ``at`` has segments left: the address the TCP/UDP pseudo-header holds
    (RFC 8200 8.1), not the next hop in the IPv6 header. Type 0 lists the hops in order (the
    last one), type 2 (Mobile IPv6) the home address, type 4 (SRv6) the segments in reverse
    (Segment List[0])."""
    rtype = pkt[at + 2]
    if rtype == 0:
        if size >= 24:
            return at + ((pkt[at + 1] >> 1) << 4) - 8
    elif rtype == 2:
        if size == 24:
            return at + 8
    elif rtype == 4:
        if size >= 24:
            return at + 8
    else:
        raise OffloadError(
            f"IPv6 routing header type {rtype} with segments left: its final destination, "
            "which the TCP/UDP checksum covers, is not known"
        )
    raise MalformedPacketError(f"IPv6 routing header type {rtype} of {size} bytes holds no address")


class _Plan:
    """A validated super-packet and what its split needs, computed once per super-packet."""

    __slots__ = (
        "count",
        "cs",
        "cso",
        "ecn",
        "gso",
        "hdr_len",
        "id0",
        "ip_sum",
        "is_tcp",
        "is_v6",
        "mode",
        "pkt",
        "pseudo",
        "seq0",
        "tflags",
        "tmpl",
    )

    def __init__(self, pkt: memoryview, mode: int, count: int, hdr_len: int) -> None:
        self.pkt = pkt  # the IP packet
        self.mode = mode  # _MODE_COPY, _MODE_CSUM or _MODE_GSO
        self.count = count  # output packets
        self.hdr_len = hdr_len  # recomputed IP + transport header length (whole packet if no GSO)
        self.cs = 0  # csum_start
        self.cso = 0  # csum_offset
        self.gso = 0
        self.is_v6 = False
        self.is_tcp = False
        self.ecn = False
        self.tmpl = b""  # headers with lengths, IPv4 ID, seq and checksums zeroed
        self.ip_sum = 0  # IPv4: sum of the template's IP header
        self.id0 = 0  # IPv4 ID of the first segment
        self.seq0 = 0  # TCP seq of the first segment
        self.tflags = 0  # TCP flags of the super-packet
        self.pseudo = 0  # pseudo-header sum without the length


_MODE_COPY: Final = 0
_MODE_CSUM: Final = 1
_MODE_GSO: Final = 2


def _plan(src: Buffer) -> _Plan:
    """Validate a super-packet (virtio header + IP packet) and precompute its split."""
    n_src = len(src)
    if n_src < VIRTIO_NET_HDR_LEN:
        raise TruncatedPacketError(
            f"{n_src} bytes: shorter than the {VIRTIO_NET_HDR_LEN}-byte virtio-net header"
        )
    flags, gso_type, _, gso_size, cs, cso = _unpack_vnet(src, 0)
    view = src if isinstance(src, memoryview) else memoryview(src)
    pkt = view[VIRTIO_NET_HDR_LEN:]
    n = n_src - VIRTIO_NET_HDR_LEN
    if n == 0:
        raise TruncatedPacketError("no packet after the virtio-net header")

    if gso_type == VIRTIO_NET_HDR_GSO_NONE:
        if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
            if cs + cso + 2 > n:
                raise TruncatedPacketError(
                    f"checksum field at {cs}+{cso} lies outside a {n}-byte packet"
                )
            p = _Plan(pkt, _MODE_CSUM, 1, n)
            p.cs = cs
            p.cso = cso
            return p
        return _Plan(pkt, _MODE_COPY, 1, n)

    ecn = bool(gso_type & VIRTIO_NET_HDR_GSO_ECN)
    base = gso_type & ~VIRTIO_NET_HDR_GSO_ECN
    if base in (VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6):
        is_tcp = True
        proto = _TCP
        want_cso = 16
    elif base == VIRTIO_NET_HDR_GSO_UDP_L4:
        if ecn:
            raise MalformedPacketError("GSO ECN flag on a UDP super-packet")
        is_tcp = False
        proto = _UDP
        want_cso = 6
    else:
        raise OffloadError(f"unsupported GSO type {gso_type:#x} (TSO4/TSO6/USO are supported)")
    if gso_size == 0:
        raise MalformedPacketError("GSO super-packet with gso_size 0")
    if cso != want_cso:
        raise MalformedPacketError(
            f"csum_offset {cso} does not point at the {'TCP' if is_tcp else 'UDP'} checksum"
        )

    version = pkt[0] >> 4
    if version == 4:
        if base == VIRTIO_NET_HDR_GSO_TCPV6:
            raise MalformedPacketError("GSO type TCPV6 on an IPv4 packet")
        if n < 20:
            raise TruncatedPacketError(f"IPv4 packet of {n} bytes is shorter than its header")
        ihl = (pkt[0] & 0x0F) << 2
        if ihl < 20:
            raise MalformedPacketError(f"IPv4 header length {ihl} is below 20")
        if cs != ihl:
            raise MalformedPacketError(f"csum_start {cs} is not the IPv4 header length {ihl}")
        total = (pkt[2] << 8) | pkt[3]
        if total > n:
            raise TruncatedPacketError(f"IPv4 total length {total} but only {n} bytes read")
        if total != n:
            raise MalformedPacketError(f"IPv4 total length {total} but {n} bytes read")
        if pkt[9] != proto:
            raise MalformedPacketError(f"IPv4 protocol {pkt[9]} does not match GSO type")
        if (pkt[6] & 0x3F) or pkt[7]:
            raise MalformedPacketError("an IPv4 fragment cannot be a GSO super-packet")
        is_v6 = False
    elif version == 6:
        if base == VIRTIO_NET_HDR_GSO_TCPV4:
            raise MalformedPacketError("GSO type TCPV4 on an IPv6 packet")
        if n < 40:
            raise TruncatedPacketError(f"IPv6 packet of {n} bytes is shorter than its header")
        plen = (pkt[4] << 8) | pkt[5]
        if 40 + plen > n:
            raise TruncatedPacketError(f"IPv6 payload length {plen} but {n - 40} bytes read")
        if 40 + plen != n:
            raise MalformedPacketError(f"IPv6 payload length {plen} but {n - 40} bytes read")
        # Walk the extension headers: csum_start must land exactly on the transport header.
        nh = pkt[6]
        at = 40
        dst_at = 24  # the pseudo-header's destination: the final one
        while nh != proto:
            if at + 2 > n:
                raise TruncatedPacketError("IPv6 extension header chain runs past the packet")
            if nh in _IPV6_EXT_8:
                size = (pkt[at + 1] + 1) << 3
                if nh == _IPV6_ROUTING and at + size <= n and pkt[at + 3]:
                    dst_at = _final_destination(pkt, at, size)
            elif nh == _IPV6_AH:
                size = (pkt[at + 1] + 2) << 2
            else:
                raise MalformedPacketError(f"IPv6 next header {nh} does not match the GSO type")
            nh = pkt[at]
            at += size
            if at > n:
                raise TruncatedPacketError("IPv6 extension header runs past the packet")
        if at != cs:
            raise MalformedPacketError(f"csum_start {cs} is not the transport header offset {at}")
        is_v6 = True
    else:
        raise MalformedPacketError(f"IP version nibble is {version}, not 4 or 6")

    # Recompute hdr_len: on the FORWARD path the kernel's value can cover a whole segment.
    if is_tcp:
        if n < cs + 20:
            raise TruncatedPacketError(f"TCP header at {cs} runs past a {n}-byte packet")
        doff = (pkt[cs + 12] >> 4) << 2
        if doff < 20:
            raise MalformedPacketError(f"TCP data offset {doff} is below 20")
        hdr_len = cs + doff
    else:
        hdr_len = cs + 8
    if n < hdr_len:
        raise TruncatedPacketError(f"headers of {hdr_len} bytes run past a {n}-byte packet")

    payload = n - hdr_len
    count = (payload + gso_size - 1) // gso_size or 1  # headers only: one packet, none lost
    tmpl = bytearray(pkt[:hdr_len])
    ip_sum = 0
    ident = 0
    seq = 0
    tcp_flags = 0
    if is_v6:
        tmpl[4:6] = b"\0\0"
        dst = int.from_bytes(pkt[dst_at : dst_at + 16], "big")
        pseudo = int.from_bytes(pkt[8:24], "big") + dst + proto
    else:
        ident = (pkt[4] << 8) | pkt[5]
        tmpl[2:6] = b"\0\0\0\0"
        tmpl[10:12] = b"\0\0"
        ip_sum = _sum16(tmpl[:cs])
        pseudo = int.from_bytes(pkt[12:20], "big") + proto
    if is_tcp:
        seq = _unpack_I(pkt, cs + 4)[0]
        tcp_flags = pkt[cs + 13]
        tmpl[cs + 4 : cs + 8] = b"\0\0\0\0"
        tmpl[cs + 16 : cs + 18] = b"\0\0"
    else:
        tmpl[cs + 4 : cs + 8] = b"\0\0\0\0"
    p = _Plan(pkt, _MODE_GSO, count, hdr_len)
    p.cs = cs
    p.cso = cso
    p.gso = gso_size
    p.is_v6 = is_v6
    p.is_tcp = is_tcp
    p.ecn = ecn
    p.tmpl = bytes(tmpl)
    p.ip_sum = ip_sum
    p.id0 = ident
    p.seq0 = seq
    p.tflags = tcp_flags
    p.pseudo = pseudo
    return p


def _seg_len(p: _Plan, i: int) -> int:
    """Length of output packet ``i`` of plan ``p``."""
    if p.mode != _MODE_GSO:
        return p.hdr_len
    seg = len(p.pkt) - p.hdr_len - i * p.gso
    return p.hdr_len + (seg if seg < p.gso else p.gso)


def _emit(
    p: _Plan, start: int, stop: int, targets: Sequence[tuple[WritableBuffer, memoryview, int]]
) -> None:
    """Write output packets ``start..stop-1`` of plan ``p`` at ``targets[k] = (buf, view,
    offset)`` (``view`` is ``memoryview(buf)``, made once per buffer by the caller).

    The caller has checked that every target has room; nothing here can fail.
    """
    if start >= stop:
        return
    pkt = p.pkt
    mode = p.mode
    if mode != _MODE_GSO:
        buf, _, off = targets[0]
        n = len(pkt)
        buf[off : off + n] = pkt
        if mode == _MODE_CSUM:
            complete_checksum(memoryview(buf)[off : off + n], p.cs, p.cso)
        return
    # Locals, not attribute lookups, in the per-segment loop.
    cs, cso, hdr_len, gso, is_v6, is_tcp, ecn = (
        p.cs,
        p.cso,
        p.hdr_len,
        p.gso,
        p.is_v6,
        p.is_tcp,
        p.ecn,
    )
    tmpl, ip_sum, id0, seq0, tflags, pseudo = p.tmpl, p.ip_sum, p.id0, p.seq0, p.tflags, p.pseudo
    # IPv4 bytes 2..12 in one pack: total length, ID, flags/fragment, TTL/protocol, checksum.
    frag, ttl_proto = _unpack_HH(tmpl, 6) if not is_v6 else (0, 0)
    n = len(pkt)
    last = p.count - 1
    not_fin_psh = ~(_FIN | _PSH)
    pack_H = _pack_H
    sum16 = _sum16
    pack_ip = _pack_ip4
    for i, (buf, view, off) in zip(range(start, stop), targets, strict=False):
        data_at = hdr_len + i * gso
        data_end = data_at + gso
        if data_end > n:
            data_end = n
        total = hdr_len + data_end - data_at
        end = off + total
        hdr_end = off + hdr_len
        buf[off:hdr_end] = tmpl
        buf[hdr_end:end] = pkt[data_at:data_end]
        if is_v6:
            pack_H(buf, off + 4, total - 40)
        else:
            ident = (id0 + i) & 0xFFFF
            s = ip_sum + total + ident
            s = (s & 0xFFFF) + (s >> 16)
            s = (s & 0xFFFF) + (s >> 16)
            pack_ip(buf, off + 2, total, ident, frag, ttl_proto, ~s & 0xFFFF)
        l4 = off + cs
        l4_len = total - cs
        if is_tcp:
            _pack_I(buf, l4 + 4, (seq0 + i * gso) & 0xFFFFFFFF)
            f = tflags
            if i != last:
                f &= not_fin_psh  # FIN and PSH belong to the last segment only
            if ecn and i:
                f &= ~_CWR  # as the kernel's tcp_gso_segment: CWR on the first segment only
            buf[l4 + 13] = f
        else:
            pack_H(buf, l4 + 4, l4_len)
        s = pseudo + l4_len + sum16(view[l4:end])
        c = ~((s - 1) % 0xFFFF + 1) & 0xFFFF
        pack_H(buf, l4 + cso, c or 0xFFFF)  # 0 means "no checksum" to UDP; 0xFFFF is equal


def gso_segment_count(src: Buffer) -> int:
    """How many packets :func:`gso_split` makes of ``src`` (virtio-net header + IP packet).

    Also a cheap way to validate a super-packet: it runs every check :func:`gso_split` runs.

    Raises:
        TruncatedPacketError: a header or length field points past the end of the data.
        MalformedPacketError: an inconsistent header (wrong version for the GSO type, lengths
            that disagree, ``csum_start`` not at the transport header, ``gso_size`` 0…).
        OffloadError: an unsupported GSO type (legacy UFO or unknown), or an IPv6 routing
            header with segments left of a type other than 0, 2 and 4 (the final destination,
            which the TCP/UDP checksums cover, is not known).

    Example:
        >>> gso_segment_count(bytes(10) + b"\\x45")  # gso type NONE: the packet as is
        1
    """
    return _plan(src).count


def gso_split_size(src: Buffer) -> int:
    """The arena bytes :func:`gso_split` needs for all of ``src``'s packets at once.

    Every segment repeats the super-packet's own headers (IP, extension and transport headers,
    as recomputed from ``src``) and takes its headroom; the payload is shared out once. A
    ``PacketBatch(capacity=gso_split_size(src), max_packets=gso_segment_count(src))`` takes the
    whole split in one call, neither short nor oversized, whatever the headers' length.

    Raises:
        TruncatedPacketError, MalformedPacketError, OffloadError: as :func:`gso_segment_count`.

    Example:
        >>> gso_split_size(bytes(10) + b"\\x45" + bytes(19))  # one 20-byte packet + its headroom
        30
    """
    p = _plan(src)
    # (without GSO hdr_len is the whole packet and count 1: the same sum)
    return p.count * (HEADROOM + p.hdr_len) + len(p.pkt) - p.hdr_len


def _check_start(start: int, count: int) -> None:
    if not 0 <= start <= count:
        raise ValueError(f"start must be within 0..{count}, not {start}")


def gso_split(src: Buffer, out: PacketBatch, *, start: int = 0) -> int:
    """Split one super-packet into MTU-sized packets appended to ``out``; resumable.

    ``src`` is what one ``read`` of an offload TUN returns: the 10-byte virtio-net header, then
    the IP packet. Segments are TCP (v4/v6) or UDP (v4/v6, USO) packets with everything a
    kernel would set: IPv4 ID + i and header checksum, IPv4 total / IPv6 payload length (counted
    from the fixed 40-byte header, so extension headers are included), TCP sequence numbers, FIN
    and PSH only on the last segment (CWR only on the first for ECN), UDP length, and full
    transport checksums (with an IPv6 routing header, over its final destination: RFC 8200).
    ``hdr_len`` is recomputed from the headers, not trusted. With gso type ``NONE`` the packet
    is copied as it is, its checksum completed when ``NEEDS_CSUM`` is set.

    Every header is validated before anything is written. When ``out`` runs out of bytes or
    packet slots, the call returns early with the index of the first segment it did not write;
    pass that as ``start`` (with an emptied or fresh batch) to continue — nothing is lost.
    ``src`` is never modified and may even lie inside ``out``'s arena.

    Args:
        src: virtio-net header followed by the IP packet.
        out: the batch the segments are appended to (their headroom is zeroed when
            ``out.vnet_hdr`` is set).
        start: the first segment to produce (a previous call's return value).

    Returns:
        The index of the next segment to produce; equal to :func:`gso_segment_count` when the
        split is complete. With ``start=0`` it is the number of packets appended.

    Raises:
        TruncatedPacketError: a header or length field points past the end of the data.
        MalformedPacketError: inconsistent headers (see :func:`gso_segment_count`).
        OffloadError: an unsupported GSO type or routing header (see
            :func:`gso_segment_count`).
        PacketTooLargeError: ``out`` is empty and still cannot take the next segment.
        ValueError: ``start`` is outside ``0..count``.

    Example:
        >>> from tunflow.packet import PacketBatch
        >>> batch, i = PacketBatch(capacity=4096), 0
        >>> super_packet = bytes(10) + bytes.fromhex("4500001c0000000040110000c0000201c0000202") + bytes(8)
        >>> while i < gso_segment_count(super_packet):
        ...     i = gso_split(super_packet, batch, start=i)
        ...     # ... send batch, then batch.clear() if i is not yet complete
        >>> len(batch)
        1
    """
    buf = out.buffer
    view = out.view
    if src is buf or (isinstance(src, memoryview) and src.obj is buf):
        src = bytes(src)  # the split writes into the arena it would read from
    p = _plan(src)
    count = p.count
    _check_start(start, count)
    cap = len(buf)
    end = out.end
    slots = out.max_packets - len(out.offsets)
    targets: list[tuple[WritableBuffer, memoryview, int]] = []
    offs: list[int] = []
    lens: list[int] = []
    i = start
    while i < count and slots > 0:
        size = _seg_len(p, i)
        off = end + HEADROOM
        if off + size > cap:
            break
        targets.append((buf, view, off))
        offs.append(off)
        lens.append(size)
        end = off + size
        slots -= 1
        i += 1
    if i == start < count:
        if not out.offsets:
            raise PacketTooLargeError(
                f"a {_seg_len(p, i)}-byte segment does not fit an empty {cap}-byte batch"
            )
        return start
    _emit(p, start, i, targets)
    if out.vnet_hdr:
        for off in offs:
            buf[off - HEADROOM : off] = _ZERO_HDR
    out.offsets.extend(offs)
    out.lengths.extend(lens)
    out.end = end
    return i


def gso_split_into(
    src: Buffer,
    bufs: Sequence[WritableBuffer],
    sizes: list[int],
    offset: int,
    *,
    start: int = 0,
) -> int:
    """tun-rs-style :func:`gso_split`: segment ``start + k`` goes to ``bufs[k][offset:]``.

    ``sizes[k]`` receives its length. Unlike tun-rs, running out of buffers is not an error that
    loses the read: the call returns the next segment index and the caller continues with
    ``start=`` that value.

    Args:
        src: virtio-net header followed by the IP packet.
        bufs: writable output buffers.
        sizes: as long as ``bufs``; filled with the packet lengths.
        offset: where each packet starts in its buffer (room for a header in front, say).
        start: the first segment to produce.

    Returns:
        The index of the next segment to produce (the number written when ``start`` is 0).

    Raises:
        TruncatedPacketError, MalformedPacketError, OffloadError: as :func:`gso_split`.
        PacketTooLargeError: ``bufs[0]`` cannot hold the first segment.
        ValueError: ``bufs`` is empty or ``len(bufs) != len(sizes)``, a negative ``offset``
            or a bad ``start``.

    Example:
        >>> bufs, sizes = [bytearray(2048) for _ in range(4)], [0] * 4
        >>> gso_split_into(bytes(10) + b"\\x45" + bytes(19), bufs, sizes, 10), sizes[0]
        (1, 20)
    """
    if len(bufs) != len(sizes):
        raise ValueError(f"{len(bufs)} buffers but {len(sizes)} sizes")
    if not bufs:
        raise ValueError("no output buffers")
    if offset < 0:
        raise ValueError(f"offset must not be negative, not {offset}")
    if not isinstance(src, bytes):
        # Splitting over our own input would overwrite bytes not yet read: copy it first.
        base = src.obj if isinstance(src, memoryview) else src
        if any((b.obj if isinstance(b, memoryview) else b) is base for b in bufs):
            src = bytes(src)
    p = _plan(src)
    count = p.count
    _check_start(start, count)
    targets: list[tuple[WritableBuffer, memoryview, int]] = []
    i = start
    for b in bufs:
        if i == count:
            break
        size = _seg_len(p, i)
        if len(b) - offset < size:
            if not targets:
                raise PacketTooLargeError(
                    f"a {size}-byte segment does not fit a {len(b)}-byte buffer at offset {offset}"
                )
            break
        sizes[len(targets)] = size
        targets.append((b, b if isinstance(b, memoryview) else memoryview(b), offset))
        i += 1
    _emit(p, start, i, targets)
    return i


# --- GRO ---------------------------------------------------------------------------------


class GROCandidate(enum.IntEnum):
    """What :func:`gro_candidate` says about a packet."""

    NONE = 0
    TCP4 = 1
    TCP6 = 2
    UDP4 = 3
    UDP6 = 4


def gro_candidate(packet: Buffer, *, tcp: bool = True, udp: bool = True) -> GROCandidate:
    """Whether ``packet`` may be coalesced, and as what (wireguard-go's first filter).

    IPv4 packets with options and IPv6 packets with extension headers never coalesce; TCP needs
    the full 20-byte header in the buffer; UDP only when ``udp`` (the device has USO).

    Example:
        >>> gro_candidate(b"\\x00")
        <GROCandidate.NONE: 0>
    """
    n = len(packet)
    if n < 28:
        return GROCandidate.NONE
    b0 = packet[0]
    if b0 >> 4 == 4:
        if b0 & 0x0F != 5:
            return GROCandidate.NONE
        proto = packet[9]
        if proto == _TCP and n >= 40 and tcp:
            return GROCandidate.TCP4
        if proto == _UDP and udp:
            return GROCandidate.UDP4
    elif b0 >> 4 == 6:
        nh = packet[6]
        if nh == _TCP and n >= 60 and tcp:
            return GROCandidate.TCP6
        if nh == _UDP and n >= 48 and udp:
            return GROCandidate.UDP6
    return GROCandidate.NONE


@attrs.frozen
class GROStatistics:
    """Counters of a :class:`GROTable` since it was created.

    Attributes:
        packets_in: packets given to :meth:`GROTable.coalesce`.
        packets_out: packets it produced (coalesced and single).
        coalesced: input packets merged into another packet (``packets_in - packets_out``).
        gso_packets: produced packets that carry GSO (two or more segments).
        invalid_checksum: packets kept apart because a checksum was wrong: their IPv4 header's
            or their TCP/UDP one.
        too_large: merges refused because the result would exceed 65535 bytes.
    """

    packets_in: int = 0
    packets_out: int = 0
    coalesced: int = 0
    gso_packets: int = 0
    invalid_checksum: int = 0
    too_large: int = 0


# An item is a mutable list — 80 ns to make against 215 ns for a __slots__ object, and GRO makes
# one per packet that starts or breaks a run: the packets merged so far and what the rules need
# to know about them. Indices into it:
_Item: TypeAlias = list[Any]
_IT_MEMBERS: Final = 0  # list[int]: batch indices, head first, in sequence order
_IT_SEQ: Final = 1  # TCP sequence number of the head
_IT_PAYLOAD: Final = 2  # payload bytes accumulated
_IT_GSO: Final = 3  # largest segment payload
_IT_L4H: Final = 4  # TCP/UDP header length
_IT_PSH: Final = 5  # TCP: PSH seen (only on the last segment)
_IT_COMPAT: Final = 6  # IP fields that must be equal (ToS/DF/TTL, traffic class/hop limit)
_IT_OPTS: Final = 7  # TCP option bytes (b"" when none)
_IT_CSUM: Final = 8  # 1 valid, 0 not checked yet, -1 invalid
_IT_KIND: Final = 9  # the GROCandidate value

# Fixed-header layouts for one unpack per packet.
_V4TCP = struct.Struct("!BBHHHBBH8sIIIBB").unpack_from  # 34 bytes
# the words the in-order fast path compares, as few values as will do: the virtio-net header
# (empty without one), version/IHL + ToS, length, flags/fragment offset + TTL + protocol,
# addresses + ports as one string, sequence, ACK number, data offset + TCP flags
_V4TCP_RUN = struct.Struct("!0sHH2xI2x12sIIH").unpack_from  # 34 bytes
# the same with the 10-byte virtio-net header before it (which must be all zero)
_V4TCP_RUN_HDR = struct.Struct("!10sHH2xI2x12sIIH").unpack_from  # 44 bytes
# IPv6 in the same shape: version/traffic class/flow label, payload length, next header + hop
# limit, addresses + ports, sequence, ACK number, data offset + flags
_V6TCP_RUN = struct.Struct("!0sIHH36sIIH").unpack_from  # 54 bytes
_V6TCP_RUN_HDR = struct.Struct("!10sIHH36sIIH").unpack_from  # 64 bytes
_V6TCP = struct.Struct("!IHBB32sIIIBB").unpack_from  # 54 bytes
# What _classify_uniform requires the same in every packet of a batch, byte by byte: IPv4
# version/IHL, ToS, flags/fragment offset, TTL, protocol; IPv6 version (+ the traffic class,
# masked), next header, hop limit. (Lengths, data offsets and flags are checked apart; the flow,
# ACK number and options may change, and cut the batch into segments.)
_V4_SAME: Final[tuple[int, ...]] = (0, 1, 6, 7, 8, 9)
_V6_SAME: Final[tuple[int, ...]] = (0, 6, 7)
_NON_ZERO: Final = bytes([0] + [1] * 255)
#: batches shorter than this take the packet-at-a-time fast path (as quick there)
_UNIFORM_MIN: Final = 12
_V4UDP = struct.Struct("!BBHHHBBH8sIHH").unpack_from  # 28 bytes
_V6UDP = struct.Struct("!IHBB32sIHH").unpack_from  # 48 bytes

_GSO_TYPE: Final = (
    0,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP_L4,
    VIRTIO_NET_HDR_GSO_UDP_L4,
)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class GROTable:
    """Coalesces batches of TCP and UDP packets into super-packets for an offload TUN.

    The rules are the kernel's (``tools/testing/selftests/net/gro.c``) as wireguard-go and
    Tailscale implement them. Packets of one flow — same addresses, ports and, for TCP, the same
    ACK number — merge when their sequence numbers are contiguous (appended or prepended), their
    ToS/TTL/DF (IPv4) or traffic class/hop limit (IPv6) are equal, neither has IP options,
    extension headers or is a fragment, TCP flags are ACK or ACK|PSH with PSH ending a merge,
    only the last segment is shorter, the TCP options are equal, the checksums of both verify
    (IPv4 header and TCP/UDP) and the result stays within 65535 bytes. An IPv4 UDP datagram with
    checksum 0 may merge (Tailscale); UDP only ever appends to the flow's last packet, and a
    datagram that goes out alone (empty, lengths that disagree — the UDP length must be the IP
    payload's — a fragment, IP options or extension headers, a GSO header of its own) ends that
    packet — the flow's next datagram starts a new one — so datagrams are never reordered.

    Output packets are written to a separate batch in the order of each group's first packet
    (wireguard-go's ``toWrite`` order), each with its virtio-net header in the headroom: merged
    ones with ``NEEDS_CSUM``, the GSO type, ``hdr_len``, ``gso_size`` (the largest segment),
    ``csum_start``/``csum_offset`` and the folded pseudo-header sum in the checksum field (the
    kernel completes it); the others with an all-zero header, byte for byte as they came.

    Args:
        tcp: coalesce TCP (turn off at run time against kernel GRO bugs).
        udp: coalesce UDP. ``None`` (the default): as the device allows — a table handed to
            ``send_multiple`` (or ``send_batch``) coalesces UDP when the device accepted
            ``TUN_F_USO4|TUN_F_USO6``, as tun-rs decides from the device; used alone
            (:meth:`coalesce`) it leaves UDP alone. ``True`` only for a device with USO.
        max_segments: the most packets merged into one (``None``: only the 64 KiB cap); a
            writer that sends fragments with ``writev`` needs ≤ 1023 (UIO_MAXIOV). UDP
            datagrams merge :data:`~tunflow.datagram.UDP_MAX_SEGMENTS` at most whatever it is:
            the kernel refuses a USO write of more (128 since Linux 6.x, 64 before).

    Raises:
        ConfigError: ``max_segments`` is not a whole number of at least 1.

    Example:
        >>> from tunflow.packet import PacketBatch
        >>> table, out = GROTable(), PacketBatch()
        >>> src = PacketBatch()
        >>> src.append(b"\\x45" + bytes(27))
        >>> table.coalesce(src, out), out.vnet_hdr, bytes(out.header(0))
        (1, True, b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00')
        >>> table.statistics().packets_in
        1
    """

    __slots__ = (
        "_coalesced",
        "_gso",
        "_in",
        "_invalid",
        "_max_segments",
        "_out",
        "_tcp_flows",
        "_too_large",
        "_udp_flows",
        "tcp",
        "udp",
        "verify_checksums",
    )

    def __init__(
        self, *, tcp: bool = True, udp: bool | None = None, max_segments: int | None = None
    ) -> None:
        if max_segments is not None and not _positive_int(max_segments):
            raise ConfigError(f"max_segments must be a whole number >= 1, not {max_segments!r}")
        #: Coalesce TCP; may be changed at any time.
        self.tcp = tcp
        #: Coalesce UDP (``None``: as the device it writes to allows); may be changed at any
        #: time (needs the device's USO).
        self.udp = udp
        #: Verify each packet's checksums before merging it — the IPv4 header's and the
        #: TCP/UDP one (the kernel's rule; a merge writes a fresh IPv4 header checksum, which
        #: would hide a bad one). A caller whose packets were authenticated on the way (a VPN's
        #: AEAD: the kernel's WireGuard marks them CHECKSUM_UNNECESSARY) may turn it off — it
        #: is most of the cost (~2.9 of 4.4 µs a packet; the IPv4 header's ~0.15 of it). With
        #: it off, a batch of TCP segments of one IP version, each flow's in order (a tunnel's
        #: bulk transfers), is grouped by a fast path, ~40 % cheaper than the general one, with
        #: the same result (``benchmarks/offload_micro.py``). May be changed at any time.
        self.verify_checksums = True
        self._max_segments = max_segments if max_segments is not None else 1 << 30
        self._tcp_flows: dict[tuple[bytes, int, int], list[_Item]] = {}
        self._udp_flows: dict[tuple[bytes, int], list[_Item]] = {}
        self._in = self._out = self._coalesced = self._gso = 0
        self._invalid = self._too_large = 0

    def __repr__(self) -> str:
        return f"<GROTable tcp={self.tcp} udp={self.udp}>"

    def statistics(self) -> GROStatistics:
        """The counters so far, as a frozen record."""
        return GROStatistics(
            packets_in=self._in,
            packets_out=self._out,
            coalesced=self._coalesced,
            gso_packets=self._gso,
            invalid_checksum=self._invalid,
            too_large=self._too_large,
        )

    def coalesce(self, src: PacketBatch, out: PacketBatch) -> int:
        """Coalesce the IP packets of ``src`` into ``out`` (cleared first; ``vnet_hdr`` set).

        ``src`` is not modified. Packets of ``src`` that already carry a non-zero virtio-net
        header (``src.vnet_hdr`` set) are passed through with it. Malformed or foreign packets
        are never an error: they pass through unmerged.

        Args:
            src: plain IP packets, e.g. decrypted from a tunnel.
            out: receives the packets to write to the TUN, each with its header.

        Returns:
            The number of packets in ``out``.

        Raises:
            PacketTooLargeError: ``out`` is too small (``out.capacity >= src.end`` and
                ``out.max_packets >= len(src)`` always suffice); ``out`` is left empty.
            ValueError: ``src`` and ``out`` are the same batch.
        """
        if src is out:
            raise ValueError("coalesce needs a separate output batch")
        out.clear()
        out.vnet_hdr = True
        run = None
        if not self.verify_checksums and self.tcp and len(src.offsets) > 1:
            run = self._classify_uniform(src) or self._classify_tcp_run(src)
        if run is not None:
            slots, too_large = run
            invalid = 0
        else:
            slots, invalid, too_large = self._classify(src)
        n = self._write(src, out, slots)
        # Counted only once the batch went through: a too-small `out` leaves no trace.
        self._invalid += invalid
        self._too_large += too_large
        return n

    # -- pass 1: group packets into items, no bytes moved --------------------------------

    def _classify_uniform(self, src: PacketBatch) -> tuple[list[int | _Item], int] | None:
        """Pass 1 for the commonest batch of all — TCP segments of one size (but maybe the last)
        laid out at one stride, each flow's in order (packets may be missing: a lost one starts
        a new item) and in runs of its own (a tunnel decrypting bulk transfers back to back) —
        checked one header byte position at a time across the whole batch instead of one packet
        at a time: each check is an extended slice (a loop in C), so the cost no longer grows
        with the number of packets (``benchmarks/offload_micro.py``). The items are those
        :meth:`_classify` makes of such a batch (and :meth:`_classify_tcp_run`, where nothing is
        missing); ``None`` for any other batch (it then goes those ways) — one with a packet
        reordered or repeated, a gap where the sequence numbers wrap, anything
        :meth:`_classify_tcp_run` would refuse but a gap — and for one whose flows interleave in
        short runs (quicker that way)."""
        offsets = src.offsets
        k = len(offsets)
        if k < _UNIFORM_MIN:
            return None
        lengths = src.lengths
        buf = src.buffer
        o0 = offsets[0]
        n = lengths[0]
        last_n = lengths[-1]
        stride = offsets[1] - o0
        if (
            n > _MAX_IP
            or last_n > n
            or lengths.count(n) != k - (last_n != n)
            or offsets != list(range(o0, o0 + k * stride, stride))
        ):
            return None
        back = HEADROOM if src.vnet_hdr else 0
        version = buf[o0] >> 4
        if version == 4:
            unpack = _V4TCP_RUN_HDR if back else _V4TCP_RUN
            iph, kind, length_of_n, len_at, seq_at = 20, 1, 0, 2, 24
            key_at, key_len = 12, 12
        elif version == 6:
            unpack = _V6TCP_RUN_HDR if back else _V6TCP_RUN
            iph, kind, length_of_n, len_at, seq_at = 40, 2, 40, 4, 44
            key_at, key_len = 8, 36
        else:
            return None
        if last_n < iph + 20:
            return None
        # the first packet, checked in full as _classify_tcp_run checks a flow's first
        h, a, length, b, _key, seq0, _ack, v32 = unpack(buf, o0 - back)
        v32 &= 0xF0FF
        doff = (v32 >> 10) & 0x3C
        hlen = iph + doff
        gso = n - hlen
        last_gso = last_n - hlen
        compat = _run_head(kind, h, bytes(back), v32, doff, gso, length + length_of_n, n, a, b)
        if compat < 0 or last_gso < 1:
            return None
        same = _V4_SAME if kind == 1 else _V6_SAME
        (last_length,) = _unpack_H(buf, offsets[-1] + len_at)
        if last_length + length_of_n != last_n:
            return None
        # Byte positions, each across the batch: ``col(f)`` is byte ``f`` of every packet.
        stop = o0 + (k - 1) * stride + 1
        for f in same:  # the same in every packet, whatever the flow
            col = buf[o0 + f : stop + f : stride]
            if col.count(col[0]) != k:
                return None
        for f in range(-back, 0):  # virtio-net headers: all zero
            if buf[o0 + f : stop + f : stride].count(0) != k:
                return None
        # the length field: the packet's length, the short last one checked above
        for f in (len_at, len_at + 1):
            col = buf[o0 + f : stop + f - stride : stride]
            if col.count(col[0]) != k - 1:
                return None
        # the data offset (not the AE and reserved bits beside it), and the flags: ACK or ACK|PSH
        col = buf[o0 + iph + 12 : stop + iph + 12 : stride].translate(_HIGH_NIBBLE)
        if col.count(col[0]) != k:
            return None
        if kind == 2:  # version and traffic class: 12 bits, the flow label not compared
            col = buf[o0 + 1 : stop + 1 : stride].translate(_HIGH_NIBBLE)
            if col.count(col[0]) != k:
                return None
        flags_col = buf[o0 + iph + 13 : stop + iph + 13 : stride]
        pshed = flags_col.count(_ACK | _PSH)
        if flags_col.count(_ACK) + pshed != k:
            return None
        # Where the flow (addresses and ports), the ACK number or the TCP options change (a
        # timestamp moving on): each such packet starts a segment. Where a column is not
        # constant, the packets that differ from the one before are the non-zero bytes of its
        # XOR with itself shifted by one packet.
        changed = 0
        for f in (*range(key_at, key_at + key_len), *range(seq_at + 4, seq_at + 8)):
            col = buf[o0 + f : stop + f : stride]
            if col.count(col[0]) != k:
                changed |= int.from_bytes(col[1:], "big") ^ int.from_bytes(col[:-1], "big")
        for f in range(iph + 20, hlen):
            col = buf[o0 + f : stop + f : stride]
            if col.count(col[0]) != k:
                changed |= int.from_bytes(col[1:], "big") ^ int.from_bytes(col[:-1], "big")
        # Sequence numbers: each packet's is the one before's plus a full segment, except
        # where the flow changes and where packets are missing (lost on the way: a gap) —
        # those start segments too. Found at once: the four byte columns laid into the low
        # halves of 64-bit slots, read as one number; the slots from the second packet on XOR
        # the slots from the first plus ``gso`` each (no carry crosses a slot) are zero but
        # where the sequence breaks. Each slot's low four bytes OR-ed into one: a change mark.
        wide = bytearray(8 * k)
        for j in range(4):
            f = seq_at + j
            wide[4 + j :: 8] = buf[o0 + f : stop + f : stride]
        x = int.from_bytes(wide, "big")
        ones = _repunit64(k)
        ramp = x + gso * ones
        breaks = (x & _mask(64 * (k - 1))) ^ (ramp >> 64)
        # whether some packet's sequence number plus a segment passes 2**32: then the order
        # of the numbers is not the order of the stream, and a gap is left to the slow way
        wraps = ramp & (ones << 32)
        if breaks:
            raw = breaks.to_bytes(8 * (k - 1), "big")
            # (the top four bytes of a slot hold only a carry, where the numbers wrap: modulo
            # 2**32 the stream goes on there)
            for j in range(4, 8):
                changed |= int.from_bytes(raw[j::8], "big")
        cuts = [0]
        if changed:
            marks = changed.to_bytes(k - 1, "big").translate(_NON_ZERO)
            if marks.count(1) > k >> 2:
                return None  # short segments (flows interleaved packet by packet): the
                # packet-at-a-time way is quicker
            c = marks.find(1)
            while c >= 0:
                cuts.append(c + 1)
                c = marks.find(1, c + 1)
        cuts.append(k)
        # Items, as the rules make them: a segment continues its flow's last item if that one
        # ends where the segment begins and has the same ACK number and options; one that
        # begins further on (packets missing) starts a new item; one that begins before
        # (reordered, repeated) leaves the batch to the slow way; an item ends after a PSH, at
        # max_segments members, before a segment that would pass 65535 bytes, and before a
        # segment of other words.
        psh_at = []
        if pshed:
            p = flags_col.find(_ACK | _PSH)
            while p >= 0:
                psh_at.append(p)
                p = flags_col.find(_ACK | _PSH, p + 1)
        psh_at.append(k)  # a sentinel
        max_segs = self._max_segments
        full_end = k if last_n == n else k - 1
        slots: list[int | _Item] = []
        too_large = 0
        flows: dict[bytes, tuple[_Item, bytes]] = {}
        next_psh = 0
        for s, e in pairwise(cuts):
            o = offsets[s]
            key = bytes(buf[o + key_at : o + key_at + key_len])
            words = bytes(buf[o + seq_at + 4 : o + seq_at + 8]) + bytes(
                buf[o + iph + 20 : o + hlen]
            )
            seq_s = seq0 if s == 0 else _unpack_I(buf, o + seq_at)[0]
            it: _Item | None = None
            state = flows.get(key)
            if state is not None:
                it, its_words = state
                end = it[_IT_SEQ] + it[_IT_PAYLOAD]
                if seq_s != end & 0xFFFFFFFF:
                    if seq_s < end or wraps:
                        return None  # reordered, repeated or wrapped: left to the slow way
                    # Packets missing before this one: a new item. No item of the flow could
                    # take it or the rest of the segment (the general classifier's append or
                    # prepend): they all lie below, and the numbers do not wrap.
                    it = None
                elif words != its_words:
                    it = None
            opts = words[4:]
            i = s
            while i < e:
                while psh_at[next_psh] < i:
                    next_psh += 1
                p = psh_at[next_psh]
                if it is not None:
                    members = it[_IT_MEMBERS]
                    pay = it[_IT_PAYLOAD]
                    i_gso = it[_IT_GSO]
                    g = last_gso if i == full_end else gso
                    if it[_IT_PSH] or pay % i_gso or g > i_gso or len(members) >= max_segs:
                        it = None
                        continue
                    if i == full_end:  # the short last segment
                        if hlen + pay + g <= _MAX_IP:
                            members.append(i)
                            it[_IT_PAYLOAD] = pay + g
                            it[_IT_PSH] = p == i
                            i += 1
                        else:
                            too_large += 1
                            it = None
                        continue
                    fit = (_MAX_IP - hlen - pay) // gso
                    if fit < 1:
                        too_large += 1
                        it = None
                        continue
                    end = min(i + fit, i + max_segs - len(members), e, full_end, p + 1)
                    members.extend(range(i, end))
                    it[_IT_PAYLOAD] = pay + (end - i) * gso
                    it[_IT_PSH] = p < end
                    i = end
                    continue
                g = last_gso if i == full_end else gso
                it = [[i], seq_s + (i - s) * gso, g, g, doff, p == i, compat, opts, 1, kind]
                slots.append(it)
                flows[key] = (it, words)
                i += 1
        return slots, too_large

    def _classify_tcp_run(self, src: PacketBatch) -> tuple[list[int | _Item], int] | None:
        """Pass 1 for what a tunnel mostly delivers: trusted TCP packets of one IP version, each
        flow's (pair of addresses and ports) right after that flow's one before — bulk
        transfers' segments, decrypted in order, the flows interleaved or not. The items are
        those :meth:`_classify` makes of such a batch: a packet that cannot join its flow's
        last item (a different ACK number, ToS/traffic class, TTL/hop limit or TCP options, a
        PSH before it, a shorter segment, the size cap) starts the next, as no earlier item
        could take it. A packet without payload (a pure ACK: the other direction of a
        transfer, decrypted in the same batch) passes through unmerged, as :meth:`_classify`
        passes it. Returned with the count of merges refused for size, ~40 % cheaper;
        ``None`` for any other batch (a gap, reordering, the other IP version, IPv4 options,
        IPv6 extension headers, another protocol, flags other than ACK and PSH), which then
        goes the general way. Only with ``verify_checksums`` off."""
        buf = src.buffer
        offsets = src.offsets
        lengths = src.lengths
        if not offsets:
            return None
        # with headers: unpacked from the headroom on, so a non-zero header is seen too
        back = HEADROOM if src.vnet_hdr else 0
        # the header length; how far the first word is shifted before it is compared; the
        # item kind; what the length field lacks of the packet's length (IPv4: the total
        # length, nothing; IPv6: the payload length, the 40-byte header)
        if buf[offsets[0]] >> 4 == 4:
            unpack = _V4TCP_RUN_HDR if back else _V4TCP_RUN
            iph, shift, kind, length_of_n = 20, 0, 1, 0
        else:
            unpack = _V6TCP_RUN_HDR if back else _V6TCP_RUN
            # the flow label is not compared (as in _classify)
            iph, shift, kind, length_of_n = 40, 20, 2, 40
        max_segs = self._max_segments
        zero = bytes(back)
        slots: list[int | _Item] = []
        # per flow: [last item, the words its later packets must equal, its options]
        flows: dict[bytes, list[Any]] = {}
        flow = b""  # the flow of the packet before (most batches are one flow)
        state: list[Any] | None = None
        too_large = 0
        idx = 0
        for off in offsets:
            n = lengths[idx]
            if n < iph + 20:
                return None
            h, a, length, b, key, seq, ack, v32 = unpack(buf, off - back)
            # data offset and flags; the reserved bits and AE between them are ignored, as
            # _classify ignores them (it reads the data offset and the flags byte only)
            v32 &= 0xF0FF
            doff = (v32 >> 10) & 0x3C
            gso = n - iph - doff
            if gso < 1:
                # No payload (a pure ACK: the other direction of a transfer, in the same
                # batch): nothing to merge; _classify passes such a packet through as it is,
                # whatever its flow holds, once it is a TCP packet it reads that far. Left out
                # of the flows here too, it no longer sends the whole batch the general way.
                if _run_head(kind, h, zero, v32, doff, 1, length + length_of_n, n, a, b) < 0:
                    return None
                slots.append(idx)
                idx += 1
                continue
            if key != flow:
                flow = key
                state = flows.get(key)
            if state:
                item, w_a, w_b, w_ack, w32, opts = state
                i_pay = item[_IT_PAYLOAD]
                if seq != (item[_IT_SEQ] + i_pay) & 0xFFFFFFFF:
                    return None  # a gap or reordering
                if (
                    a >> shift == w_a
                    and b == w_b
                    and ack == w_ack
                    and (v32 == w32 or v32 == w32 | _PSH)
                    and length + length_of_n == n
                    and h == zero
                    and gso > 0
                    and (not opts or buf[off + iph + 20 : off + iph + doff] == opts)
                ):
                    members = item[_IT_MEMBERS]
                    i_gso = item[_IT_GSO]
                    if not (
                        item[_IT_PSH] or i_pay % i_gso or gso > i_gso or len(members) >= max_segs
                    ):
                        if iph + doff + i_pay + gso <= _MAX_IP:
                            members.append(idx)
                            item[_IT_PAYLOAD] = i_pay + gso
                            if v32 & _PSH:
                                item[_IT_PSH] = True
                            idx += 1
                            continue
                        too_large += 1
                    # the next item of the flow, with the same words
                    psh = bool(v32 & _PSH)
                    item = [[idx], seq, gso, gso, doff, psh, item[_IT_COMPAT], opts, 1, kind]
                    state[0] = item
                    slots.append(item)
                    idx += 1
                    continue
            # a new flow, or a packet that differs from its flow's last item: checked in full
            compat = _run_head(kind, h, zero, v32, doff, gso, length + length_of_n, n, a, b)
            if compat < 0:
                return None
            opts = bytes(buf[off + iph + 20 : off + iph + doff]) if doff > 20 else b""
            item = [[idx], seq, gso, gso, doff, bool(v32 & _PSH), compat, opts, 1, kind]
            state = [item, a >> shift, b, ack, v32 & ~_PSH, opts]
            flows[key] = state
            slots.append(item)
            idx += 1
        return slots, too_large

    def _classify(self, src: PacketBatch) -> tuple[list[int | _Item], int, int]:
        """Group the packets; return the output slots, invalid-checksum and too-large counts."""
        buf = src.buffer
        view = src.view
        lengths = src.lengths
        tcp_on = self.tcp
        udp_on = bool(self.udp)
        max_segs = self._max_segments
        # the kernel refuses (EINVAL) a USO write of more segments than it sends in one
        # UDP_SEGMENT call — and a refused GSO write turns the device's UDP coalescing off
        udp_max_segs = min(max_segs, UDP_MAX_SEGMENTS)
        tcp_flows = self._tcp_flows
        udp_flows = self._udp_flows
        tcp_flows.clear()
        udp_flows.clear()
        check_hdr = src.vnet_hdr
        # checksum states: 0 not checked yet, 1 valid, -1 invalid; trusted input starts valid
        unknown = 0 if self.verify_checksums else 1
        slots: list[int | _Item] = []
        append_slot = slots.append
        invalid = too_large = 0
        for idx, off in enumerate(src.offsets):
            n = lengths[idx]
            if n < 28:
                append_slot(idx)
                if udp_flows and n >= 24:  # (cut short, but its ports are there)
                    _end_udp_flow(udp_flows, buf, off, n)
                continue
            if n > _MAX_IP:
                append_slot(idx)
                if udp_flows:
                    _end_udp_flow(udp_flows, buf, off, n)
                continue
            if check_hdr and buf[off - HEADROOM : off] != _ZERO_HDR:
                append_slot(~idx)  # already a GSO packet (or carries flags): pass through
                if udp_flows:
                    _end_udp_flow(udp_flows, buf, off, n)
                continue
            b0 = buf[off]
            if b0 == 0x45:
                proto = buf[off + 9]
                if proto == _TCP and tcp_on and n >= 40:
                    (_, tos, tot, _, frag, ttl, _, _, addrs, ports, seq, ack, doff, flags) = _V4TCP(
                        buf, off
                    )
                    if tot != n or frag & 0x3FFF:  # length mismatch, MF or fragment offset
                        append_slot(idx)
                        continue
                    compat = (tos << 16) | ((frag >> 13) << 8) | ttl
                    iph = 20
                    kind = 1
                elif proto == _UDP and udp_on:
                    (_, tos, tot, _, frag, ttl, _, _, addrs, ports, ulen, ucs) = _V4UDP(buf, off)
                    if tot != n or frag & 0x3FFF:
                        append_slot(idx)
                        if not frag & 0x1FFF:  # (a later fragment has no ports to tell)
                            udp_flows.pop((addrs, ports), None)
                        continue
                    compat = (tos << 16) | ((frag >> 13) << 8) | ttl
                    iph = 20
                    kind = 3
                else:
                    append_slot(idx)
                    continue
            elif b0 >> 4 == 6:
                nh = buf[off + 6]
                if nh == _TCP and tcp_on and n >= 60:
                    (vtf, plen, _, hop, addrs, ports, seq, ack, doff, flags) = _V6TCP(buf, off)
                    kind = 2
                elif nh == _UDP and udp_on and n >= 48:
                    (vtf, plen, _, hop, addrs, ports, ulen, ucs) = _V6UDP(buf, off)
                    kind = 4
                else:
                    append_slot(idx)
                    if udp_flows:  # (extension headers)
                        _end_udp_flow(udp_flows, buf, off, n)
                    continue
                if plen + 40 != n:
                    append_slot(idx)
                    if kind == 4:
                        udp_flows.pop((addrs, ports), None)
                    continue
                compat = ((vtf >> 20) << 8) | hop  # version + traffic class, hop limit
                iph = 40
            else:
                append_slot(idx)
                if udp_flows:  # (IPv4 options)
                    _end_udp_flow(udp_flows, buf, off, n)
                continue

            if kind <= 2:  # ---- TCP
                doff = (doff >> 4) << 2
                if doff < 20 or n < iph + doff:
                    append_slot(idx)
                    continue
                if flags == _ACK:
                    psh = False
                elif flags == _ACK | _PSH:
                    psh = True
                else:
                    append_slot(idx)
                    continue
                gso = n - iph - doff
                if gso < 1:
                    append_slot(idx)
                    continue
                opts = bytes(view[off + iph + 20 : off + iph + doff]) if doff > 20 else b""
                key = (addrs, ports, ack)
                items = tcp_flows.get(key)
                if items is not None:
                    merged = False
                    pkt_ok = unknown
                    j = len(items) - 1
                    while j >= 0:
                        item = items[j]
                        members: list[int] = item[_IT_MEMBERS]
                        if (
                            len(members) >= max_segs
                            or item[_IT_L4H] != doff
                            or item[_IT_COMPAT] != compat
                            or (doff > 20 and item[_IT_OPTS] != opts)
                        ):
                            j -= 1
                            continue
                        i_seq: int = item[_IT_SEQ]
                        i_pay: int = item[_IT_PAYLOAD]
                        i_gso: int = item[_IT_GSO]
                        if seq == (i_seq + i_pay) & 0xFFFFFFFF:
                            if item[_IT_PSH] or i_pay % i_gso or gso > i_gso:
                                j -= 1
                                continue
                            prepend = False
                        elif (seq + gso) & 0xFFFFFFFF == i_seq:
                            if psh or gso < i_gso or (gso > i_gso and len(members) > 1):
                                j -= 1
                                continue
                            prepend = True
                        else:
                            j -= 1
                            continue
                        if iph + doff + i_pay + gso > _MAX_IP:
                            too_large += 1
                            j -= 1
                            continue
                        if item[_IT_CSUM] == 0:
                            h = members[0]
                            ho = src.offsets[h]
                            if not _l4_valid(view, ho, lengths[h], iph, _TCP):
                                # Drop the item from the table; its packet goes out alone.
                                invalid += 1
                                item[_IT_CSUM] = -1
                                del items[j]
                                j -= 1
                                continue
                            item[_IT_CSUM] = 1
                        if pkt_ok == 0:
                            pkt_ok = 1 if _l4_valid(view, off, n, iph, _TCP) else -1
                        if pkt_ok < 0:
                            invalid += 1
                            break
                        if prepend:
                            members.insert(0, idx)
                            item[_IT_SEQ] = seq
                        else:
                            members.append(idx)
                            if psh:
                                item[_IT_PSH] = True
                        if gso > i_gso:
                            item[_IT_GSO] = gso
                        item[_IT_PAYLOAD] = i_pay + gso
                        merged = True
                        break
                    if merged:
                        continue
                    if pkt_ok < 0:
                        append_slot(idx)
                        continue
                    new = [[idx], seq, gso, gso, doff, psh, compat, opts, pkt_ok, kind]
                    items.append(new)
                else:
                    new = [[idx], seq, gso, gso, doff, psh, compat, opts, unknown, kind]
                    tcp_flows[key] = [new]
                append_slot(new)
                continue

            # ---- UDP
            gso = n - iph - 8
            ukey = (addrs, ports)
            if gso < 1 or ulen != n - iph:
                # Alone: an empty datagram, or one whose UDP length is not its IP payload's
                # (padding, or a lie) — merged, the kernel's split would cut the super-packet at
                # the wrong bytes. It ends its flow's item: a later datagram joining that item
                # would overtake it.
                append_slot(idx)
                udp_flows.pop(ukey, None)
                continue
            uitems = udp_flows.get(ukey)
            pkt_state = unknown
            if uitems is not None:
                # Only the flow's last item: anything else could reorder datagrams.
                item = uitems[-1]
                members = item[_IT_MEMBERS]
                i_pay = item[_IT_PAYLOAD]
                i_gso = item[_IT_GSO]
                if (
                    len(members) < udp_max_segs
                    and item[_IT_COMPAT] == compat
                    and not i_pay % i_gso
                    and gso <= i_gso
                ):
                    if iph + 8 + i_pay + gso > _MAX_IP:
                        too_large += 1
                    else:
                        if item[_IT_CSUM] == 0:
                            h = members[0]
                            ho = src.offsets[h]
                            ok = _udp_ok(view, ho, lengths[h], iph, _unpack_H(buf, ho + iph + 6)[0])
                            item[_IT_CSUM] = 1 if ok else -1
                            if not ok:
                                invalid += 1
                        if item[_IT_CSUM] > 0:
                            # (_udp_ok, inline: one call fewer a datagram)
                            if unknown or (
                                _l4_valid(view, off, n, iph, _UDP)
                                if ucs or iph == 40
                                else not sum(_unpack_ip4_words(view, off)) % 0xFFFF
                            ):
                                members.append(idx)
                                item[_IT_PAYLOAD] = i_pay + gso
                                continue
                            invalid += 1
                            pkt_state = -1  # remembered, so it is not checked again
                new = [[idx], 0, gso, gso, 8, False, compat, b"", pkt_state, kind]
                uitems.append(new)
            else:
                new = [[idx], 0, gso, gso, 8, False, compat, b"", unknown, kind]
                udp_flows[ukey] = [new]
            append_slot(new)
        return slots, invalid, too_large

    # -- pass 2: lay the output out, one copy per byte -----------------------------------

    def _write(self, src: PacketBatch, out: PacketBatch, slots: list[int | _Item]) -> int:
        offsets = src.offsets
        lengths = src.lengths
        # Size check first, so a too-small batch fails before anything is written.
        need = 0
        for slot in slots:
            if isinstance(slot, int):
                need += HEADROOM + lengths[slot if slot >= 0 else ~slot]
            else:
                members: list[int] = slot[_IT_MEMBERS]
                if len(members) == 1:
                    need += HEADROOM + lengths[members[0]]
                else:
                    iph = 20 if slot[_IT_KIND] in (1, 3) else 40
                    need += HEADROOM + iph + slot[_IT_L4H] + slot[_IT_PAYLOAD]
        if need > len(out.buffer) or len(slots) > out.max_packets:
            raise PacketTooLargeError(
                f"coalesced output needs {need} bytes and {len(slots)} slots; the batch has "
                f"{len(out.buffer)} bytes and {out.max_packets} slots"
            )
        sview = src.view
        obuf = out.buffer
        oview = out.view
        o_offs = out.offsets
        o_lens = out.lengths
        pos = 0
        gso_packets = 0
        merged_in = 0
        for slot in slots:
            o = pos + HEADROOM
            if isinstance(slot, int):
                if slot >= 0:
                    s_off = offsets[slot]
                    n = lengths[slot]
                    obuf[pos:o] = _ZERO_HDR
                else:  # pass-through with its own header
                    s_off = offsets[~slot]
                    n = lengths[~slot]
                    obuf[pos:o] = sview[s_off - HEADROOM : s_off]
                obuf[o : o + n] = sview[s_off : s_off + n]
            else:
                members = slot[_IT_MEMBERS]
                head = members[0]
                s_off = offsets[head]
                if len(members) == 1:
                    n = lengths[head]
                    obuf[pos:o] = _ZERO_HDR
                    obuf[o : o + n] = sview[s_off : s_off + n]
                else:
                    n = _write_merged(slot, members, sview, offsets, lengths, obuf, oview, o)
                    gso_packets += 1
                    merged_in += len(members) - 1
            o_offs.append(o)
            o_lens.append(n)
            pos = o + n
        out.end = pos
        count = len(slots)
        self._in += len(offsets)
        self._out += count
        self._coalesced += merged_in
        self._gso += gso_packets
        return count


@functools.lru_cache(maxsize=64)  # bounded: batches come in a handful of sizes
def _repunit64(n: int) -> int:
    """``n`` 64-bit slots holding 1 each, as one number."""
    return int.from_bytes(b"\0\0\0\0\0\0\0\1" * n, "big")


def _run_head(
    kind: int,
    h: bytes,
    zero: bytes,
    v32: int,
    doff: int,
    gso: int,
    length: int,
    n: int,
    a: int,
    b: int,
) -> int:
    """What the in-order fast paths check in full of a flow's first packet (and of one that
    differs from its flow's last item), from the words they unpacked (``length``: what the IP
    length field says the packet's length is): its compat word (``_IT_COMPAT``), or -1 for a
    packet they leave to the general classifier."""
    flags = v32 & 0xFF
    if h != zero or (flags != _ACK and flags != _ACK | _PSH) or doff < 20 or gso < 1 or length != n:
        return -1
    if kind == 1:
        # version 4 with a 20-byte header; TCP; neither MF nor a fragment offset
        if a >> 8 != 0x45 or b & 0xFF != _TCP or b & 0x3FFF0000:
            return -1
        return ((a & 0xFF) << 16) | ((b >> 29) << 8) | ((b >> 8) & 0xFF)
    # version 6, TCP right after the fixed header (no extension headers)
    if a >> 28 != 6 or b >> 8 != _TCP:
        return -1
    return ((a >> 20) << 8) | (b & 0xFF)


def _end_udp_flow(
    flows: dict[tuple[bytes, int], list[_Item]], buf: bytearray, off: int, n: int
) -> None:
    """End the UDP flow of the packet at ``buf[off:off + n]``, one :meth:`GROTable._classify`
    sends alone without reading its flow (IPv4 options, IPv6 extension headers, a GSO header,
    over 65535 bytes): a later datagram of the flow must not join an item before it. Nothing
    when it is no UDP datagram whose ports lie in the buffer."""
    b0 = buf[off]
    if b0 >> 4 == 4:
        at = (b0 & 0x0F) << 2
        if at < 20 or buf[off + 9] != _UDP or (buf[off + 6] & 0x1F) or buf[off + 7]:
            return
        addrs = bytes(buf[off + 12 : off + 20])
    elif b0 >> 4 == 6:
        nh = buf[off + 6]
        at = 40
        while nh != _UDP:
            if at + 8 > n:
                return
            if nh in _IPV6_EXT_8:
                size = (buf[off + at + 1] + 1) << 3
            elif nh == _IPV6_AH:
                size = (buf[off + at + 1] + 2) << 2
            elif nh == _IPV6_FRAG and not _unpack_H(buf, off + at + 2)[0] & 0xFFF8:
                size = 8  # the first fragment: its UDP header follows
            else:
                return
            nh = buf[off + at]
            at += size
        addrs = bytes(buf[off + 8 : off + 40])
    else:
        return
    if at + 4 <= n:
        flows.pop((addrs, _unpack_I(buf, off + at)[0]), None)


def _l4_valid(view: memoryview, off: int, n: int, iph: int, proto: int) -> bool:
    """Whether the checksums of the packet at ``view[off:off + n]`` verify: the IPv4 header's
    (IPv4; the kernel's GRO checks it too, ``inet_gro_receive``, and a merge would compute it
    afresh, so hide it) and the TCP/UDP one."""
    if iph == 20:
        # The header's words sum to 0xFFFF (folded). As 2**16 is 1 modulo 0xFFFF, so are 2**32
        # and 2**64: the sum of the header read as two 64-bit and a 32-bit number is congruent
        # to the sum of its words — one unpack and one modulo, ~0.15 µs a packet (sum() of the
        # tuple costs more; an all-zero header, congruent too, never gets here: it begins 0x45).
        h0, h1, h2 = _unpack_ip4_words(view, off)
        if (h0 + h1 + h2) % 0xFFFF:
            return False
        a = off + 12
    else:
        a = off + 8
    # The addresses sit right before the transport header (IPv4 12..20, IPv6 8..40): one sum
    # covers them and the whole segment.
    return (_sum16(view[a : off + n]) + proto + n - iph) % 0xFFFF == 0


def _udp_ok(view: memoryview, off: int, n: int, iph: int, ucs: int) -> bool:
    """:func:`_l4_valid` for a UDP datagram whose checksum field holds ``ucs``."""
    # IPv4 UDP may carry no checksum at all (RFC 768); VXLAN encapsulators often do.
    if iph == 20 and not ucs:
        return not sum(_unpack_ip4_words(view, off)) % 0xFFFF  # the IPv4 header's
    return _l4_valid(view, off, n, iph, _UDP)


def _write_merged(
    item: _Item,
    members: list[int],
    sview: memoryview,
    offsets: list[int],
    lengths: list[int],
    obuf: bytearray,
    oview: memoryview,
    o: int,
) -> int:
    """Write one coalesced packet at ``obuf[o:]`` with its header before it; return its length."""
    kind: int = item[_IT_KIND]
    is_tcp = kind <= 2
    iph = 20 if kind in (1, 3) else 40
    hlen: int = iph + item[_IT_L4H]
    total: int = hlen + item[_IT_PAYLOAD]
    head = members[0]
    h_off = offsets[head]
    h_n = lengths[head]
    obuf[o : o + h_n] = sview[h_off : h_off + h_n]
    # the other members' payloads: joined, then copied once (a third cheaper per member than a
    # slice assignment each — benchmarks/offload_micro.py)
    rest = b"".join([sview[offsets[m] + hlen : offsets[m] + lengths[m]] for m in members[1:]])
    p = o + h_n
    obuf[p : p + len(rest)] = rest
    l4 = o + iph
    l4_len = total - iph
    if iph == 20:
        _pack_H(obuf, o + 2, total)
        obuf[o + 10] = obuf[o + 11] = 0
        _pack_H(obuf, o + 10, ~_sum16(oview[o : o + 20]) & 0xFFFF)
        pseudo = int.from_bytes(oview[o + 12 : o + 20], "big")
    else:
        _pack_H(obuf, o + 4, l4_len)
        pseudo = int.from_bytes(oview[o + 8 : o + 40], "big")
    if is_tcp:
        if item[_IT_PSH]:
            # Also when the PSH segment was the head and another was prepended (wireguard-go
            # loses the flag there).
            obuf[l4 + 13] |= _PSH
        pseudo += _TCP + l4_len
        cso = 16
    else:
        _pack_H(obuf, l4 + 4, l4_len)
        pseudo += _UDP + l4_len
        cso = 6
    # CHECKSUM_PARTIAL: the folded, not complemented, pseudo-header sum.
    _pack_H(obuf, l4 + cso, (pseudo - 1) % 0xFFFF + 1)
    _pack_vnet(
        obuf,
        o - HEADROOM,
        VIRTIO_NET_HDR_F_NEEDS_CSUM,
        _GSO_TYPE[kind],
        hlen,
        item[_IT_GSO],
        iph,
        cso,
    )
    return total
