"""GRO: wireguard-go's Test_handleGRO, Test_packetIsGROCandidate, Test_udpPacketsCanCoalesce
and Tailscale's additions, with the bytes of every output checked against a model."""

from __future__ import annotations

import struct

import pytest

from tunflow.datagram import UDP_MAX_SEGMENTS
from tunflow.errors import PacketTooLargeError
from tunflow.offload import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP_L4,
    GROCandidate,
    GROStatistics,
    GROTable,
    gro_candidate,
    gso_split,
)
from tunflow.packet import HEADROOM, PacketBatch

from .offload_packets import (
    ACK,
    FIN,
    IP4_A,
    IP4_B,
    IP4_C,
    IP6_A,
    IP6_B,
    IP6_C,
    IPV4_FLAG_DF,
    IPV4_FLAG_MF,
    PSH,
    SYN,
    TCP,
    complete_partial,
    flip_l4_checksum,
    inet_csum,
    ipv4_header_ok,
    l4_checksum_ok,
    partial_csum,
    tcp4_packet,
    tcp6_packet,
    tcp_fields,
    tcp_super_packet,
    udp4_packet,
    udp6_packet,
    udp_super_packet,
    vnet_hdr,
)

# --- helpers -----------------------------------------------------------------------------


def batch_of(pkts: list[bytes]) -> PacketBatch:
    b = PacketBatch(capacity=max(4096, sum(len(p) + HEADROOM for p in pkts)), max_packets=1024)
    b.extend(pkts)
    return b


def run_gro(
    pkts: list[bytes], table: GROTable | None = None, out: PacketBatch | None = None
) -> tuple[PacketBatch, GROTable]:
    table = GROTable(tcp=True, udp=True) if table is None else table
    src = batch_of(pkts)
    out = PacketBatch(capacity=src.capacity, max_packets=1024) if out is None else out
    n = table.coalesce(src, out)
    assert n == len(out)
    assert out.vnet_hdr
    return out, table


def merged_model(pkts: list[bytes]) -> tuple[bytes, bytes]:
    """(virtio header, packet) the kernel expects for ``pkts`` (head first) merged; built
    field by field with dpkt's checksum, no tunflow code."""
    head = pkts[0]
    v6 = head[0] >> 4 == 6
    iph = 40 if v6 else 20
    proto = head[6] if v6 else head[9]
    hl = iph + ((head[iph + 12] >> 4) * 4 if proto == TCP else 8)
    b = bytearray(head + b"".join(p[hl:] for p in pkts[1:]))
    if v6:
        b[4:6] = struct.pack(">H", len(b) - 40)
    else:
        b[2:4] = struct.pack(">H", len(b))
        b[10:12] = b"\0\0"
        b[10:12] = struct.pack(">H", inet_csum(bytes(b[:20])))
    if proto == TCP:
        if any(p[iph + 13] & PSH for p in pkts):
            b[iph + 13] |= PSH
        gso_type = VIRTIO_NET_HDR_GSO_TCPV6 if v6 else VIRTIO_NET_HDR_GSO_TCPV4
        cso = 16
    else:
        b[iph + 4 : iph + 6] = struct.pack(">H", len(b) - iph)
        gso_type = VIRTIO_NET_HDR_GSO_UDP_L4
        cso = 6
    gso = max(len(p) - hl for p in pkts)
    hdr = vnet_hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type, hl, gso, iph, cso)
    return hdr, partial_csum(bytes(b), iph)


def assert_outputs(out: PacketBatch, pkts: list[bytes], groups: list[tuple[int, ...]]) -> None:
    """Output ``i`` is input packets ``groups[i]`` (head first) merged, or the one packet."""
    assert len(out) == len(groups)
    for i, group in enumerate(groups):
        got, hdr = bytes(out.packet(i)), bytes(out.header(i))
        if len(group) == 1:
            assert hdr == bytes(10), i
            assert got == pkts[group[0]], i
            continue
        want_hdr, want = merged_model([pkts[k] for k in group])
        assert hdr == want_hdr, i
        assert got == want, i
        assert len(got) <= 65535
        # What the kernel would then do: complete the partial checksum; it must verify.
        done = complete_partial(got, 40 if got[0] >> 4 == 6 else 20)
        assert l4_checksum_ok(done)
        if got[0] >> 4 == 4:
            assert ipv4_header_ok(got)


def flip(p: bytes) -> bytes:
    return flip_l4_checksum(p)


# --- Test_handleGRO ----------------------------------------------------------------------

