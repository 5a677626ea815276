"""GSO split: wireguard-go's Test_handleVirtioRead, Tailscale's GSOSplit tests, tun-rs
regressions, and a byte-level check of every field of every segment."""

from __future__ import annotations

import struct

import dpkt
import pytest

from tunflow.errors import (
    MalformedPacketError,
    OffloadError,
    PacketTooLargeError,
    TruncatedPacketError,
)
from tunflow.offload import (
    IDEAL_BATCH_SIZE,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP,
    VIRTIO_NET_HDR_GSO_UDP_L4,
    complete_checksum,
    gso_segment_count,
    gso_split,
    gso_split_into,
    gso_split_size,
    pseudo_header_sum,
)
from tunflow.packet import HEADROOM, PacketBatch

from .offload_packets import (
    ACK,
    CWR,
    ECE,
    FIN,
    IP4_A,
    IP4_B,
    IP6_A,
    IP6_B,
    PSH,
    TCP,
    UDP,
    complete_partial,
    inet_csum,
    ipv4_header,
    ipv4_header_ok,
    ipv4_id,
    ipv6_header,
    l4_checksum_ok,
    l4_offset,
    partial_csum,
    pattern,
    tcp4_packet,
    tcp6_packet,
    tcp_fields,
    tcp_segment,
    tcp_super_packet,
    udp4_packet,
    udp6_packet,
    udp_datagram,
    udp_super_packet,
    vnet_hdr,
)

NEEDS_CSUM = VIRTIO_NET_HDR_F_NEEDS_CSUM


# --- an independent model of what each segment must look like ---------------------------


def expected_segments(src: bytes) -> list[bytes]:
    """What the kernel's GSO makes of ``src``, written out field by field (no tunflow code)."""
    _, gso_type, _, gso, cs, _ = struct.unpack("=BBHHHH", src[:10])
    pkt = src[10:]
    is_tcp = gso_type & 0x7F in (VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6)
    v6 = pkt[0] >> 4 == 6
    hdr_len = cs + ((pkt[cs + 12] >> 4) * 4 if is_tcp else 8)
    payload = pkt[hdr_len:]
    chunks = [payload[i : i + gso] for i in range(0, len(payload), gso)] or [b""]
    out = []
    for i, chunk in enumerate(chunks):
        seg = bytearray(pkt[:hdr_len] + chunk)
        if v6:
            seg[4:6] = struct.pack(">H", len(seg) - 40)
        else:
            ident = (struct.unpack_from(">H", pkt, 4)[0] + i) & 0xFFFF
            seg[2:6] = struct.pack(">HH", len(seg), ident)
            seg[10:12] = b"\0\0"
            seg[10:12] = struct.pack(">H", _inet(bytes(seg[:cs])))
        l4 = seg[cs:]
        if is_tcp:
            seq = (struct.unpack_from(">I", pkt, cs + 4)[0] + i * gso) & 0xFFFFFFFF
            l4[4:8] = struct.pack(">I", seq)
            if i != len(chunks) - 1:
                l4[13] &= ~(FIN | PSH)
            if gso_type & 0x80 and i:
                l4[13] &= ~CWR
        else:
            l4[4:6] = struct.pack(">H", len(l4))
        seg[cs:] = l4
        # The kernel's way: partial pseudo-header sum in the field, then complete (dpkt).
        out.append(complete_partial(partial_csum(bytes(seg), cs), cs))
    return out


def _inet(b: bytes) -> int:
    from .offload_packets import inet_csum

    return inet_csum(b)


def assert_split_ok(src: bytes, got: list[bytes]) -> None:
    """Compare with the model, and verify every checksum with dpkt independently."""
    assert got == expected_segments(src)
    for seg in got:
        assert l4_checksum_ok(seg)
        if seg[0] >> 4 == 4:
            assert ipv4_header_ok(seg)
            assert struct.unpack_from(">H", seg, 2)[0] == len(seg)
        else:
            assert struct.unpack_from(">H", seg, 4)[0] == len(seg) - 40


def split_all(src: bytes, capacity: int = 1 << 20, max_packets: int = 1024) -> list[bytes]:
    out = PacketBatch(capacity=capacity, max_packets=max_packets)
    assert gso_split(src, out) == gso_segment_count(src)
    return out.to_list()


def with_hdr(hdr: bytes, packet: bytes) -> bytes:
    return hdr + packet


# --- wireguard-go Test_handleVirtioRead -------------------------------------------------

VIRTIO_READ_CASES = [
    pytest.param(
        vnet_hdr(NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 40, 100, 20, 16),
        tcp4_packet(IP4_A, IP4_B, ACK | PSH, 200, 1),
        [140, 140],
        id="tcp4",
    ),
    pytest.param(
        vnet_hdr(NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV6, 60, 100, 40, 16),
        tcp6_packet(IP6_A, IP6_B, ACK | PSH, 200, 1),
        [160, 160],
        id="tcp6",
    ),
    pytest.param(
        vnet_hdr(NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4, 28, 100, 20, 6),
        udp4_packet(IP4_A, IP4_B, 200),
        [128, 128],
        id="udp4",
    ),
    pytest.param(
        vnet_hdr(NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4, 48, 100, 40, 6),
        udp6_packet(IP6_A, IP6_B, 200),
        [148, 148],
        id="udp6",
    ),
]


