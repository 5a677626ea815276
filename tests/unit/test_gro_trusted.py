"""GRO for packets a VPN already authenticated: ``GROTable.verify_checksums = False`` merges
without checking TCP/UDP checksums (the kernel's WireGuard marks decrypted packets
CHECKSUM_UNNECESSARY for the same reason); by default a bad checksum keeps a packet apart."""

from __future__ import annotations

import socket
import struct

from hypothesis import given, settings, strategies as st

from tests.unit.offload_packets import (
    ACK,
    FIN,
    IP4_A,
    IP4_B,
    IP4_C,
    IP6_A,
    IP6_B,
    IP6_C,
    PSH,
    tcp4_packet,
    tcp6_packet,
    udp4_packet,
)
from tunflow.offload import GROTable
from tunflow.packet import HEADROOM, PacketBatch, checksum, pseudo_header_checksum_no_fold


def tcp(seq: int, payload: bytes, *, good: bool = True) -> bytes:
    s, d = socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")
    seg = bytearray(struct.pack("!HHIIBBHHH", 5201, 40000, seq, 1, 0x50, 0x10, 65535, 0, 0))
    seg += payload
    cs = ~checksum(seg, pseudo_header_checksum_no_fold(6, s, d, len(seg))) & 0xFFFF
    seg[16:18] = struct.pack("!H", cs if good else cs ^ 0x5555)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 0, 0x4000, 64, 6, 0, s, d))
    ip[10:12] = struct.pack("!H", ~checksum(ip) & 0xFFFF)
    return bytes(ip + seg)


def coalesce(table: GROTable, packets: list[bytes]) -> PacketBatch:
    src, out = PacketBatch(1 << 20), PacketBatch(1 << 20)
    src.extend(packets)
    table.coalesce(src, out)
    return out


def test_bad_checksums_are_kept_apart_unless_trusted() -> None:
    packets = [tcp(1 + 1000 * i, bytes([i]) * 1000, good=i != 2) for i in range(4)]
    strict = GROTable()
    assert strict.verify_checksums
    assert len(coalesce(strict, packets)) > 1
    assert strict.statistics().invalid_checksum >= 1
    trusting = GROTable()
    trusting.verify_checksums = False
    out = coalesce(trusting, packets)
    assert len(out) == 1 and out.lengths[0] == 40 + 4000
    assert trusting.statistics().invalid_checksum == 0
    # the merged payload is the packets' payloads in order
    assert bytes(out.packet(0)[40:]) == b"".join(bytes([i]) * 1000 for i in range(4))


# -- the in-order fast path (trusted IPv4 TCP of one flow) against the general classifier ----