MULTI = [
    tcp4_packet(IP4_A, IP4_B, ACK, 100, 1),  # tcp4 flow 1
    udp4_packet(IP4_A, IP4_B, 100),  # udp4 flow 1
    udp4_packet(IP4_A, IP4_C, 100),  # udp4 flow 2
    tcp4_packet(IP4_A, IP4_B, ACK, 100, 101),  # tcp4 flow 1
    tcp4_packet(IP4_A, IP4_C, ACK, 100, 201),  # tcp4 flow 2
    tcp6_packet(IP6_A, IP6_B, ACK, 100, 1),  # tcp6 flow 1
    tcp6_packet(IP6_A, IP6_B, ACK, 100, 101),  # tcp6 flow 1
    tcp6_packet(IP6_A, IP6_C, ACK, 100, 201),  # tcp6 flow 2
    udp4_packet(IP4_A, IP4_B, 100, start=100),  # udp4 flow 1
    udp6_packet(IP6_A, IP6_B, 100),  # udp6 flow 1
    udp6_packet(IP6_A, IP6_B, 100, start=100),  # udp6 flow 1
]


def _mut4(seq: int, **ip: int) -> bytes:
    return tcp4_packet(IP4_A, IP4_B, ACK, 100, seq, **ip)


def _mut6(seq: int, **ip: int) -> bytes:
    return tcp6_packet(IP6_A, IP6_B, ACK, 100, seq, **ip)


def _unequal4(**ip: int) -> list[bytes]:
    return [
        _mut4(1),
        _mut4(101, **ip),
        udp4_packet(IP4_A, IP4_B, 100),
        udp4_packet(IP4_A, IP4_B, 100, **ip),
    ]


def _unequal6(**ip: int) -> list[bytes]:
    return [
        _mut6(1),
        _mut6(101, **ip),
        udp6_packet(IP6_A, IP6_B, 100),
        udp6_packet(IP6_A, IP6_B, 100, **ip),
    ]


SINGLES4 = [(0,), (1,), (2,), (3,)]

HANDLE_GRO = [
    pytest.param(
        MULTI,
        True,
        [(0, 3), (1, 8), (2,), (4,), (5, 6), (7,), (9, 10)],
        [240, 228, 128, 140, 260, 160, 248],
        id="multiple protocols and flows",
    ),
    pytest.param(
        MULTI,
        False,
        [(0, 3), (1,), (2,), (4,), (5, 6), (7,), (8,), (9,), (10,)],
        [240, 128, 128, 140, 260, 160, 128, 148, 148],
        id="multiple protocols and flows no UDP GRO",
    ),
    pytest.param(
        [
            tcp4_packet(IP4_A, IP4_B, ACK, 100, 1),
            tcp4_packet(IP4_A, IP4_B, ACK | PSH, 100, 101),
            tcp4_packet(IP4_A, IP4_B, ACK, 100, 201),
            tcp4_packet(IP4_A, IP4_B, ACK, 100, 301),
            tcp6_packet(IP6_A, IP6_B, ACK, 100, 1),
            tcp6_packet(IP6_A, IP6_B, ACK | PSH, 100, 101),
            tcp6_packet(IP6_A, IP6_B, ACK, 100, 201),
            tcp6_packet(IP6_A, IP6_B, ACK, 100, 301),
        ],
        True,
        [(0, 1), (2, 3), (4, 5), (6, 7)],
        [240, 240, 260, 260],
        id="PSH interleaved",
    ),
    pytest.param(
        [
            flip(tcp4_packet(IP4_A, IP4_B, ACK, 100, 1)),
            tcp4_packet(IP4_A, IP4_B, ACK, 100, 101),
            tcp4_packet(IP4_A, IP4_B, ACK, 100, 201),
            flip(udp4_packet(IP4_A, IP4_B, 100)),
            udp4_packet(IP4_A, IP4_B, 100),
            udp4_packet(IP4_A, IP4_B, 100),
        ],
        True,
        [(0,), (1, 2), (3,), (4, 5)],
        [140, 240, 128, 228],
        id="coalesceItemInvalidCSum",
    ),
    pytest.param(
        [_mut4(101), _mut4(1), _mut4(201)],
        True,
        [(1, 0, 2)],  # prepend seq 1, original seq 101 payload, append seq 201
        [340],
        id="out of order",
    ),
    pytest.param(_unequal4(ttl=65), True, SINGLES4, [140, 140, 128, 128], id="unequal TTL"),
    pytest.param(_unequal4(tos=1), True, SINGLES4, [140, 140, 128, 128], id="unequal ToS"),
    pytest.param(
        _unequal4(ip_flags=IPV4_FLAG_MF),
        True,
        SINGLES4,
        [140, 140, 128, 128],
        id="unequal flags more fragments set",
    ),
    pytest.param(
        _unequal4(ip_flags=IPV4_FLAG_DF),
        True,
        SINGLES4,
        [140, 140, 128, 128],
        id="unequal flags DF set",
    ),
    pytest.param(
        _unequal6(hop_limit=65), True, SINGLES4, [160, 160, 148, 148], id="ipv6 unequal hop limit"
    ),
    pytest.param(
        _unequal6(traffic_class=1),
        True,
        SINGLES4,
        [160, 160, 148, 148],
        id="ipv6 unequal traffic class",
    ),
]


