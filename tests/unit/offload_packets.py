"""Packet builders and independent checkers shared by the offload tests.

The builders follow wireguard-go's test helpers (``tcp4Packet``, ``udp6Packet``,
``*MutateIPFields``): documentation addresses 192.0.2.1/2/3 and 2001:db8::1/2/3, port 1, TTL
and hop limit 64, TCP window 3000 and ACK number 1, valid IP and transport checksums. Unlike
them the payload is a recognisable pattern (byte ``k`` of a TCP stream is ``_pattern(k)``), so
a test can check where every byte went. Checksums come from ``dpkt.in_cksum`` (an
implementation independent of tunflow's), and so do the verifiers below.
"""

from __future__ import annotations

import struct

import dpkt

from tunflow.offload import (
    VIRTIO_NET_HDR,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP_L4,
)

Addr = tuple[bytes, int]

IP4_A: Addr = (bytes([192, 0, 2, 1]), 1)
IP4_B: Addr = (bytes([192, 0, 2, 2]), 1)
IP4_C: Addr = (bytes([192, 0, 2, 3]), 1)
IP6_A: Addr = (bytes.fromhex("20010db8000000000000000000000001"), 1)
IP6_B: Addr = (bytes.fromhex("20010db8000000000000000000000002"), 1)
IP6_C: Addr = (bytes.fromhex("20010db8000000000000000000000003"), 1)

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
TCP, UDP = 6, 17
# gVisor's IPv4Fields.Flags values, as wireguard-go's tests use them.
IPV4_FLAG_MF, IPV4_FLAG_DF = 1, 2


def pattern(start: int, n: int) -> bytes:
    """Bytes ``start .. start + n - 1`` of an endless recognisable stream."""
    return bytes(((k * 131) >> 3 ^ k) & 0xFF for k in range(start, start + n))


def inet_csum(data: bytes) -> int:
    """The Internet checksum (complemented, as stored) by dpkt."""
    return dpkt.in_cksum(data)


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return struct.pack(">4s4sxBH", src, dst, proto, length)
    return struct.pack(">16s16sIxxxB", src, dst, length, proto)


def ipv4_header(
    proto: int,
    l4_len: int,
    src: bytes,
    dst: bytes,
    *,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 0,
    ip_flags: int = 0,
    frag_offset: int = 0,
    options: bytes = b"",
    total_length: int | None = None,
) -> bytes:
    ihl = 20 + len(options)
    total = ihl + l4_len if total_length is None else total_length
    hdr = bytearray(
        struct.pack(
            ">BBHHHBBH4s4s",
            0x40 | (ihl >> 2),
            tos,
            total,
            ident,
            (ip_flags << 13) | frag_offset,
            ttl,
            proto,
            0,
            src,
            dst,
        )
        + options
    )
    hdr[10:12] = struct.pack(">H", inet_csum(bytes(hdr)))
    return bytes(hdr)