_TS = bytes([1, 1, 8, 10]) + bytes(range(8))  # NOP NOP timestamps: a 32-byte TCP header


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[bytes], bool, int | None, int]:
    """Bulk transfers' segments, each flow's in order (one to four flows, interleaved);
    sometimes with one thing that must break a run or the fast path."""
    count = draw(st.integers(2, 60))
    mss = draw(st.sampled_from([100, 536, 1380, 1448, 9000]))
    opts = draw(st.sampled_from([b"", _TS]))
    v6 = draw(st.booleans())
    a, b, c = (IP6_A, IP6_B, IP6_C) if v6 else (IP4_A, IP4_B, IP4_C)
    make = tcp6_packet if v6 else tcp4_packet
    dsts = [b, c, (b[0], 2), (c[0], 2)][: draw(st.integers(1, 4))]
    seqs = [draw(st.integers(0, 2**32 - 1)) for _ in dsts]
    # half the cases are clean; the others have one odd packet somewhere
    spoil_at = draw(st.integers(0, count - 1)) if draw(st.booleans()) else -1
    spoiler = draw(st.integers(1, 12))
    # pure ACKs among them (a transfer the other way, decrypted in the same batch): none, or
    # about one every `acks` packets
    acks = draw(st.sampled_from([0, 0, 1, 3, 10]))
    packets = []
    for i in range(count):
        f = draw(st.integers(0, len(dsts) - 1))
        if acks and not draw(st.integers(0, acks - 1)):
            kind = draw(st.integers(0, 5))
            if kind == 4:  # a window update: the data flow's own addresses, seq and ACK
                packets.append(make(a, dsts[f], ACK, 0, seqs[f]))
            else:  # the other way, ACK numbers moving on; rarely with PSH or FIN
                flags = (ACK, ACK, ACK, ACK | PSH, ACK | FIN, ACK)[kind]
                back = draw(st.integers(0, 2**32 - 1))
                packets.append(make(dsts[f], a, flags, 0, 9, ack=back))
        size = mss if draw(st.integers(0, 5)) else draw(st.integers(1, mss))
        flags = ACK | PSH if not draw(st.integers(0, 7)) else ACK
        kw: dict[str, object] = {}
        odd = spoiler if i == spoil_at else 0
        src, dst, ack, options = a, dsts[f], 1, opts
        if odd == 1:
            src = (a[0], 7)  # a flow of its own
        elif odd == 2:
            seqs[f] = (seqs[f] + 1) & 0xFFFFFFFF  # a gap
        elif odd == 3:
            flags = ACK | FIN
        elif odd == 4:
            ack = 2
        elif odd == 5:
            kw["hop_limit" if v6 else "ttl"] = 63
        elif odd == 8:
            kw["traffic_class" if v6 else "tos"] = 4
        elif odd == 9 and v6:
            kw["flow_label"] = 77  # not compared: still one flow, as the general path has it
        elif odd == 10 and not v6:
            kw["ip_flags"] = 0  # DF off
        if not v6:
            kw["ident"] = i  # IPv4 IDs move on, and are not compared
        elif odd == 6 and opts:
            # the timestamp moves on (from here on, as a clock does)
            opts = options = bytes([1, 1, 8, 10]) + bytes(range(1, 9))
        elif odd == 7:
            # another protocol; or the other IP version
            packets.append(
                udp4_packet(IP4_A, IP4_B, 100) if v6 else tcp6_packet(IP6_A, IP6_B, ACK, 100, 1)
            )
            continue
        packet = bytearray(
            make(src, dst, flags, size, seqs[f], ack=ack, tcp_options=options, **kw)  # type: ignore[arg-type]
        )
        if odd == 11:
            packet[(40 if v6 else 20) + 12] |= 0x01  # AE (and reserved) bits: not compared
        packets.append(bytes(packet))
        seqs[f] = (seqs[f] + size) & 0xFFFFFFFF
    # odd == 12: a packet with a non-zero virtio-net header (passed through whole)
    gso_at = spoil_at if spoiler == 12 else -1
    return (
        packets,
        draw(st.booleans()) or gso_at >= 0,
        draw(st.sampled_from([None, 1, 3, 44])),
        gso_at,
    )


class _General(GROTable):
    """The general classifier only (the same trust)."""

    def _classify_uniform(self, src: PacketBatch) -> None:  # type: ignore[override]
        return None

    def _classify_tcp_run(self, src: PacketBatch) -> None:  # type: ignore[override]
        return None


class _PerPacket(GROTable):
    """The in-order fast path a packet at a time, and the general classifier."""

    def _classify_uniform(self, src: PacketBatch) -> None:  # type: ignore[override]
        return None


@settings(max_examples=300, deadline=None)
@given(runs())
def test_the_in_order_fast_path_makes_what_the_general_one_makes(
    case: tuple[list[bytes], bool, int | None, int],
) -> None:
    packets, headers, max_segments, gso_at = case
    src = PacketBatch(1 << 20, max_packets=128)
    src.extend(packets)
    if headers:
        src.zero_headers()
    if gso_at >= 0:
        src.buffer[src.offsets[gso_at] - HEADROOM] = 1  # NEEDS_CSUM
    # takes the fast path when it can
    _assert_as_general(_PerPacket(max_segments=max_segments), src, max_segments)


def _assert_as_general(table: GROTable, src: PacketBatch, max_segments: int | None) -> None:
    """``table`` (checksums trusted) coalesces ``src`` as the general classifier does: the same
    packets, headers and statistics."""
    table.verify_checksums = False
    general = _General(max_segments=max_segments)
    general.verify_checksums = False
    out, out_general = PacketBatch(src.capacity), PacketBatch(src.capacity)
    assert table.coalesce(src, out) == general.coalesce(src, out_general)
    assert out.to_list() == out_general.to_list()
    assert [bytes(out.header(i)) for i in range(len(out))] == [
        bytes(out_general.header(i)) for i in range(len(out_general))
    ]
    assert table.statistics() == general.statistics()