@pytest.mark.parametrize(("pkts", "udp", "groups", "want_lens"), HANDLE_GRO)
def test_handle_gro(
    pkts: list[bytes], udp: bool, groups: list[tuple[int, ...]], want_lens: list[int]
) -> None:
    table = GROTable(tcp=True, udp=udp)
    out = PacketBatch(capacity=1 << 16)
    for _ in range(2):  # as Tailscale: a second run on the same table and batch must agree
        run_gro(list(pkts), table, out)
        assert out.lengths == want_lens
        # wireguard-go's toWrite: the index of each group's first packet, in order.
        assert [min(g) for g in groups] == sorted(min(g) for g in groups)
        assert_outputs(out, pkts, groups)


def test_handle_gro_fragment_layout_matches_tailscale() -> None:
    # Tailscale checks iovec lengths, e.g. {10, 140, 100} for "tcp4 A->B merged": the header,
    # the head packet, then one 100-byte payload fragment. Our copy has the same layout.
    out, _ = run_gro(MULTI)
    assert out.offsets[0] == HEADROOM
    assert bytes(out.packet(0)[:140]) == merged_model([MULTI[0], MULTI[3]])[1][:140]
    assert bytes(out.packet(0)[140:]) == MULTI[3][40:]


def test_invalid_item_csum_clears_virtio_hdr() -> None:
    # Tailscale Test_handleGRO_invalidItemCsumClearsVirtioNetHdr, on a poisoned output arena.
    pkts = [
        flip(tcp4_packet(IP4_A, IP4_B, ACK, 100, 1)),
        tcp4_packet(IP4_A, IP4_B, ACK, 100, 101),
        tcp4_packet(IP4_A, IP4_B, ACK, 100, 201),
    ]
    out = PacketBatch(capacity=4096)
    out.buffer[:] = b"\xab" * len(out.buffer)
    out, table = run_gro(pkts, GROTable(), out)
    assert bytes(out.header(0)) == bytes(10)
    assert bytes(out.packet(0)) == pkts[0]  # first, alone, untouched
    assert len(out) == 2
    assert tcp_fields(bytes(out.packet(1)))[0] == 101  # the one item starts at seq 101...
    assert out.header(1)[1] == VIRTIO_NET_HDR_GSO_TCPV4  # ...with exactly one merged fragment
    assert out.lengths[1] == 240
    assert table.statistics().invalid_checksum == 1


# --- Test_packetIsGROCandidate -----------------------------------------------------------

_T4 = tcp4_packet(IP4_A, IP4_B, ACK, 100, 1)
_T6 = tcp6_packet(IP6_A, IP6_B, ACK, 100, 1)
_U4 = udp4_packet(IP4_A, IP4_B, 100)
_U6 = udp6_packet(IP6_A, IP6_B, 100)


def _set(p: bytes, at: int, v: int) -> bytes:
    b = bytearray(p)
    b[at] = v
    return bytes(b)


CANDIDATES = [
    pytest.param(_T4, True, True, GROCandidate.TCP4, id="tcp4"),
    pytest.param(_T4, False, True, GROCandidate.NONE, id="tcp4 no support"),
    pytest.param(_T6, True, True, GROCandidate.TCP6, id="tcp6"),
    pytest.param(_T6, False, True, GROCandidate.NONE, id="tcp6 no support"),
    pytest.param(_U4, True, True, GROCandidate.UDP4, id="udp4"),
    pytest.param(_U4, True, False, GROCandidate.NONE, id="udp4 no support"),
    pytest.param(_U6, True, True, GROCandidate.UDP6, id="udp6"),
    pytest.param(_U6, True, False, GROCandidate.NONE, id="udp6 no support"),
    pytest.param(_U4[:27], True, True, GROCandidate.NONE, id="udp4 too short"),
    pytest.param(_U6[:47], True, True, GROCandidate.NONE, id="udp6 too short"),
    pytest.param(_T4[:39], True, True, GROCandidate.NONE, id="tcp4 too short"),
    pytest.param(_T6[:59], True, True, GROCandidate.NONE, id="tcp6 too short"),
    pytest.param(b"\x00", True, True, GROCandidate.NONE, id="invalid IP version"),
    pytest.param(_set(_T4, 0, 0x46), True, True, GROCandidate.NONE, id="invalid IP header len"),
    pytest.param(_set(_T4, 9, 47), True, True, GROCandidate.NONE, id="ip4 invalid protocol"),
    pytest.param(_set(_T6, 6, 47), True, True, GROCandidate.NONE, id="ip6 invalid protocol"),
]