def ipv6_header(
    next_header: int,
    payload_len: int,
    src: bytes,
    dst: bytes,
    *,
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    return struct.pack(
        ">IHBB16s16s",
        (6 << 28) | (traffic_class << 20) | flow_label,
        payload_len,
        next_header,
        hop_limit,
        src,
        dst,
    )


def tcp_segment(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    flags: int,
    payload: bytes,
    *,
    ack: int = 1,
    window: int = 3000,
    options: bytes = b"",
    checksum: int | None = None,
) -> bytes:
    """A TCP header and payload with a valid checksum (or ``checksum`` when given)."""
    assert len(options) % 4 == 0
    doff = (20 + len(options)) >> 2
    seg = bytearray(
        struct.pack(">HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, window, 0, 0)
        + options
        + payload
    )
    c = inet_csum(_pseudo(src, dst, TCP, len(seg)) + bytes(seg)) if checksum is None else checksum
    seg[16:18] = struct.pack(">H", c)
    return bytes(seg)


def udp_datagram(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    payload: bytes,
    *,
    checksum: int | None = None,
) -> bytes:
    seg = bytearray(struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload)
    if checksum is None:
        c = inet_csum(_pseudo(src, dst, UDP, len(seg)) + bytes(seg))
        checksum = c or 0xFFFF
    seg[6:8] = struct.pack(">H", checksum)
    return bytes(seg)


def tcp4_packet(
    src: Addr,
    dst: Addr,
    flags: int,
    segment_size: int,
    seq: int,
    *,
    payload: bytes | None = None,
    ack: int = 1,
    tcp_options: bytes = b"",
    **ip: int,
) -> bytes:
    """wireguard-go's ``tcp4PacketMutateIPFields``: IPv4 + TCP, the IP fields in ``ip``."""
    data = pattern(seq - 1, segment_size) if payload is None else payload
    seg = tcp_segment(
        src[0], dst[0], src[1], dst[1], seq, flags, data, ack=ack, options=tcp_options
    )
    return ipv4_header(TCP, len(seg), src[0], dst[0], **ip) + seg


def tcp6_packet(
    src: Addr,
    dst: Addr,
    flags: int,
    segment_size: int,
    seq: int,
    *,
    payload: bytes | None = None,
    ack: int = 1,
    tcp_options: bytes = b"",
    **ip: int,
) -> bytes:
    data = pattern(seq - 1, segment_size) if payload is None else payload
    seg = tcp_segment(
        src[0], dst[0], src[1], dst[1], seq, flags, data, ack=ack, options=tcp_options
    )
    return ipv6_header(TCP, len(seg), src[0], dst[0], **ip) + seg


def udp4_packet(
    src: Addr,
    dst: Addr,
    payload_len: int,
    *,
    payload: bytes | None = None,
    start: int = 0,
    checksum: int | None = None,
    **ip: int,
) -> bytes:
    data = pattern(start, payload_len) if payload is None else payload
    seg = udp_datagram(src[0], dst[0], src[1], dst[1], data, checksum=checksum)
    return ipv4_header(UDP, len(seg), src[0], dst[0], **ip) + seg


def udp6_packet(
    src: Addr,
    dst: Addr,
    payload_len: int,
    *,
    payload: bytes | None = None,
    start: int = 0,
    **ip: int,
) -> bytes:
    data = pattern(start, payload_len) if payload is None else payload
    seg = udp_datagram(src[0], dst[0], src[1], dst[1], data)
    return ipv6_header(UDP, len(seg), src[0], dst[0], **ip) + seg


def flip_l4_checksum(packet: bytes) -> bytes:
    """wireguard-go's ``flipTCP4Checksum``/``flipUDP4Checksum`` on a packet without headroom."""
    iph = 20 if packet[0] >> 4 == 4 else 40
    at = iph + (16 if packet[9 if iph == 20 else 6] == TCP else 6)
    b = bytearray(packet)
    b[at] ^= 0xFF
    b[at + 1] ^= 0xFF
    return bytes(b)


# --- super-packets as the kernel hands them over ----------------------------------------


def vnet_hdr(
    flags: int = 0,
    gso_type: int = VIRTIO_NET_HDR_GSO_NONE,
    hdr_len: int = 0,
    gso_size: int = 0,
    csum_start: int = 0,
    csum_offset: int = 0,
) -> bytes:
    return VIRTIO_NET_HDR.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def partial_csum(packet: bytes, l4_at: int) -> bytes:
    """``packet`` as CHECKSUM_PARTIAL: its transport checksum field holds the folded
    pseudo-header sum, as the kernel leaves it for a GSO or ``NEEDS_CSUM`` packet."""
    v6 = packet[0] >> 4 == 6
    src, dst = (packet[8:24], packet[24:40]) if v6 else (packet[12:16], packet[16:20])
    proto = _l4_proto(packet)
    l4_len = len(packet) - l4_at
    # in_cksum returns the complement of the folded sum; undo it for the partial value.
    folded = ~inet_csum(_pseudo(src, dst, proto, l4_len)) & 0xFFFF
    at = l4_at + (16 if proto == TCP else 6)
    b = bytearray(packet)
    b[at : at + 2] = struct.pack(">H", folded)
    return bytes(b)


def _l4_proto(packet: bytes) -> int:
    if packet[0] >> 4 == 4:
        return packet[9]
    nh, at = packet[6], 40
    while nh not in (TCP, UDP):
        nh, at = packet[at], at + ((packet[at + 1] + 1) << 3)
    return nh


def tcp_super_packet(
    src: Addr,
    dst: Addr,
    payload_len: int,
    gso_size: int,
    *,
    v6: bool = False,
    seq: int = 1,
    flags: int = ACK | PSH,
    ident: int = 0,
    tcp_options: bytes = b"",
    ext_headers: bytes = b"",
    ext_first: int = 0,
    ecn: bool = False,
    kernel_hdr_len: int | None = None,
) -> bytes:
    """Virtio header + a TCP super-packet whose checksum field holds the partial sum."""
    data = pattern(seq - 1, payload_len)
    seg = tcp_segment(src[0], dst[0], src[1], dst[1], seq, flags, data, options=tcp_options)
    if v6:
        nh = ext_first if ext_headers else TCP
        ip = ipv6_header(nh, len(ext_headers) + len(seg), src[0], dst[0]) + ext_headers
        gso_type = VIRTIO_NET_HDR_GSO_TCPV6
    else:
        ip = ipv4_header(TCP, len(seg), src[0], dst[0], ident=ident, ip_flags=IPV4_FLAG_DF)
        gso_type = VIRTIO_NET_HDR_GSO_TCPV4
    if ecn:
        gso_type |= 0x80
    cs = len(ip)
    pkt = partial_csum(ip + seg, cs)
    hl = cs + 20 + len(tcp_options) if kernel_hdr_len is None else kernel_hdr_len
    return vnet_hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type, hl, gso_size, cs, 16) + pkt


def udp_super_packet(
    src: Addr,
    dst: Addr,
    payload_len: int,
    gso_size: int,
    *,
    v6: bool = False,
    ident: int = 0,
    ext_headers: bytes = b"",
    ext_first: int = 0,
) -> bytes:
    data = pattern(0, payload_len)
    seg = udp_datagram(src[0], dst[0], src[1], dst[1], data)
    if v6:
        nh = ext_first if ext_headers else UDP
        ip = ipv6_header(nh, len(ext_headers) + len(seg), src[0], dst[0]) + ext_headers
    else:
        ip = ipv4_header(UDP, len(seg), src[0], dst[0], ident=ident)
    cs = len(ip)
    pkt = partial_csum(ip + seg, cs)
    return (
        vnet_hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4, cs + 8, gso_size, cs, 6)
        + pkt
    )