def test_the_fast_path_takes_a_clean_run_and_refuses_the_rest() -> None:
    table = GROTable()
    table.verify_checksums = False
    clean = [tcp4_packet(IP4_A, IP4_B, ACK, 1380, 1 + 1380 * i) for i in range(50)]
    src = PacketBatch(1 << 20, max_packets=128)
    src.extend(clean)
    run = table._classify_tcp_run(src)
    assert run is not None
    items, too_large = run
    # 47 segments of 1380 bytes fit 65535 bytes with the 40 of headers; 3 start the next
    assert [len(item[0]) for item in items] == [47, 3]  # type: ignore[index]
    assert too_large == 1
    # what differs in other fields than the flow's starts an item of its own
    later = tcp4_packet(IP4_A, IP4_B, ACK, 1380, 1 + 1380 * 50, tcp_options=_TS)
    src.clear()
    src.extend([*clean, later])
    run = table._classify_tcp_run(src)
    assert run is not None and [len(item[0]) for item in run[0]] == [47, 3, 1]  # type: ignore[index]
    # another flow: its own items, in the order they begin
    src.clear()
    src.extend([*clean[:10], tcp4_packet(IP4_A, IP4_C, ACK, 1380, 7), *clean[10:]])
    run = table._classify_tcp_run(src)
    assert run is not None and [len(item[0]) for item in run[0]] == [47, 1, 3]  # type: ignore[index]
    # the AE and reserved bits beside the data offset are not compared (nor by _classify)
    ae = bytearray(clean[5])
    ae[32] |= 0x01
    src.clear()
    src.extend([*clean[:5], bytes(ae), *clean[6:]])
    run = table._classify_tcp_run(src)
    assert run is not None and [len(item[0]) for item in run[0]] == [47, 3]  # type: ignore[index]
    # IPv6 the same way
    clean6 = [tcp6_packet(IP6_A, IP6_B, ACK, 1360, 1 + 1360 * i) for i in range(50)]
    src.clear()
    src.extend(clean6)
    run = table._classify_tcp_run(src)
    assert run is not None and [len(item[0]) for item in run[0]] == [48, 2]  # type: ignore[index]
    # pure ACKs of a transfer the other way pass through in their places, not in the items
    back = [tcp4_packet(IP4_B, IP4_A, ACK, 0, 1, ack=1 + 1000 * i) for i in range(5)]
    src.clear()
    src.extend([*clean[:10], back[0], *clean[10:20], *back[1:4], *clean[20:], back[4]])
    run = table._classify_tcp_run(src)
    assert run is not None
    slots = [s if isinstance(s, int) else ("item", len(s[0])) for s in run[0]]
    assert slots == [("item", 47), 10, 21, 22, 23, ("item", 3), 54]
    for spoiler in (
        tcp6_packet(IP6_A, IP6_B, ACK, 1380, 1),  # the other IP version
        tcp4_packet(IP4_B, IP4_A, ACK | FIN, 0, 1),  # a pure ACK with flags GRO leaves alone
        tcp4_packet(IP4_A, IP4_B, ACK, 1380, 2 + 1380 * 50),  # a gap
        tcp4_packet(IP4_A, IP4_B, ACK | FIN, 1380, 1 + 1380 * 50),  # flags GRO leaves alone
    ):
        src.clear()
        src.extend([*clean, spoiler])
        assert table._classify_tcp_run(src) is None


# -- the uniform path: one flow at one stride, checked a byte position at a time -------------