@pytest.mark.parametrize(("pkt", "tcp", "udp", "want"), CANDIDATES)
def test_packet_is_gro_candidate(pkt: bytes, tcp: bool, udp: bool, want: GROCandidate) -> None:
    assert gro_candidate(pkt, tcp=tcp, udp=udp) is want
    # The table's own classification agrees: non-candidates pass through untouched.
    if want is GROCandidate.NONE:
        out, _ = run_gro([pkt, pkt], GROTable(tcp=tcp, udp=udp))
        assert out.to_list() == [pkt, pkt]


# --- Test_udpPacketsCanCoalesce (+ Tailscale) as behaviour ------------------------------


def _u4(n: int, start: int = 0, **kw: int) -> bytes:
    return udp4_packet(IP4_A, IP4_B, n, start=start, **kw)


UDP_CAN = [
    pytest.param([_u4(100), _u4(100)], None, [(0, 1)], id="coalesceAppend equal gso"),
    pytest.param([_u4(100), _u4(10)], None, [(0, 1)], id="coalesceAppend smaller gso"),
    pytest.param(
        [_u4(100), _u4(10), _u4(100)],
        None,
        [(0, 1), (2,)],
        id="coalesceUnavailable smaller gso previously appended",
    ),
    pytest.param(
        [_u4(100), _u4(110)], None, [(0,), (1,)], id="coalesceUnavailable larger following smaller"
    ),
    pytest.param([_u4(100)] * 4, 3, [(0, 1, 2), (3,)], id="coalesceUnavailable too many fragments"),
    pytest.param(
        [_u4(65535 - 28 - 100), _u4(100)], None, [(0, 1)], id="exactly 65535 bytes coalesce"
    ),
    pytest.param(
        [_u4(65535 - 28 - 100), _u4(101)],
        None,
        [(0,), (1,)],
        id="coalesceUnavailable payload overflow",
    ),
]


@pytest.mark.parametrize(("pkts", "max_segments", "groups"), UDP_CAN)
def test_udp_packets_can_coalesce(
    pkts: list[bytes], max_segments: int | None, groups: list[tuple[int, ...]]
) -> None:
    out, table = run_gro(pkts, GROTable(tcp=True, udp=True, max_segments=max_segments))
    assert_outputs(out, pkts, groups)
    if len(pkts[0]) > 60000 and len(groups) == 2:
        assert table.statistics().too_large == 1


def test_udp_merges_at_most_what_the_kernel_takes_in_one_uso_write() -> None:
    # Linux refuses (EINVAL) a USO write of more than UDP_MAX_SEGMENTS datagrams, and a refused
    # write turns the device's GRO off; max_segments=None must not lift that cap (nor a larger
    # one), a smaller one still applies.
    n = 2 * UDP_MAX_SEGMENTS + 1
    pkts = [_u4(16, start=16 * i) for i in range(n)]
    cut = [tuple(range(a, min(a + UDP_MAX_SEGMENTS, n))) for a in range(0, n, UDP_MAX_SEGMENTS)]
    for max_segments in (None, 1000):
        out, _ = run_gro(pkts, GROTable(tcp=True, udp=True, max_segments=max_segments))
        assert_outputs(out, pkts, cut)
    out, _ = run_gro(pkts, GROTable(tcp=True, udp=True, max_segments=10))
    assert_outputs(out, pkts, [tuple(range(a, min(a + 10, n))) for a in range(0, n, 10)])


def test_udp_zero_checksum_ipv4_coalesces() -> None:
    # Tailscale's udpCsumOKForGRO (and the tun-rs gap): 0 means "no checksum" on IPv4.
    pkts = [_u4(100, checksum=0), _u4(100, start=100, checksum=0), _u4(50, start=200)]
    out, table = run_gro(pkts)
    assert_outputs(out, pkts, [(0, 1, 2)])
    assert table.statistics().invalid_checksum == 0


def test_udp_zero_checksum_ipv6_does_not_coalesce() -> None:
    def zero(p: bytes) -> bytes:
        b = bytearray(p)
        b[46:48] = b"\0\0"
        return bytes(b)

    pkts = [zero(udp6_packet(IP6_A, IP6_B, 100)), zero(udp6_packet(IP6_A, IP6_B, 100))]
    out, table = run_gro(pkts)
    assert_outputs(out, pkts, [(0,), (1,)])
    # Only the first was checked (when the second tried to join it); counted once.
    assert table.statistics().invalid_checksum == 1