@pytest.mark.parametrize(("hdr", "pkt", "want_lens"), VIRTIO_READ_CASES)
def test_handle_virtio_read(hdr: bytes, pkt: bytes, want_lens: list[int]) -> None:
    src = hdr + pkt
    out = PacketBatch(capacity=IDEAL_BATCH_SIZE * 65535 // 8, max_packets=IDEAL_BATCH_SIZE)
    n = gso_split(src, out)
    assert n == len(want_lens) == len(out)
    assert out.lengths == want_lens
    segs = out.to_list()
    assert_split_ok(src, segs)
    # What wireguard-go's test does not check: bytes of the fields.
    if pkt[0] >> 4 == 4:
        assert [ipv4_id(s) for s in segs] == [0, 1]
    if pkt[9 if pkt[0] >> 4 == 4 else 6] == TCP:
        assert [tcp_fields(s) for s in segs] == [(1, 1, ACK), (101, 1, ACK | PSH)]
    else:
        at = l4_offset(segs[0])
        assert [struct.unpack_from(">H", s, at + 4)[0] for s in segs] == [108, 108]
    at = l4_offset(segs[0])
    hl = at + (20 if pkt[9 if pkt[0] >> 4 == 4 else 6] == TCP else 8)
    assert segs[0][hl:] + segs[1][hl:] == pkt[hl:]


@pytest.mark.parametrize(("hdr", "pkt", "want_lens"), VIRTIO_READ_CASES)
def test_handle_virtio_read_tun_rs_style(hdr: bytes, pkt: bytes, want_lens: list[int]) -> None:
    bufs = [bytearray(65535) for _ in range(IDEAL_BATCH_SIZE)]
    sizes = [0] * IDEAL_BATCH_SIZE
    offset = 10
    n = gso_split_into(hdr + pkt, bufs, sizes, offset)
    assert n == len(want_lens)
    assert sizes[:n] == want_lens
    got = [bytes(bufs[i][offset : offset + sizes[i]]) for i in range(n)]
    assert_split_ok(hdr + pkt, got)


def test_scapy_agrees() -> None:
    # A third opinion: scapy recomputes lengths and checksums of our segments identically.
    scapy_all = pytest.importorskip("scapy.all")
    for src in (
        tcp_super_packet(IP4_A, IP4_B, 5000, 1448),
        tcp_super_packet(IP6_A, IP6_B, 5000, 1400, v6=True),
        udp_super_packet(IP4_A, IP4_B, 3000, 1200),
        udp_super_packet(IP6_A, IP6_B, 3001, 1200, v6=True),
    ):
        for seg in split_all(src):
            if seg[0] >> 4 == 4:
                p = scapy_all.IP(seg)
                del p[scapy_all.IP].chksum, p[scapy_all.IP].len
            else:
                p = scapy_all.IPv6(seg)
                del p[scapy_all.IPv6].plen
            l4 = p[scapy_all.TCP] if scapy_all.TCP in p else p[scapy_all.UDP]
            del l4.chksum
            if scapy_all.UDP in p:
                del l4.len
            assert bytes(p) == seg


# --- kernel-like super-packets, every field ---------------------------------------------


@pytest.mark.parametrize("v6", [False, True], ids=["v4", "v6"])
@pytest.mark.parametrize(
    ("payload", "gso"),
    [
        (45 * 1448, 1448),
        (65535 - 40, 1448),
        (1, 1448),
        (1448, 1448),
        (3000, 7),
        (4097, 512),
    ],
)
def test_tcp_split_fields(v6: bool, payload: int, gso: int) -> None:
    if v6:
        payload = min(payload, 65535 - 20)
    src = tcp_super_packet(
        IP6_A if v6 else IP4_A, IP6_B if v6 else IP4_B, payload, gso, v6=v6, ident=0x1234, seq=1000
    )
    segs = split_all(src)
    assert len(segs) == -(-payload // gso)
    assert_split_ok(src, segs)
    at = l4_offset(segs[0])
    assert b"".join(s[at + 20 :] for s in segs) == pattern(999, payload)
    seqs = [tcp_fields(s)[0] for s in segs]
    assert seqs == [1000 + i * gso for i in range(len(segs))]
    assert [tcp_fields(s)[2] for s in segs] == [ACK] * (len(segs) - 1) + [ACK | PSH]
    if not v6:
        assert [ipv4_id(s) for s in segs] == [0x1234 + i for i in range(len(segs))]
        assert all(s[6] & 0x40 for s in segs)  # DF kept


@pytest.mark.parametrize("v6", [False, True], ids=["v4", "v6"])
@pytest.mark.parametrize(("payload", "gso"), [(64000, 1400), (1, 1200), (2400, 1200), (2401, 1200)])
def test_udp_split_fields(v6: bool, payload: int, gso: int) -> None:
    src = udp_super_packet(
        IP6_A if v6 else IP4_A, IP6_B if v6 else IP4_B, payload, gso, v6=v6, ident=7
    )
    segs = split_all(src)
    assert len(segs) == -(-payload // gso)
    assert_split_ok(src, segs)
    at = l4_offset(segs[0])
    assert b"".join(s[at + 8 :] for s in segs) == pattern(0, payload)
    for s in segs:
        assert struct.unpack_from(">H", s, at + 4)[0] == len(s) - at


def test_fin_psh_only_on_last_and_cwr_only_on_first() -> None:
    src = tcp_super_packet(IP4_A, IP4_B, 300, 100, flags=ACK | PSH | FIN | CWR | ECE, ecn=True)
    segs = split_all(src)
    assert [tcp_fields(s)[2] for s in segs] == [
        ACK | CWR | ECE,
        ACK | ECE,
        ACK | PSH | FIN | ECE,
    ]
    assert_split_ok(src, segs)


def test_sequence_and_id_wrap() -> None:
    src = tcp_super_packet(IP4_A, IP4_B, 400, 100, seq=0xFFFFFF00, ident=0xFFFE)
    segs = split_all(src)
    assert [tcp_fields(s)[0] for s in segs] == [0xFFFFFF00, 0xFFFFFF64, 0xFFFFFFC8, 0x2C]
    assert [ipv4_id(s) for s in segs] == [0xFFFE, 0xFFFF, 0, 1]
    assert_split_ok(src, segs)


def test_tcp_options_copied_into_every_segment() -> None:
    opts = bytes.fromhex("0101080a0000000100000002")  # NOP NOP timestamps
    src = tcp_super_packet(IP4_A, IP4_B, 5000, 1448, tcp_options=opts)
    segs = split_all(src)
    assert all(s[40:52] == opts for s in segs)
    assert_split_ok(src, segs)


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_ipv4_options_copied_and_covered_by_the_header_checksum(proto: str) -> None:
    # csum_start is the IHL (24 here): every segment repeats the options, and its IPv4 header
    # checksum covers them (RFC 791: the checksum is over the whole header).
    opts = bytes([0x94, 4, 0, 0])  # Router Alert
    data = pattern(0, 2500)
    if proto == "tcp":
        l4 = tcp_segment(IP4_A[0], IP4_B[0], 1, 1, 1, ACK | PSH, data)
        gso_type, hdr_len, cso = VIRTIO_NET_HDR_GSO_TCPV4, 44, 16
    else:
        l4 = udp_datagram(IP4_A[0], IP4_B[0], 1, 1, data)
        gso_type, hdr_len, cso = VIRTIO_NET_HDR_GSO_UDP_L4, 32, 6
    ip = ipv4_header(TCP if proto == "tcp" else UDP, len(l4), IP4_A[0], IP4_B[0], options=opts)
    src = vnet_hdr(NEEDS_CSUM, gso_type, hdr_len, 1000, 24, cso) + partial_csum(ip + l4, 24)
    segs = split_all(src)
    assert len(segs) == 3
    assert all(seg[20:24] == opts for seg in segs)
    assert_split_ok(src, segs)


@pytest.mark.parametrize("kernel_hdr_len", [0, 1000, 40 + 1448, 60])
def test_hdr_len_is_recomputed(kernel_hdr_len: int) -> None:
    # On the FORWARD path the kernel's hdr_len can cover the whole first segment.
    src = tcp_super_packet(IP4_A, IP4_B, 3000, 1448, kernel_hdr_len=kernel_hdr_len)
    assert_split_ok(src, split_all(src))
    assert split_all(src) == split_all(tcp_super_packet(IP4_A, IP4_B, 3000, 1448))


EXT_HBH = bytes([TCP, 0]) + bytes(6)  # hop-by-hop, 8 bytes, padding options
EXT_DST_UDP = bytes([UDP, 1]) + bytes(14)  # destination options, 16 bytes


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_ipv6_extension_headers_counted_in_payload_length(proto: str) -> None:
    # tun-rs PR #111: payload length is relative to the fixed 40-byte header.
    if proto == "tcp":
        ext = bytes([60, 0]) + bytes(6) + bytes([TCP, 0]) + bytes(6)  # HBH -> DSTOPTS -> TCP
        src = tcp_super_packet(IP6_A, IP6_B, 3000, 1000, v6=True, ext_headers=ext, ext_first=0)
    else:
        src = udp_super_packet(
            IP6_A, IP6_B, 3000, 1000, v6=True, ext_headers=EXT_DST_UDP, ext_first=60
        )
    segs = split_all(src)
    assert len(segs) == 3
    ext_len = 16
    for s in segs:
        assert s[40 : 40 + ext_len] == src[10 + 40 : 10 + 40 + ext_len]
        assert struct.unpack_from(">H", s, 4)[0] == len(s) - 40
    assert_split_ok(src, segs)


def _routed_super_packet(proto: str, rtype: int, segs_left: int) -> tuple[bytes, bytes]:
    """A super-packet with a routing header, as the kernel hands it over: IPv6 destination
    the next hop, the TCP/UDP partial sum over the final destination (RFC 8200 8.1); and that
    final destination."""
    final, hop = IP6_B[0], bytes.fromhex("20010db8000000000000000000000099")
    nh = TCP if proto == "tcp" else UDP
    if rtype == 4:  # SRv6: Segment List[0] is the last segment, the list runs backwards
        addrs = [final, hop]
        rh = bytes([nh, 2 * len(addrs), 4, segs_left, len(addrs) - 1, 0, 0, 0]) + b"".join(addrs)
    elif rtype == 2:  # Mobile IPv6: the home address
        rh = bytes([nh, 2, 2, segs_left]) + bytes(4) + final
    else:  # type 0: the hops in order, the last one final
        rh = bytes([nh, 4, 0, segs_left]) + bytes(4) + hop + final
    data = pattern(0, 3000)
    if proto == "tcp":
        l4 = tcp_segment(IP6_A[0], final, 1, 1, 1, ACK, data)
    else:
        l4 = udp_datagram(IP6_A[0], final, 1, 1, data)
    cs = 40 + len(rh)
    pkt = bytearray(ipv6_header(43, len(rh) + len(l4), IP6_A[0], hop) + rh + l4)
    field = cs + (16 if proto == "tcp" else 6)
    pseudo = struct.pack(">16s16sIxxxB", IP6_A[0], final, len(l4), nh)
    pkt[field : field + 2] = struct.pack(">H", ~_inet(pseudo) & 0xFFFF)  # the folded sum
    gso_type = VIRTIO_NET_HDR_GSO_TCPV6 if proto == "tcp" else VIRTIO_NET_HDR_GSO_UDP_L4
    hdr = vnet_hdr(NEEDS_CSUM, gso_type, 0, 1000, cs, 16 if proto == "tcp" else 6)
    return hdr + bytes(pkt), final


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("rtype", [0, 2, 4])
def test_ipv6_routing_header_checksums_cover_the_final_destination(proto: str, rtype: int) -> None:
    # SRv6 in inline mode (or a Mobile IPv6 home address): the IPv6 header holds the next hop,
    # the TCP/UDP checksum the final destination — which verifies it, and drops a segment
    # summed over the next hop.
    src, final = _routed_super_packet(proto, rtype, 1)
    segs = split_all(src)
    assert len(segs) == 3
    cs = struct.unpack_from("=H", src, 6)[0]
    nh = TCP if proto == "tcp" else UDP
    for seg in segs:
        l4 = seg[cs:]
        pseudo = struct.pack(">16s16sIxxxB", seg[8:24], final, len(l4), nh)
        assert _inet(pseudo + l4) == 0
        assert seg[24:40] != final
    # with no segments left the IPv6 destination is the final one
    src, _ = _routed_super_packet(proto, rtype, 0)
    assert_split_ok(src, split_all(src))


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_ipv6_type0_routing_header_with_a_single_address(proto: str) -> None:
    # Type 0 with one address (header extension length 2): that address is the final one.
    src, final = _routed_super_packet(proto, 2, 1)
    b = bytearray(src)
    b[10 + 40 + 2] = 0  # the Mobile IPv6 layout is type 0's with one address
    segs = split_all(bytes(b))
    assert len(segs) == 3
    nh = TCP if proto == "tcp" else UDP
    for seg in segs:
        l4 = seg[40 + 24 :]
        pseudo = struct.pack(">16s16sIxxxB", seg[8:24], final, len(l4), nh)
        assert _inet(pseudo + l4) == 0


def test_ipv6_routing_header_without_a_known_final_destination() -> None:
    src, _ = _routed_super_packet("tcp", 4, 1)
    rpl = bytearray(src)
    rpl[10 + 40 + 2] = 3  # RPL: compressed addresses
    with pytest.raises(OffloadError):
        gso_segment_count(bytes(rpl))
    short = bytearray(src)
    short[10 + 40 + 2] = 2  # Mobile IPv6 with room for two addresses, not one
    with pytest.raises(MalformedPacketError):
        gso_segment_count(bytes(short))


_LONG_EXT = bytes([TCP, 63]) + bytes([1, 254]) + bytes(254) + bytes([1, 252]) + bytes(252)


@pytest.mark.parametrize(
    "src",
    [
        pytest.param(tcp_super_packet(IP4_A, IP4_B, 3000, 1000), id="tcp4"),
        pytest.param(tcp_super_packet(IP4_A, IP4_B, 3001, 1000, tcp_options=bytes(40)), id="opts"),
        pytest.param(tcp_super_packet(IP4_A, IP4_B, 0, 1000, flags=ACK), id="no payload"),
        pytest.param(
            tcp_super_packet(IP6_A, IP6_B, 20000, 100, v6=True, ext_headers=_LONG_EXT),
            id="tcp6 512-byte extension header",
        ),
        pytest.param(udp_super_packet(IP6_A, IP6_B, 3000, 7, v6=True), id="udp6"),
        pytest.param(bytes(10) + udp4_packet(IP4_A, IP4_B, 100), id="no gso"),
    ],
)
def test_split_size_is_exactly_what_the_split_takes(src: bytes) -> None:
    count = gso_segment_count(src)
    size = gso_split_size(src)
    batch = PacketBatch(capacity=size, max_packets=count)
    assert gso_split(src, batch) == count
    assert batch.end == size  # not a byte short, none to spare


def test_single_segment_and_headers_only() -> None:
    one = tcp_super_packet(IP4_A, IP4_B, 100, 1448)
    assert gso_segment_count(one) == 1
    assert_split_ok(one, split_all(one))
    # A GSO packet without payload still yields one packet: nothing silently vanishes.
    empty = tcp_super_packet(IP4_A, IP4_B, 0, 1448, flags=ACK)
    segs = split_all(empty)
    assert len(segs) == 1 and len(segs[0]) == 40
    assert_split_ok(empty, segs)


def test_udp_zero_checksum_becomes_ffff() -> None:
    # Choose the payload word so that the segment's checksum computes to 0: it must go out as
    # 0xFFFF (a UDP checksum of 0 means "none"). With payload 0 the stored checksum is ~S;
    # using that value as the payload makes the sum S + ~S = 0xFFFF, whose complement is 0.
    base = udp4_packet(IP4_A, IP4_B, 2, payload=b"\0\0")
    word = struct.unpack_from(">H", base, 26)[0]
    pkt = udp4_packet(IP4_A, IP4_B, 2, payload=struct.pack(">H", word))
    src = vnet_hdr(NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4, 28, 100, 20, 6) + partial_csum(pkt, 20)
    (seg,) = split_all(src)
    assert seg[26:28] == b"\xff\xff"
    assert l4_checksum_ok(seg)
    # The same through the NONE + NEEDS_CSUM path.
    src = vnet_hdr(NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE, 0, 0, 20, 6) + partial_csum(pkt, 20)
    (seg,) = split_all(src)
    assert seg[26:28] == b"\xff\xff"
    assert l4_checksum_ok(seg)


# --- gso type NONE ------------------------------------------------------------------------


def test_none_without_needs_csum_is_copied_verbatim() -> None:
    pkt = b"\x45 arbitrary bytes, even not IP"
    src = vnet_hdr() + pkt
    assert split_all(src) == [pkt]


@pytest.mark.parametrize(
    "pkt",
    [
        tcp4_packet(IP4_A, IP4_B, ACK, 1000, 1),
        tcp6_packet(IP6_A, IP6_B, ACK | PSH, 333, 5),
        udp4_packet(IP4_A, IP4_B, 999),
        udp6_packet(IP6_A, IP6_B, 1),
    ],
    ids=["tcp4", "tcp6", "udp4", "udp6-odd"],
)
def test_none_with_needs_csum_completes_checksum(pkt: bytes) -> None:
    at = l4_offset(pkt)
    cso = 16 if len(pkt) - at >= 20 and pkt[9 if pkt[0] >> 4 == 4 else 6] == TCP else 6
    src = vnet_hdr(NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE, 0, 0, at, cso) + partial_csum(pkt, at)
    assert gso_segment_count(src) == 1
    (got,) = split_all(src)
    assert got == pkt  # the builder's full checksum, computed by dpkt
    bufs, sizes = [bytearray(2000)], [0]
    assert gso_split_into(src, bufs, sizes, 0) == 1
    assert bytes(bufs[0][: sizes[0]]) == pkt


def test_none_needs_csum_field_outside_packet() -> None:
    pkt = udp4_packet(IP4_A, IP4_B, 4)
    with pytest.raises(TruncatedPacketError):
        gso_split(vnet_hdr(NEEDS_CSUM, 0, 0, 0, 20, len(pkt)) + pkt, PacketBatch())


def test_ipv4_header_checksum_with_a_double_end_around_carry() -> None:
    # TTL 246, ToS 0x6c and ID 0xfffc make the header's words, checksum field zero, sum to
    # exactly 0x1ffff: one end-around carry gives 0x10000, which needs a second one (RFC 1071).
    src = bytearray(tcp_super_packet(IP4_A, IP4_B, 100, 1448, ident=0xFFFC))
    src[10 + 1] = 0x6C
    src[10 + 8] = 246
    (seg,) = split_all(bytes(src))
    assert ipv4_header_ok(seg)
    assert seg[10:12] == b"\xff\xfe"


def test_ipv6_authentication_header_is_four_octet_units_plus_two() -> None:
    # RFC 4302: the AH Payload Len is its length in 32-bit words minus 2 (not the 8-octet
    # units of the other extension headers); 4 means 24 bytes.
    ah = bytes([UDP, 4, 0, 0]) + bytes.fromhex("00000100") + bytes.fromhex("00000001") + bytes(12)
    src = udp_super_packet(IP6_A, IP6_B, 2500, 1000, v6=True, ext_headers=ah, ext_first=51)
    assert struct.unpack_from("=H", src, 6)[0] == 64  # csum_start: after 40 + 24 bytes
    segs = split_all(src)
    assert len(segs) == 3
    for s in segs:
        assert s[40:64] == ah
        assert struct.unpack_from(">H", s, 4)[0] == len(s) - 40
        assert struct.unpack_from(">H", s, 64 + 4)[0] == len(s) - 64
        seg = bytes(s[64:])
        pseudo = IP6_A[0] + IP6_B[0] + struct.pack(">IxxxB", len(seg), UDP)
        assert inet_csum(pseudo + seg) == 0
    assert b"".join(s[72:] for s in segs) == pattern(0, 2500)


def test_complete_checksum_field_must_lie_wholly_inside() -> None:
    # the field's second byte one past the end: a typed error, not struct.error
    with pytest.raises(TruncatedPacketError):
        complete_checksum(bytearray(27), 20, 6)


@pytest.mark.parametrize(("csum_start", "csum_offset"), [(-8, 6), (20, -2)])
def test_complete_checksum_refuses_negative_offsets(csum_start: int, csum_offset: int) -> None:
    # Not counted from the end (a slice would): the field or the summed region would lie
    # before the packet.
    packet = bytearray(udp4_packet(IP4_A, IP4_B, 10))
    before = bytes(packet)
    with pytest.raises(TruncatedPacketError):
        complete_checksum(packet, csum_start, csum_offset)
    assert packet == before


@pytest.mark.parametrize(
    ("packet", "exc"),
    [
        (ipv4_header(UDP, 8, IP4_A[0], IP4_B[0])[:19], TruncatedPacketError),
        (ipv4_header(UDP, 8, IP4_A[0], IP4_B[0])[:12], TruncatedPacketError),
        (ipv6_header(UDP, 8, IP6_A[0], IP6_B[0])[:39], TruncatedPacketError),
        (ipv6_header(UDP, 8, IP6_A[0], IP6_B[0])[:24], TruncatedPacketError),
        (b"", MalformedPacketError),
        (b"\x50" + bytes(39), MalformedPacketError),
    ],
    ids=["v4 19", "v4 12", "v6 39", "v6 24", "empty", "version 5"],
)
def test_pseudo_header_sum_needs_the_fixed_header(packet: bytes, exc: type[Exception]) -> None:
    # Both addresses are in the sum: a header cut inside them is refused, not summed short.
    with pytest.raises(exc):
        pseudo_header_sum(packet, UDP, 8)


@pytest.mark.parametrize("v6", [False, True], ids=["v4", "v6"])
def test_pseudo_header_sum_verifies_a_datagram(v6: bool) -> None:
    pkt = udp6_packet(IP6_A, IP6_B, 33) if v6 else udp4_packet(IP4_A, IP4_B, 33)
    l4 = pkt[40:] if v6 else pkt[20:]
    # A valid datagram's words plus its pseudo-header sum fold to 0xFFFF (RFC 1071).
    padded = l4 + bytes(len(l4) % 2)
    words = struct.unpack(f">{len(padded) // 2}H", padded)
    assert (pseudo_header_sum(pkt, UDP, len(l4)) + sum(words)) % 0xFFFF == 0


def test_complete_checksum_with_an_odd_field_offset() -> None:
    # The field's partial sum is the initial value, a 16-bit word wherever the field lies:
    # the result is the complement of it plus the region summed with the field zeroed.
    packet = bytearray(bytes(20) + pattern(0, 41))
    packet[27:29] = b"\x12\x34"
    region = bytearray(packet[20:])
    region[7:9] = b"\0\0"
    want = dpkt.in_cksum_done(dpkt.in_cksum_add(0, b"\x12\x34" + bytes(region))) or 0xFFFF
    complete_checksum(packet, 20, 7)
    assert struct.unpack_from(">H", packet, 27)[0] == want


@pytest.mark.parametrize("offset", [10, 100])
def test_split_into_over_its_own_input_at_any_offset(offset: int) -> None:
    # At offset 10 the first segment lands where it is read from; further on, its headers
    # land on its own payload before that is read: the input must be copied first.
    src = tcp_super_packet(IP4_A, IP4_B, 3000, 1000)
    want = split_all(src)
    bufs = [bytearray(4096) for _ in range(3)]
    bufs[0][: len(src)] = src
    sizes = [0, 0, 0]
    assert gso_split_into(memoryview(bufs[0])[: len(src)], bufs, sizes, offset) == 3
    assert [bytes(b[offset : offset + s]) for b, s in zip(bufs, sizes, strict=True)] == want
    # the buffer the super-packet was read into, itself the first output buffer
    bufs = [bytearray(src), bytearray(4096), bytearray(4096)]
    assert gso_split_into(bufs[0], bufs, sizes, offset) == 3
    assert [bytes(b[offset : offset + s]) for b, s in zip(bufs, sizes, strict=True)] == want


# --- resumable splits (Tailscale TestGSOSplitPartialCapacity, MinimumGSOSize) ------------

HDR, GSO, FULL = 28, 100, 128


def _udp_src(payload_len: int) -> bytes:
    data = bytes(i & 0xFF for i in range(payload_len))  # byte(i), as Tailscale's input
    seg = udp_datagram(IP4_A[0], IP4_B[0], 1, 1, data)
    ip = ipv4_header(UDP, len(seg), IP4_A[0], IP4_B[0])
    return vnet_hdr(NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4, HDR, GSO, 20, 6) + partial_csum(
        ip + seg, 20
    )


# Our batch puts HEADROOM (= Tailscale's spacing, 10) before each packet and nothing after, so
# "exact fit" is one spacing less than in Tailscale's slab.
THREE_FULL_FIT = 3 * (HEADROOM + FULL)
SHORT_TAIL_FIT = 2 * (HEADROOM + FULL) + HEADROOM + HDR + 50


@pytest.mark.parametrize(
    ("payload_len", "capacity", "max_packets", "want_sizes", "complete"),
    [
        pytest.param(
            300, THREE_FULL_FIT, 3, [128, 128, 128], True, id="exact fit of full segments"
        ),
        pytest.param(250, SHORT_TAIL_FIT, 3, [128, 128, 78], True, id="exact fit with short tail"),
        pytest.param(
            250, SHORT_TAIL_FIT - 1, 3, [128, 128], False, id="one byte short of short tail"
        ),
        pytest.param(250, SHORT_TAIL_FIT, 2, [128, 128], False, id="packet descriptor exhaustion"),
        pytest.param(250, HEADROOM + FULL - 1, 3, [], False, id="no segment fits"),
    ],
)
def test_partial_capacity(
    payload_len: int, capacity: int, max_packets: int, want_sizes: list[int], complete: bool
) -> None:
    src = _udp_src(payload_len)
    count = gso_segment_count(src)
    out = PacketBatch(capacity=capacity, max_packets=max_packets)
    if not want_sizes:
        # An empty batch that cannot take one segment would make no progress: an error.
        with pytest.raises(PacketTooLargeError):
            gso_split(src, out)
        assert len(out) == 0 and out.end == 0
        return
    nxt = gso_split(src, out)
    assert nxt == len(want_sizes)
    assert (nxt == count) is complete
    assert out.lengths == want_sizes
    for i, off in enumerate(out.offsets):
        assert off == HEADROOM + i * (FULL + HEADROOM)
        payload = bytes(out.buffer[off + HDR : off + out.lengths[i]])
        start = i * GSO
        assert payload == bytes(k & 0xFF for k in range(start, min(start + GSO, payload_len)))
    # Resuming on a fresh batch yields the rest; together they are the one-shot split.
    rest = PacketBatch(capacity=4096)
    assert gso_split(src, rest, start=nxt) == count
    assert out.to_list() + rest.to_list() == split_all(src)
    assert_split_ok(src, out.to_list() + rest.to_list())


def test_full_batch_returns_start_without_writing() -> None:
    src = _udp_src(250)
    out = PacketBatch(capacity=4096, max_packets=2)
    out.append(b"x")
    out.append(b"y")
    before = bytes(out.buffer)
    assert gso_split(src, out, start=1) == 1
    assert len(out) == 2 and bytes(out.buffer) == before


@pytest.mark.parametrize(("proto", "hdr_len"), [("udp", 28), ("tcp", 40)])
@pytest.mark.parametrize("gso", [512, 511])
def test_minimum_gso_size(proto: str, hdr_len: int, gso: int) -> None:
    # Tailscale TestGSOSplitMinimumGSOSize: a 65535-byte IPv4 packet needs gso >= 512 to fit
    # IDEAL_BATCH_SIZE (128) packets; 511 needs 129 and stops at 128 — resumably (tun-rs
    # loses the whole read there).
    payload = 65535 - hdr_len
    if proto == "udp":
        src = udp_super_packet(IP4_A, IP4_B, payload, gso)
    else:
        src = tcp_super_packet(IP4_A, IP4_B, payload, gso)
    assert len(src) == 10 + 65535
    want = -(-payload // gso)
    assert want == (128 if gso == 512 else 129)
    out = PacketBatch(capacity=2 * 65535, max_packets=IDEAL_BATCH_SIZE)
    n = gso_split(src, out)
    assert n == min(want, IDEAL_BATCH_SIZE)
    segs = out.to_list()
    if n < want:
        rest = PacketBatch(capacity=4096)
        assert gso_split(src, rest, start=n) == want
        segs += rest.to_list()
    assert_split_ok(src, segs)


def test_tun_rs_129_segments_returns_partial() -> None:
    # tun-rs regression: more segments than buffers used to lose the whole read.
    src = tcp_super_packet(IP4_A, IP4_B, 65535 - 40, 511)
    bufs = [bytearray(1600) for _ in range(IDEAL_BATCH_SIZE)]
    sizes = [0] * IDEAL_BATCH_SIZE
    assert gso_split_into(src, bufs, sizes, 10) == 128
    got = [bytes(b[10 : 10 + s]) for b, s in zip(bufs, sizes, strict=True)]
    assert gso_split_into(src, bufs, sizes, 10, start=128) == 129
    got.append(bytes(bufs[0][10 : 10 + sizes[0]]))
    assert_split_ok(src, got)


def test_split_into_small_buffers() -> None:
    src = tcp_super_packet(IP4_A, IP4_B, 300, 100)
    bufs = [bytearray(150), bytearray(150), bytearray(100)]
    sizes = [0, 0, 0]
    assert gso_split_into(src, bufs, sizes, 10) == 2  # the third buffer is too small
    with pytest.raises(PacketTooLargeError):
        gso_split_into(src, [bytearray(100)], [0], 10)
    with pytest.raises(ValueError, match="sizes"):
        gso_split_into(src, bufs, [0], 10)
    with pytest.raises(ValueError, match="sizes"):
        gso_split_into(src, bufs[:1], [0, 0], 10)
    with pytest.raises(ValueError, match="offset"):
        gso_split_into(src, bufs, sizes, -1)


def test_resume_at_every_point() -> None:
    src = tcp_super_packet(IP6_A, IP6_B, 10_000, 999, v6=True)
    whole = split_all(src)
    for cut in range(len(whole) + 1):
        a = PacketBatch(capacity=1 << 16, max_packets=max(cut, 1))
        nxt = gso_split(src, a) if cut else 0
        if cut:
            assert nxt == min(cut, len(whole))
        b = PacketBatch(capacity=1 << 16)
        assert gso_split(src, b, start=nxt) == len(whole)
        assert (a.to_list() if cut else []) + b.to_list() == whole


def test_bad_start() -> None:
    src = tcp_super_packet(IP4_A, IP4_B, 300, 100)
    assert gso_split(src, PacketBatch(), start=3) == 3  # already complete: nothing to do
    plain = vnet_hdr() + udp4_packet(IP4_A, IP4_B, 10)
    out = PacketBatch()
    assert gso_split(plain, out, start=1) == 1 and len(out) == 0
    assert gso_split_into(plain, [bytearray(99)], [0], 0, start=1) == 1
    with pytest.raises(ValueError, match="no output buffers"):
        gso_split_into(plain, [], [], 0)
    for start in (-1, 4):
        with pytest.raises(ValueError, match="start"):
            gso_split(src, PacketBatch(), start=start)


def test_overlapping_input() -> None:
    # Tailscale TestGSOSplitOverlappingInput: the super-packet was read into the very arena
    # the segments go to (at the spot the first segment will take).
    src = tcp_super_packet(IP4_A, IP4_B, 250, 100)
    want = split_all(src)
    out = PacketBatch(capacity=1024)
    out.buffer[0 : len(src)] = src
    n = gso_split(memoryview(out.buffer)[: len(src)], out)
    assert n == 3
    assert out.to_list() == want
    # Through the tun-rs-style API, reading from the first output buffer.
    bufs = [bytearray(1024) for _ in range(3)]
    bufs[0][: len(src)] = src
    sizes = [0, 0, 0]
    assert gso_split_into(memoryview(bufs[0])[: len(src)], bufs, sizes, 10) == 3
    assert [bytes(b[10 : 10 + s]) for b, s in zip(bufs, sizes, strict=True)] == want


def test_input_not_modified_and_vnet_hdr_batches_get_zero_headers() -> None:
    src = bytearray(tcp_super_packet(IP4_A, IP4_B, 3000, 1000))
    before = bytes(src)
    out = PacketBatch(capacity=8192)
    out.vnet_hdr = True
    out.buffer[:] = b"\xab" * len(out.buffer)
    gso_split(src, out)
    assert bytes(src) == before
    assert all(bytes(out.header(i)) == bytes(10) for i in range(len(out)))


# --- validation: only documented errors, nothing written --------------------------------

_TCP4 = tcp4_packet(IP4_A, IP4_B, ACK, 200, 1)
_TCP6 = tcp6_packet(IP6_A, IP6_B, ACK, 200, 1)
_UDP6 = udp6_packet(IP6_A, IP6_B, 200)
_UDP4 = udp4_packet(IP4_A, IP4_B, 200)


def _mut(pkt: bytes, at: int, value: bytes) -> bytes:
    b = bytearray(pkt)
    b[at : at + len(value)] = value
    return bytes(b)


# A 16-byte IPv4 "header" (IHL 4) with a well-formed TCP segment right after it, csum_start 16.
_TCP4_IHL16 = bytes([0x44, 0]) + struct.pack(">H", 16 + 220) + _TCP4[4:12] + IP4_A[0] + _TCP4[20:]
# TCP data offset 24 (four option bytes) with the packet ending one byte into the options.
_TCP4_OPTIONS_ONE_SHORT = _mut(_mut(_TCP4, 32, b"\x60"), 2, struct.pack(">H", 43))[:43]


_GOOD_TCP4_HDR = vnet_hdr(NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 40, 100, 20, 16)
_GOOD_UDP6_HDR = vnet_hdr(NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4, 48, 100, 40, 6)

BAD = [
    pytest.param(b"", TruncatedPacketError, id="empty"),
    pytest.param(bytes(9), TruncatedPacketError, id="short header"),
    pytest.param(_GOOD_TCP4_HDR, TruncatedPacketError, id="header only"),
    pytest.param(
        vnet_hdr(NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP, 28, 100, 20, 6) + _TCP4, OffloadError, id="ufo"
    ),
    pytest.param(vnet_hdr(NEEDS_CSUM, 2, 40, 100, 20, 16) + _TCP4, OffloadError, id="unknown type"),
    pytest.param(vnet_hdr(NEEDS_CSUM, 1, 40, 0, 20, 16) + _TCP4, MalformedPacketError, id="gso 0"),
    pytest.param(
        vnet_hdr(NEEDS_CSUM, 4, 40, 100, 20, 16) + _TCP4, MalformedPacketError, id="tcpv6 on v4"
    ),
    pytest.param(
        vnet_hdr(NEEDS_CSUM, 1, 60, 100, 40, 16) + _UDP6, MalformedPacketError, id="tcpv4 on v6"
    ),
    pytest.param(
        vnet_hdr(NEEDS_CSUM, 0x85, 28, 100, 20, 6) + _UDP4, MalformedPacketError, id="ecn udp"
    ),
    pytest.param(
        vnet_hdr(NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4, 56, 100, 48, 6) + _UDP6,
        MalformedPacketError,
        id="v6 csum_start",
    ),
    pytest.param(
        vnet_hdr(NEEDS_CSUM, 1, 40, 100, 24, 16) + _TCP4, MalformedPacketError, id="csum_start"
    ),
    pytest.param(
        vnet_hdr(NEEDS_CSUM, 1, 40, 100, 20, 6) + _TCP4, MalformedPacketError, id="csum_offset"
    ),
    pytest.param(vnet_hdr(NEEDS_CSUM, 5, 28, 100, 20, 6) + _TCP4, MalformedPacketError, id="proto"),
    pytest.param(_GOOD_TCP4_HDR + _TCP4[:-1], TruncatedPacketError, id="truncated read"),
    pytest.param(_GOOD_TCP4_HDR + _TCP4 + b"\0", MalformedPacketError, id="trailing bytes"),
    pytest.param(_GOOD_TCP4_HDR + _TCP4[:19], TruncatedPacketError, id="ip header cut"),
    pytest.param(_GOOD_TCP4_HDR + _mut(_TCP4, 0, b"\x44"), MalformedPacketError, id="ihl 16"),
    pytest.param(_GOOD_TCP4_HDR + _mut(_TCP4, 0, b"\x55"), MalformedPacketError, id="version 5"),
    pytest.param(_GOOD_TCP4_HDR + _mut(_TCP4, 6, b"\x20"), MalformedPacketError, id="MF"),
    pytest.param(_GOOD_TCP4_HDR + _mut(_TCP4, 7, b"\x01"), MalformedPacketError, id="frag offset"),
    pytest.param(_GOOD_TCP4_HDR + _mut(_TCP4, 32, b"\x40"), MalformedPacketError, id="doff 16"),
    pytest.param(
        _GOOD_TCP4_HDR + ipv4_header(TCP, 10, IP4_A[0], IP4_B[0]) + bytes(10),
        TruncatedPacketError,
        id="tcp header cut",
    ),
    pytest.param(
        _GOOD_TCP4_HDR + _mut(_mut(_TCP4, 32, b"\xf0"), 2, struct.pack(">H", 60))[:60],
        TruncatedPacketError,
        id="tcp options cut",
    ),
    pytest.param(_GOOD_UDP6_HDR + _UDP6[:39], TruncatedPacketError, id="v6 header cut"),
    pytest.param(_GOOD_UDP6_HDR + _UDP6[:-3], TruncatedPacketError, id="v6 truncated"),
    pytest.param(
        _GOOD_UDP6_HDR + _mut(_UDP6, 6, bytes([44])), MalformedPacketError, id="v6 fragment"
    ),
    pytest.param(
        _GOOD_UDP6_HDR + _mut(_UDP6, 6, bytes([0])), MalformedPacketError, id="v6 bad chain"
    ),
    pytest.param(
        _GOOD_UDP6_HDR + ipv6_header(0, 8, IP6_A[0], IP6_B[0]) + bytes([UDP, 200]) + bytes(6),
        TruncatedPacketError,
        id="v6 chain past end",
    ),
    pytest.param(
        vnet_hdr(NEEDS_CSUM, 1, 60, 100, 40, 16) + _TCP6, MalformedPacketError, id="tcpv4 on tcp6"
    ),
    pytest.param(
        vnet_hdr(NEEDS_CSUM, 0x80, 40, 100, 20, 16) + _TCP4, OffloadError, id="ecn without type"
    ),
    pytest.param(
        vnet_hdr(NEEDS_CSUM, 1, 36, 100, 16, 16) + _TCP4_IHL16,
        MalformedPacketError,
        id="ihl 16 at csum_start 16",
    ),
    pytest.param(
        _GOOD_TCP4_HDR + _TCP4_OPTIONS_ONE_SHORT, TruncatedPacketError, id="tcp options one short"
    ),
    pytest.param(
        _GOOD_UDP6_HDR + ipv6_header(0, 1, IP6_A[0], IP6_B[0]) + bytes([UDP]),
        TruncatedPacketError,
        id="v6 chain of one byte",
    ),
    pytest.param(
        _GOOD_UDP6_HDR + ipv6_header(43, 2, IP6_A[0], IP6_B[0]) + bytes([UDP, 0]),
        TruncatedPacketError,
        id="v6 routing header of two bytes",
    ),
    pytest.param(
        _GOOD_UDP6_HDR + ipv6_header(0, 8, IP6_A[0], IP6_B[0]) + bytes([UDP, 1]) + bytes(6),
        TruncatedPacketError,
        id="v6 option header 8 bytes past end",
    ),
    pytest.param(
        vnet_hdr(NEEDS_CSUM, 0, 0, 0, 20, len(_UDP4) - 21) + _UDP4,
        TruncatedPacketError,
        id="none csum field straddles the end",
    ),
]


@pytest.mark.parametrize(("src", "exc"), BAD)
def test_invalid_super_packets(src: bytes, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        gso_segment_count(src)
    out = PacketBatch(capacity=4096)
    out.append(b"keep")
    before = (bytes(out.buffer), list(out.offsets), out.end)
    with pytest.raises(exc):
        gso_split(src, out)
    assert (bytes(out.buffer), list(out.offsets), out.end) == before
    with pytest.raises(exc):
        gso_split_into(src, [bytearray(4096)], [0], 10)