# --- independent verifiers ---------------------------------------------------------------


def ipv4_header_ok(packet: bytes) -> bool:
    ihl = (packet[0] & 0x0F) << 2
    return inet_csum(bytes(packet[:ihl])) == 0


def l4_offset(packet: bytes) -> int:
    if packet[0] >> 4 == 4:
        return (packet[0] & 0x0F) << 2
    nh, at = packet[6], 40
    while nh not in (TCP, UDP):
        nh, at = packet[at], at + ((packet[at + 1] + 1) << 3)
    return at


def l4_checksum_ok(packet: bytes) -> bool:
    """Whether the TCP/UDP checksum of ``packet`` verifies (by dpkt's sum)."""
    packet = bytes(packet)
    v6 = packet[0] >> 4 == 6
    src, dst = (packet[8:24], packet[24:40]) if v6 else (packet[12:16], packet[16:20])
    at = l4_offset(packet)
    seg = packet[at:]
    return inet_csum(_pseudo(src, dst, _l4_proto(packet), len(seg)) + seg) == 0


def complete_partial(packet: bytes, l4_at: int) -> bytes:
    """What the kernel does with CHECKSUM_PARTIAL: sum from ``l4_at`` with the field as initial
    value, store the complement (computed here with dpkt)."""
    b = bytearray(packet)
    proto = _l4_proto(packet)
    at = l4_at + (16 if proto == TCP else 6)
    partial = b[at : at + 2]
    b[at : at + 2] = b"\0\0"
    s = dpkt.in_cksum_add(0, bytes(partial) + bytes(b[l4_at:]))
    c = dpkt.in_cksum_done(s)
    b[at : at + 2] = struct.pack(">H", c if c or proto == TCP else 0xFFFF)
    return bytes(b)


def tcp_fields(packet: bytes) -> tuple[int, int, int]:
    """``(seq, ack, flags)`` of a TCP packet."""
    at = l4_offset(packet)
    seq, ack = struct.unpack_from(">II", packet, at + 4)
    return seq, ack, packet[at + 13]


def ipv4_id(packet: bytes) -> int:
    return struct.unpack_from(">H", packet, 4)[0]