@pytest.mark.parametrize("zeroed", [0, 1], ids=["head", "joining"])
def test_udp_zero_checksum_ipv6_never_coalesces_whatever_its_first_words(zeroed: int) -> None:
    # RFC 8200 8.1: an IPv6 UDP checksum of 0 is invalid, whatever else the header holds; here
    # a flow label makes the IPv6 header's first 20 bytes sum to 0 as an IPv4 header's would.
    pkts = [udp6_packet(IP6_A, IP6_B, 100, start=100 * k) for k in range(2)]
    probe = pkts[zeroed]
    rest = sum(struct.unpack_from(">10H", probe)) - struct.unpack_from(">H", probe, 2)[0]
    zero = bytearray(udp6_packet(IP6_A, IP6_B, 100, start=100 * zeroed, flow_label=-rest % 0xFFFF))
    zero[46:48] = b"\0\0"
    assert not sum(struct.unpack_from(">10H", zero)) % 0xFFFF
    pkts[zeroed] = bytes(zero)
    out, table = run_gro(pkts)
    assert_outputs(out, pkts, [(0,), (1,)])
    assert table.statistics().invalid_checksum == 1


def test_a_tcp_item_found_invalid_takes_no_later_packet() -> None:
    # The bad head (seq 101) is refused when seq 201 would append; seq 1 would prepend to it
    # next: it must find nothing to join and go out on its own, the bad packet alone too.
    pkts = [flip(_t4(100, 101)), _t4(100, 201), _t4(100, 1)]
    out, table = run_gro(pkts)
    assert_outputs(out, pkts, [(0,), (1,), (2,)])
    assert table.statistics().invalid_checksum == 1


def test_udp_invalid_datagram_starts_a_new_item_and_order_is_kept() -> None:
    pkts = [_u4(100), flip(_u4(100)), _u4(100), _u4(100)]
    out, table = run_gro(pkts)
    # The bad one is kept apart; the next one cannot join it (known invalid) and starts anew.
    assert_outputs(out, pkts, [(0,), (1,), (2, 3)])
    assert table.statistics().invalid_checksum == 1


def test_udp_only_appends_to_the_last_item() -> None:
    # A datagram that would fit an earlier item never jumps over a later one.
    pkts = [_u4(100), _u4(100), _u4(50), _u4(100), _u4(100)]
    out, _ = run_gro(pkts)
    assert_outputs(out, pkts, [(0, 1, 2), (3, 4)])


@pytest.mark.parametrize(
    ("odd", "groups"),
    [
        # the larger one heads an item the next joins (a smaller segment ends it)
        pytest.param(_u4(150, start=200), [(0, 1), (2, 3), (4,)], id="larger"),
        pytest.param(_u4(100, start=200, ip_flags=IPV4_FLAG_DF), [(0, 1), (2,), (3, 4)], id="DF"),
        pytest.param(_u4(100, start=200, ttl=63), [(0, 1), (2,), (3, 4)], id="TTL"),
        pytest.param(_u4(100, start=200, tos=4), [(0, 1), (2,), (3, 4)], id="ToS"),
    ],
)
def test_udp_datagram_that_cannot_join_ends_its_flows_item(
    odd: bytes, groups: list[tuple[int, ...]]
) -> None:
    # It starts the flow's next item; the datagrams after it join that one or start another,
    # never the item before it.
    pkts = [_u4(100), _u4(100, start=100), odd, _u4(100, start=300), _u4(100, start=400)]
    out, _ = run_gro(pkts)
    assert_outputs(out, pkts, groups)


def _udp_length(p: bytes, value: int) -> bytes:
    """``p`` with its UDP length field set to ``value`` (the checksum then left out: 0 on IPv4,
    where it means none; on IPv6 the table must not verify it)."""
    b = bytearray(p)
    at = 20 if p[0] >> 4 == 4 else 40
    b[at + 4 : at + 8] = struct.pack(">HH", value, 0)
    return bytes(b)


@pytest.mark.parametrize("v6", [False, True], ids=["udp4", "udp6"])
@pytest.mark.parametrize("delta", [-4, 4, -100], ids=["shorter", "longer", "header only"])
def test_udp_datagram_whose_length_field_is_not_its_ip_payload_goes_alone(
    v6: bool, delta: int
) -> None:
    # Merged, the shorter one's trailing bytes (padding) or the longer one's missing ones would
    # shift every later datagram of the super-packet: the kernel's split would corrupt them.
    def u(start: int) -> bytes:
        if v6:
            return udp6_packet(IP6_A, IP6_B, 100, start=start)
        return _u4(100, start=start, checksum=0)

    odd = _udp_length(u(100), 108 + delta)
    pkts = [u(0), odd, u(200), u(300)]
    table = GROTable(tcp=True, udp=True)
    table.verify_checksums = not v6
    out, _ = run_gro(pkts, table)
    assert_outputs(out, pkts, [(0,), (1,), (2, 3)])
    # ...and first in the batch, it is not an item the next one could join
    out, _ = run_gro(pkts[1:], table)
    assert_outputs(out, pkts[1:], [(0,), (1, 2)])


