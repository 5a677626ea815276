"""The header fields a filter or a rate limiter needs, read straight from a batch's arena.

:func:`parse` returns a small tuple per packet (no object beyond it) or, for a packet that is not
what its headers claim, a short *reason* string that the caller counts and drops on. It never
raises on packet contents: every length is checked before it is read.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "parse",
    "ethernet_header_length",
    "Fields",
    "NOT_IP",
    "L2_NOT_IP",
    "L2_TRUNCATED",
    "TCP",
    "UDP",
    "ICMP",
    "ICMPV6",
    "PROTOCOLS",
]

TCP: Final = 6
UDP: Final = 17
ICMP: Final = 1
ICMPV6: Final = 58
SCTP: Final = 132
UDPLITE: Final = 136
_PORTS: Final = frozenset({TCP, UDP, SCTP, UDPLITE, 33})  # 33: DCCP
_ICMPS: Final = frozenset({ICMP, ICMPV6})
_V6_EXT: Final = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_V6_FRAG: Final = 44
_V6_AH: Final = 51
_MAX_EXT: Final = 8

#: protocol names a configuration may use
PROTOCOLS: Final = {
    "icmp": ICMP,
    "tcp": TCP,
    "udp": UDP,
    "icmpv6": ICMPV6,
    "ipv6-icmp": ICMPV6,
    "sctp": SCTP,
    "gre": 47,
    "esp": 50,
    "ah": 51,
}

#: (version, protocol, source, destination, source port, destination port, ICMP type) with
#: addresses as ints and -1 where a field is absent (no ports, a later fragment)
Fields = tuple[int, int, int, int, int, int, int]

#: :func:`parse`'s answer for an Ethernet frame that carries no IP packet (ARP, …)
NOT_IP: Final = "not_ip"


#: :func:`ethernet_header_length`'s answers for a frame that carries no IP packet, and for one
#: too short for its own Ethernet and VLAN headers
L2_NOT_IP: Final = -1
L2_TRUNCATED: Final = -2


def ethernet_header_length(buf: bytearray, off: int, n: int) -> int:
    """Where the IP packet starts in the Ethernet frame at ``buf[off:off+n]``: 14 bytes, plus 4
    for each VLAN tag (802.1Q or 802.1ad, up to two); :data:`L2_NOT_IP` when the ethertype is
    neither IPv4 nor IPv6 (ARP…), :data:`L2_TRUNCATED` when the headers run past the frame.

    Example:
        >>> frame = bytearray(12) + b"\\x81\\x00\\x00\\x05\\x08\\x00" + bytearray(20)
        >>> ethernet_header_length(frame, 0, len(frame))
        18
        >>> ethernet_header_length(bytearray(12) + b"\\x08\\x06" + bytearray(28), 0, 42)
        -1
    """
    if n < 14:
        return L2_TRUNCATED
    etype = (buf[off + 12] << 8) | buf[off + 13]
    hdr = 14
    for _ in range(2):
        if etype != 0x8100 and etype != 0x88A8:
            break
        if n < hdr + 4:
            return L2_TRUNCATED
        etype = (buf[off + hdr + 2] << 8) | buf[off + hdr + 3]
        hdr += 4
    if etype != 0x0800 and etype != 0x86DD:
        return L2_NOT_IP
    return hdr


def parse(buf: bytearray, off: int, n: int, l2: bool = False) -> Fields | str:
    """The fields of the packet at ``buf[off:off+n]`` or the reason it is malformed.

    Args:
        buf: the batch's arena.
        off: where the packet starts.
        n: its length.
        l2: the packet is an Ethernet frame (a TAP device); up to two VLAN tags are skipped.

    Returns:
        A :data:`Fields` tuple, :data:`NOT_IP` for a non-IP frame, or a reason: ``truncated``,
        ``bad_version``, ``bad_header_length``, ``bad_length``, ``extension_headers``.

    Example:
        >>> pkt = bytearray.fromhex("450000200000400040110000c0000201c0000202") + bytes.fromhex(
        ...     "0035303900080000") + bytes(4)
        >>> parse(pkt, 0, len(pkt))[1:2], parse(pkt, 0, len(pkt))[4:6]
        ((17,), (53, 12345))
        >>> parse(pkt, 0, 10)
        'truncated'
    """
    if l2:
        hdr = ethernet_header_length(buf, off, n)
        if hdr < 0:
            return NOT_IP if hdr == L2_NOT_IP else "truncated"
        off += hdr
        n -= hdr
    if n < 1:
        return "truncated"
    b0 = buf[off]
    version = b0 >> 4
    if version == 4:
        if n < 20:
            return "truncated"
        ihl = (b0 & 0x0F) << 2
        if ihl < 20:
            return "bad_header_length"
        total = (buf[off + 2] << 8) | buf[off + 3]
        if total < ihl:
            return "bad_length"
        if total > n:
            return "truncated"
        proto = buf[off + 9]
        src = int.from_bytes(buf[off + 12 : off + 16], "big")
        dst = int.from_bytes(buf[off + 16 : off + 20], "big")
        if ((buf[off + 6] & 0x1F) << 8) | buf[off + 7]:
            return (4, proto, src, dst, -1, -1, -1)  # a later fragment: no transport header
        l4 = off + ihl
        end = off + total
    elif version == 6:
        if n < 40:
            return "truncated"
        end = off + 40 + ((buf[off + 4] << 8) | buf[off + 5])
        if end > off + n:
            return "truncated"
        src = int.from_bytes(buf[off + 8 : off + 24], "big")
        dst = int.from_bytes(buf[off + 24 : off + 40], "big")
        proto = buf[off + 6]
        l4 = off + 40
        # (one turn more than the headers allowed: the turn that finds the transport header)
        for _ in range(_MAX_EXT + 1):
            if proto in _V6_EXT:
                if l4 + 2 > end:
                    return "truncated"
                proto, l4 = buf[l4], l4 + ((buf[l4 + 1] + 1) << 3)
            elif proto == _V6_FRAG:
                if l4 + 8 > end:
                    return "truncated"
                later = ((buf[l4 + 2] << 8) | buf[l4 + 3]) >> 3
                proto, l4 = buf[l4], l4 + 8
                if later:
                    return (6, proto, src, dst, -1, -1, -1)
            elif proto == _V6_AH:
                if l4 + 2 > end:
                    return "truncated"
                proto, l4 = buf[l4], l4 + ((buf[l4 + 1] + 2) << 2)
            else:
                break
        else:
            return "extension_headers"
        if l4 > end:
            return "truncated"
    else:
        return "bad_version"
    if proto in _PORTS:
        if l4 + 4 > end:
            return "truncated"
        return (
            version,
            proto,
            src,
            dst,
            (buf[l4] << 8) | buf[l4 + 1],
            (buf[l4 + 2] << 8) | buf[l4 + 3],
            -1,
        )
    if proto in _ICMPS:
        if l4 + 2 > end:
            return "truncated"
        return (version, proto, src, dst, -1, -1, buf[l4])
    return (version, proto, src, dst, -1, -1, -1)