@st.composite
def uniform_runs(draw: st.DrawFn) -> tuple[list[bytes], bool, int | None, int]:
    """One flow's full-size segments in order (what a tunnel decrypts back to back), PSH here
    and there, maybe a short last one; half the cases with one thing that must cut an item or
    send the batch another way."""
    count = draw(st.integers(2, 100))
    mss = draw(st.sampled_from([100, 536, 1380, 1448, 9000]))
    opts = draw(st.sampled_from([b"", _TS]))
    v6 = draw(st.booleans())
    a, b = (IP6_A, IP6_B) if v6 else (IP4_A, IP4_B)
    make = tcp6_packet if v6 else tcp4_packet
    # sometimes near the end of the sequence space
    seq = draw(st.one_of(st.integers(0, 2**32 - 1), st.integers(2**32 - 200_000, 2**32 - 1)))
    spoil_at = draw(st.integers(0, count - 1)) if draw(st.integers(0, 2)) else -1
    spoiler = draw(st.integers(1, 19))
    last = draw(st.sampled_from([mss, mss, draw(st.integers(1, mss))]))
    packets = []
    for i in range(count):
        size = last if i == count - 1 else mss
        # PSH here and there, and often on the last (where it meets the join of a short one)
        flags = ACK | PSH if not draw(st.integers(0, 2 if i == count - 1 else 9)) else ACK
        kw: dict[str, object] = {}
        odd = spoiler if i == spoil_at else 0
        src, dst, ack, options = a, b, 1, opts
        if odd == 1:
            src = (a[0], 7)  # a flow of its own
        elif odd == 2:
            seq = (seq + 1) & 0xFFFFFFFF  # a gap
        elif odd == 18:
            seq = (seq + mss * (1 + i % 3)) & 0xFFFFFFFF  # whole segments missing
        elif odd == 19:
            seq = (seq - mss * (1 + i % 3)) & 0xFFFFFFFF  # resent
        elif odd == 3:
            flags = ACK | FIN
        elif odd == 4:
            ack = 2
        elif odd == 5:
            kw["hop_limit" if v6 else "ttl"] = 63
        elif odd == 6 and opts:
            opts = options = bytes([1, 1, 8, 10]) + bytes(range(1, 9))  # the clock moves
        elif odd == 17 and opts:
            options = bytes([1, 1, 8, 10]) + bytes(range(2, 10))  # this packet's own options
        elif odd == 7:
            kw["traffic_class" if v6 else "tos"] = 4
        elif odd == 8:
            kw["flow_label" if v6 else "ident"] = 77  # not compared
        elif odd == 9 and not v6:
            kw["ip_flags"] = 0  # DF off
        elif odd == 10:
            size = max(1, size - 1)  # a shorter one in the middle: no longer one stride
        elif odd == 11:
            flags = ACK | PSH
        if not v6 and odd != 8:
            kw["ident"] = i
        packet = bytearray(
            make(src, dst, flags, size, seq, ack=ack, tcp_options=options, **kw)  # type: ignore[arg-type]
        )
        iph = 40 if v6 else 20
        if odd == 12:
            packet[iph + 12] |= 0x01  # AE (and reserved) bits: not compared
        elif odd == 13:
            packet[iph + 12] = 0x40 | (packet[iph + 12] & 0x0F)  # data offset 16: malformed
        elif odd == 14:
            packet[5 if v6 else 3] ^= 0x01  # the length field disagrees with the length
        elif odd == 15:
            packet[0] = (packet[0] & 0x0F) | (0x40 if v6 else 0x60)  # the other version
        elif odd == 16:
            packet[1 if v6 else 9] ^= 0x01  # traffic class low bit / the protocol
        packets.append(bytes(packet))
        seq = (seq + size) & 0xFFFFFFFF
    return (
        packets,
        draw(st.booleans()),
        draw(st.sampled_from([None, 1, 3, 44])),
        spoil_at if spoiler == 16 and draw(st.booleans()) else -1,
    )


def _compare_with_general(
    packets: list[bytes], headers: bool, max_segments: int | None, gso_at: int = -1
) -> GROTable:
    src = PacketBatch(1 << 21, max_packets=128)
    src.extend(packets)
    if headers:
        src.zero_headers()
        if gso_at >= 0:
            src.buffer[src.offsets[gso_at] - HEADROOM] = 1  # a non-zero header
    table = GROTable(max_segments=max_segments)
    _assert_as_general(table, src, max_segments)
    return table


@settings(max_examples=400, deadline=None)
@given(uniform_runs())
def test_the_uniform_path_makes_what_the_general_one_makes(
    case: tuple[list[bytes], bool, int | None, int],
) -> None:
    _compare_with_general(*case)


def _uniform(packets: list[bytes], *, headers: bool = False, max_segments: int | None = None):  # type: ignore[no-untyped-def]
    table = GROTable(max_segments=max_segments)
    table.verify_checksums = False
    src = PacketBatch(1 << 21, max_packets=128)
    src.extend(packets)
    if headers:
        src.zero_headers()
    run = table._classify_uniform(src)
    return None if run is None else ([len(item[0]) for item in run[0]], run[1])  # type: ignore[index]