def _with_ipv6_dest_opts(p: bytes) -> bytes:
    """A UDP/IPv6 packet with an 8-byte destination options header before the UDP header."""
    b = bytearray(p[:40]) + bytes([17, 0, 1, 4, 0, 0, 0, 0]) + p[40:]
    b[6] = 60
    b[4:6] = struct.pack(">H", len(b) - 40)
    return bytes(b)


def _alone_between(kind: str) -> list[bytes]:
    """Five datagrams of one flow, the third of them one GRO sends alone (as ``kind``)."""
    if kind == "ipv6 extension header":
        pkts = [udp6_packet(IP6_A, IP6_B, 100, start=100 * k) for k in range(5)]
        pkts[2] = _with_ipv6_dest_opts(pkts[2])
        return pkts
    pkts = [_u4(100, start=100 * k) for k in range(5)]
    if kind == "empty":
        pkts[2] = _u4(0)
    elif kind == "ip total length":
        pkts[2] = pkts[2][:-4]  # the total length says 4 bytes more than there are
    elif kind == "first fragment":
        pkts[2] = _u4(100, start=200, ip_flags=IPV4_FLAG_MF)
    elif kind == "ip options":
        pkts[2] = _u4(100, start=200, options=bytes([1, 1, 1, 0]))  # type: ignore[arg-type]
    elif kind == "udp length":
        pkts[2] = _udp_length(pkts[2], 100)
    return pkts


@pytest.mark.parametrize(
    "kind",
    [
        "empty",
        "ip total length",
        "first fragment",
        "ip options",
        "udp length",
        "ipv6 extension header",
    ],
)
def test_udp_datagram_sent_alone_ends_its_flows_item(kind: str) -> None:
    # A datagram that cannot be merged and goes out on its own ends the item of its flow: the
    # datagrams after it start a new one, instead of joining the one before it and so
    # overtaking it (a reordered flow).
    pkts = _alone_between(kind)
    out, _ = run_gro(pkts)
    assert_outputs(out, pkts, [(0, 1), (2,), (3, 4)])


def test_udp_super_packet_passed_through_ends_its_flows_item() -> None:
    sp = udp_super_packet(IP4_A, IP4_B, 300, 100)
    src = PacketBatch(capacity=1 << 16)
    src.vnet_hdr = True
    src.append(_u4(100))
    src.append(sp[HEADROOM:], header=sp[:HEADROOM])
    src.append(_u4(100, start=100))
    out = PacketBatch(capacity=1 << 16)
    assert GROTable(udp=True).coalesce(src, out) == 3
    assert bytes(out.with_header(1)) == sp  # in its place, header and all
    assert bytes(out.packet(2)) == _u4(100, start=100)


# --- Test_tcpPacketsCanCoalesce (+ Tailscale) as behaviour ------------------------------


def _t4(n: int, seq: int, flags: int = ACK, **kw: object) -> bytes:
    return tcp4_packet(IP4_A, IP4_B, flags, n, seq, **kw)  # type: ignore[arg-type]


TS = bytes.fromhex("0101080a0000000100000002")

TCP_CAN = [
    pytest.param(
        [_t4(100, 100), _t4(100, 200), _t4(100, 300), _t4(100, 400)],
        3,
        [(0, 1, 2), (3,)],
        id="coalesceUnavailable too many fragments",
    ),
    pytest.param(
        [_t4(65535 - 40 - 100, 1), _t4(100, 65535 - 40 - 100 + 1)],
        None,
        [(0, 1)],
        id="exactly 65535 bytes coalesce",
    ),
    pytest.param(
        [_t4(65535 - 40 - 100, 1), _t4(101, 65535 - 40 - 100 + 1)],
        None,
        [(0,), (1,)],
        id="coalesceUnavailable payload overflow",
    ),
    pytest.param(
        [_t4(100, 1), _t4(50, 101), _t4(100, 151)],
        None,
        [(0, 1), (2,)],
        id="nothing after a shorter segment",
    ),
    pytest.param([_t4(100, 1), _t4(101, 101)], None, [(0,), (1,)], id="no larger after smaller"),
    pytest.param(
        [_t4(100, 101), _t4(100, 1, ACK | PSH)], None, [(0,), (1,)], id="no prepend with PSH"
    ),
    pytest.param([_t4(100, 101), _t4(50, 51)], None, [(0,), (1,)], id="no smaller prepend"),
    pytest.param(
        [_t4(100, 101), _t4(150, -49 & 0xFFFFFFFF)],
        None,
        [(1, 0)],
        id="larger prepend onto a single packet",
    ),
    pytest.param(
        [_t4(100, 201), _t4(100, 301), _t4(150, 51)],
        None,
        [(0, 1), (2,)],
        id="no larger prepend onto merged",
    ),
    pytest.param(
        [_t4(100, 1, tcp_options=TS), _t4(100, 101, tcp_options=TS)],
        None,
        [(0, 1)],
        id="equal options",
    ),
    pytest.param(
        [_t4(100, 1, tcp_options=TS), _t4(100, 101, tcp_options=TS[:-1] + b"\x03")],
        None,
        [(0,), (1,)],
        id="unequal options",
    ),
    pytest.param(
        [_t4(100, 1, tcp_options=TS), _t4(100, 101)], None, [(0,), (1,)], id="unequal option length"
    ),
    pytest.param([_t4(100, 1), _t4(100, 101, ack=2)], None, [(0,), (1,)], id="ack is in the key"),
    pytest.param(
        [_t4(100, 1), _t4(100, 101, ACK | FIN)], None, [(0,), (1,)], id="FIN never coalesces"
    ),
    pytest.param([_t4(100, 1, SYN | ACK), _t4(100, 101)], None, [(0,), (1,)], id="SYN|ACK"),
    pytest.param([_t4(0, 1), _t4(0, 1)], None, [(0,), (1,)], id="no payload"),
    pytest.param(
        [_t4(100, 1), _t4(100, 201), _t4(100, 101)],
        None,
        [(0,), (2, 1)],
        id="gap filler prepends to the latest item (reverse walk)",
    ),
    pytest.param(
        [_t4(100, 0xFFFFFFF0), _t4(100, (0xFFFFFFF0 + 100) & 0xFFFFFFFF)],
        None,
        [(0, 1)],
        id="sequence wrap",
    ),
    pytest.param(
        [_t4(100, 1, ident=5), _t4(100, 101, ident=99)], None, [(0, 1)], id="IPv4 ID ignored"
    ),
    pytest.param(
        [tcp6_packet(IP6_A, IP6_B, ACK, 100, 1, flow_label=1), _mut6(101)],
        None,
        [(0, 1)],
        id="flow label ignored",
    ),
]


@pytest.mark.parametrize(("pkts", "max_segments", "groups"), TCP_CAN)
def test_tcp_packets_can_coalesce(
    pkts: list[bytes], max_segments: int | None, groups: list[tuple[int, ...]]
) -> None:
    out, _ = run_gro(pkts, GROTable(max_segments=max_segments))
    assert_outputs(out, pkts, groups)


def test_psh_kept_when_prepending_to_a_psh_segment() -> None:
    # wireguard-go takes the head's flags from the prepended packet and loses PSH.
    pkts = [_t4(100, 101, ACK | PSH), _t4(100, 1)]
    out, _ = run_gro(pkts)
    assert_outputs(out, pkts, [(1, 0)])
    assert tcp_fields(bytes(out.packet(0)))[2] == ACK | PSH


def test_invalid_new_tcp_packet_is_written_alone() -> None:
    pkts = [_t4(100, 1), flip(_t4(100, 101)), _t4(100, 201)]
    out, table = run_gro(pkts)
    assert_outputs(out, pkts, [(0,), (1,), (2,)])
    assert table.statistics().invalid_checksum == 1


@pytest.mark.parametrize("verify", [True, False], ids=["verified", "trusted"])
def test_tcp_fragments_alike_never_merge(verify: bool) -> None:
    # The kernel's inet_gro_receive flushes every IPv4 fragment (MF or an offset): flags
    # equal in both packets are not enough, as they are for DF.
    pkts = [_t4(100, 1 + 100 * k, ip_flags=IPV4_FLAG_MF) for k in range(3)]
    table = GROTable()
    table.verify_checksums = verify
    out, _ = run_gro(pkts, table)
    assert_outputs(out, pkts, [(0,), (1,), (2,)])


def _bad_ip_csum(p: bytes) -> bytes:
    b = bytearray(p)
    b[10] ^= 0x5A  # the IPv4 header checksum, wrong (the TCP/UDP one still right)
    return bytes(b)