def test_the_uniform_path_takes_one_flow_at_one_stride() -> None:
    def flow(count: int, mss: int = 1380, psh: tuple[int, ...] = (), last: int = 0) -> list[bytes]:
        return [
            tcp4_packet(
                IP4_A,
                IP4_B,
                ACK | PSH if i in psh else ACK,
                last if last and i == count - 1 else mss,
                1 + mss * i,
                ident=i,
                tcp_options=_TS,
            )
            for i in range(count)
        ]

    # 47 segments of 1380 bytes (and 52 bytes of headers) fit 65535 bytes; 3 start the next
    assert _uniform(flow(50)) == ([47, 3], 1)
    assert _uniform(flow(50), headers=True) == ([47, 3], 1)
    assert _uniform(flow(50), max_segments=20) == ([20, 20, 10], 0)
    # a PSH ends an item; a short last segment joins the last item if it fits
    assert _uniform(flow(40, psh=(9, 39), last=100)) == ([10, 30], 0)
    assert _uniform(flow(50, last=100)) == ([47, 3], 1)
    assert _uniform(flow(48, last=100)) == ([48], 0)  # 47 x 1380 + 100 + 52 fit
    assert _uniform(flow(48, last=700)) == ([47, 1], 1)  # 47 x 1380 + 700 + 52 do not
    table = GROTable()
    table.verify_checksums = False
    src = PacketBatch(1 << 21, max_packets=128)
    src.extend(flow(20, psh=(19,), last=100))  # a short last one with PSH joins, and ends it
    run = table._classify_uniform(src)
    assert run is not None and [(len(item[0]), item[5]) for item in run[0]] == [(20, True)]  # type: ignore[index]
    # IPv6, the flow label not compared
    six = [tcp6_packet(IP6_A, IP6_B, ACK, 1360, 1 + 1360 * i, flow_label=i) for i in range(30)]
    assert _uniform(six) == ([30], 0)
    # what it leaves to the packet-at-a-time ways: short batches, other lengths or strides,
    # other flows, reordering, a gap where the sequence numbers wrap
    assert _uniform(flow(11)) is None
    packets = flow(30)
    assert _uniform([*packets[:10], packets[10][:-1], *packets[11:]]) is None
    assert _uniform([*packets[:10], tcp4_packet(IP4_A, IP4_C, ACK, 1380, 1), *packets[11:]]) is None
    assert _uniform([*packets[:10], packets[11], packets[10], *packets[12:]]) is None
    assert _uniform([*packets[:10], packets[3], *packets[11:]]) is None  # a retransmission
    # packets missing (lost on the way): the next one starts an item
    assert _uniform([*packets[:10], *packets[11:]]) == ([10, 19], 0)
    assert _uniform([*packets[:10], *packets[14:20], *packets[21:]]) == ([10, 6, 9], 0)
    acked = tcp4_packet(IP4_A, IP4_B, ACK, 1380, 1 + 1380 * 10, ack=2, ident=10, tcp_options=_TS)
    # another ACK number: an item of its own (as the packet-at-a-time way makes it)
    assert _uniform([*packets[:10], acked, *packets[11:]]) == ([10, 1, 19], 0)
    wrap = [
        tcp4_packet(IP4_A, IP4_B, ACK, 1000, (2**32 - 5000 + 1000 * i) % 2**32) for i in range(20)
    ]
    assert _uniform(wrap) == ([20], 0)  # the numbers wrap inside an item
    assert _uniform([*wrap[:3], *wrap[4:]]) is None  # a gap in a batch whose numbers wrap
    # options that change start an item (a timestamp that moves on, or one odd packet)
    moved = bytearray(packets[20])
    moved[-1380 - 1] ^= 1  # the last byte of the timestamps
    assert _uniform([*packets[:20], bytes(moved), *packets[21:]]) == ([20, 1, 9], 0)
    ticks = [
        tcp4_packet(
            IP4_A, IP4_B, ACK, 1380, 1 + 1380 * i, tcp_options=_TS[:4] + bytes([i // 7]) * 8
        )
        for i in range(30)
    ]
    assert _uniform(ticks) == ([7, 7, 7, 7, 2], 0)
    short = tcp4_packet(IP4_A, IP4_B, ACK, 100, 1 + 1380 * 29, tcp_options=_TS[:4] + bytes(8))
    assert _uniform([*packets[:29], short]) == ([29, 1], 0)  # a short last one, other options


@st.composite
def flow_runs(draw: st.DrawFn) -> tuple[list[bytes], bool, int | None, int]:
    """Several flows of one sender, each in runs of its own (what a tunnel delivers of a few
    TCP streams: each stream's segments of one TSO burst back to back), one segment size; now and
    then a flow's ACK number or timestamp moves, a flow skips ahead, a PSH, a short last one."""
    mss = draw(st.sampled_from([100, 536, 1380]))
    v6 = draw(st.booleans())
    a = IP6_A if v6 else IP4_A
    dsts = [(IP6_B if v6 else IP4_B)[0], (IP6_C if v6 else IP4_C)[0]]
    make = tcp6_packet if v6 else tcp4_packet
    nflows = draw(st.integers(1, 4))
    flows = [(dsts[f % 2], 1000 + f) for f in range(nflows)]
    # sometimes near the end of the sequence space
    seqs = [
        draw(st.one_of(st.integers(0, 2**32 - 1), st.integers(2**32 - 200_000, 2**32 - 1)))
        for _ in flows
    ]
    acks = [1] * nflows
    stamps = [0] * nflows
    packets: list[bytes] = []
    total = draw(st.integers(12, 110))
    while len(packets) < total:
        f = draw(st.integers(0, nflows - 1))
        for _ in range(min(draw(st.integers(1, 40)), total - len(packets))):
            event = draw(st.integers(0, 120))
            if event == 1:
                acks[f] += 1
            elif event == 2:
                stamps[f] += 1
            elif event == 3:
                seqs[f] = (seqs[f] + mss * draw(st.integers(1, 40))) & 0xFFFFFFFF  # a gap
            elif event == 5:
                seqs[f] = (seqs[f] - mss * draw(st.integers(1, 3))) & 0xFFFFFFFF  # resent
            size = mss
            if len(packets) == total - 1 and draw(st.booleans()):
                size = draw(st.integers(1, mss))
            flags = ACK | PSH if event == 4 else ACK
            options = bytes([1, 1, 8, 10]) + stamps[f].to_bytes(4, "big") + bytes(4)
            packets.append(
                make(a, flows[f], flags, size, seqs[f], ack=acks[f], tcp_options=options)  # type: ignore[arg-type]
            )
            seqs[f] = (seqs[f] + size) & 0xFFFFFFFF
    return packets, draw(st.booleans()), draw(st.sampled_from([None, 1, 3, 44])), -1


@settings(max_examples=300, deadline=None)
@given(flow_runs())
def test_the_uniform_path_makes_what_the_general_one_makes_of_several_flows(
    case: tuple[list[bytes], bool, int | None, int],
) -> None:
    _compare_with_general(*case)


def test_the_uniform_path_takes_flows_in_runs() -> None:
    flows = [(IP4_B[0], 1000 + f) for f in range(4)]
    packets = []
    seqs = [1, 5000, 90_000, 7]
    for _ in range(3):
        for f in range(4):
            for _ in range(10):
                packets.append(tcp4_packet(IP4_A, flows[f], ACK, 1380, seqs[f]))
                seqs[f] += 1380
    # each flow's later runs join its item: one item a flow
    assert _uniform(packets[:120]) == ([30, 30, 30, 30], 0)


def test_the_fast_paths_compare_tcp_options_byte_for_byte() -> None:
    # tcp_gro_receive flushes when the options differ, not only their length: a timestamp
    # that moves on between two segments ends the merge, trusted or not, short batch or long.
    def ts(tsval: int) -> bytes:
        return bytes.fromhex("0101080a") + struct.pack(">II", tsval, 7)

    for count in (4, 16):
        tsvals = [1] + [2] * (count - 1)
        packets = [
            tcp4_packet(IP4_A, IP4_B, ACK, 100, 1 + 100 * i, tcp_options=ts(v))
            for i, v in enumerate(tsvals)
        ]
        for verify in (True, False):
            table = GROTable()
            table.verify_checksums = verify
            out = coalesce(table, packets)
            assert out.lengths == [len(packets[0]), 52 + 100 * (count - 1)], (count, verify)