_IP4_CSUM_CASES = [
    pytest.param(
        [_bad_ip_csum(_t4(100, 1)), _t4(100, 101), _t4(100, 201)], [(0,), (1, 2)], id="tcp head"
    ),
    pytest.param(
        [_t4(100, 1), _bad_ip_csum(_t4(100, 101)), _t4(100, 201)],
        [(0,), (1,), (2,)],
        id="tcp joining",
    ),
    pytest.param(
        [_bad_ip_csum(_u4(100)), _u4(100, start=100), _u4(100, start=200)],
        [(0,), (1, 2)],
        id="udp head",
    ),
    pytest.param(
        [_u4(100), _bad_ip_csum(_u4(100, start=100)), _u4(100, start=200), _u4(50, start=300)],
        [(0,), (1,), (2, 3)],
        id="udp joining",
    ),
    pytest.param(
        [_u4(100, checksum=0), _bad_ip_csum(_u4(100, start=100, checksum=0)), _u4(50, start=200)],
        [(0,), (1,), (2,)],
        id="udp without checksum joining",
    ),
]


@pytest.mark.parametrize(("pkts", "groups"), _IP4_CSUM_CASES)
def test_a_bad_ipv4_header_checksum_is_not_coalesced(
    pkts: list[bytes], groups: list[tuple[int, ...]]
) -> None:
    # The kernel's inet_gro_receive flushes such a packet (ip_fast_csum); merged, the
    # super-packet's header checksum — computed afresh — would have made a bad packet good.
    out, table = run_gro(pkts)
    assert_outputs(out, pkts, groups)  # the bad one alone, as it came
    assert table.statistics().invalid_checksum == 1


# --- switches, pass-through, errors, statistics ------------------------------------------


def test_switches_change_at_run_time() -> None:
    table = GROTable(tcp=True, udp=False)
    pkts = [_t4(100, 1), _t4(100, 101), _u4(100), _u4(100)]
    out, _ = run_gro(pkts, table)
    assert len(out) == 3
    table.tcp, table.udp = False, True
    out, _ = run_gro(pkts, table)
    assert_outputs(out, pkts, [(0,), (1,), (2, 3)])


def test_packets_with_a_gso_header_pass_through() -> None:
    sp = tcp_super_packet(IP4_A, IP4_B, 3000, 1448)
    src = PacketBatch(capacity=1 << 16)
    src.vnet_hdr = True
    src.append(sp[10:], header=sp[:10])
    src.append(_t4(100, 1))
    src.append(_t4(100, 101))
    out = PacketBatch(capacity=1 << 16)
    assert GROTable().coalesce(src, out) == 2
    assert bytes(out.with_header(0)) == sp
    # ...and the passed-through super-packet still splits.
    segs = PacketBatch(capacity=1 << 16)
    assert gso_split(out.with_header(0), segs) == 3


def test_output_too_small_and_same_batch() -> None:
    pkts = [flip(_t4(100, 1)), _t4(100, 101), _t4(100, 301)]
    src = batch_of(pkts)
    out = PacketBatch(capacity=200)
    table = GROTable()
    with pytest.raises(PacketTooLargeError):
        table.coalesce(src, out)
    assert len(out) == 0 and table.statistics() == GROStatistics()
    with pytest.raises(PacketTooLargeError):
        table.coalesce(src, PacketBatch(capacity=4096, max_packets=1))
    with pytest.raises(ValueError, match="separate"):
        table.coalesce(src, src)
    with pytest.raises(ValueError, match="max_segments"):
        GROTable(max_segments=0)


def test_input_is_not_modified() -> None:
    src = batch_of(MULTI)
    before = bytes(src.buffer)
    GROTable(udp=True).coalesce(src, PacketBatch(capacity=1 << 16))
    assert bytes(src.buffer) == before


def test_statistics() -> None:
    table = GROTable(udp=True)
    run_gro(MULTI, table)
    run_gro([flip(_t4(100, 1)), _t4(100, 101)], table)
    assert table.statistics() == GROStatistics(
        packets_in=13,
        packets_out=9,
        coalesced=4,
        gso_packets=4,
        invalid_checksum=1,
        too_large=0,
    )
    assert "udp=True" in repr(table)


def test_empty_batch() -> None:
    out = PacketBatch()
    assert GROTable().coalesce(PacketBatch(), out) == 0
    assert out.vnet_hdr and len(out) == 0


def test_a_whole_window_of_mss_segments() -> None:
    # 128 x 1448-byte segments of one flow: 64 KiB caps each super-packet at 45 segments.
    pkts = [_t4(1448, 1 + i * 1448) for i in range(128)]
    out, table = run_gro(pkts)
    assert out.lengths == [40 + 45 * 1448, 40 + 45 * 1448, 40 + 38 * 1448]
    assert_outputs(out, pkts, [tuple(range(45)), tuple(range(45, 90)), tuple(range(90, 128))])
    assert table.statistics().too_large == 2
