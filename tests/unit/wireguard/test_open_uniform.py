"""decrypt_batch's run-at-once step (``_open_uniform``): a bulk transfer's transport messages —
one session, one size, consecutive counters, one address, one stride — checked a byte position
at a time and opened with only the nonce and the AEAD call per message. Whatever the batch, the
packets, counters and replay window must be what the message-by-message loop makes of it."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st
from wgpair import A_IP, A_IP6, B_IP, B_IP6, Pair, ip4, ip6

from tunflow.packet import PacketBatch
from tunflow.wireguard.protocol import (
    DatagramBatch,
    interface as wg_interface,
    session as session_module,
)
from tunflow.wireguard.protocol.replay import ReplayWindow


def packet(size: int, i: int, *, v6: bool = False, src: str | None = None) -> bytes:
    body = bytes((i + k) & 0xFF for k in range(size - (40 if v6 else 20)))
    if v6:
        return ip6(src or A_IP6, B_IP6, body)
    return ip4(src or A_IP, B_IP, body)


def read_of(datagrams: list[bytes], addr: tuple[str, int], *, one_read: bool) -> DatagramBatch:
    """The datagrams as one UDP_GRO read (one buffer, one address object) or appended one by one."""
    rx = DatagramBatch(4 << 20)
    if one_read and len({len(d) for d in datagrams[:-1]}) <= 1:
        blob = b"".join(datagrams)
        rx.buffer[: len(blob)] = blob
        rx.add_segments(0, len(blob), len(datagrams[0]), addr)
    else:
        for d in datagrams:
            rx.append(d, address=addr)
    return rx


def run(
    datagrams: list[bytes], before: list[bytes], *, uniform: bool, one_read: bool, cap: int
) -> tuple[list[object], object, int, list[int], int, list[bytes]]:
    p = Pair()
    p.handshake()
    if before:
        p.deliver("b", before)
    out = PacketBatch(capacity=cap, max_packets=16384)
    saved = wg_interface._UNIFORM_MIN
    if not uniform:
        wg_interface._UNIFORM_MIN = 1 << 30
    try:
        consumed = p.b.decrypt_batch(read_of(datagrams, p.a_addr, one_read=one_read), p.now, out)
        took = [*out.to_list(), out.offsets, out.end]  # the packets, and where they lie
        # the same read again: every message a replay now
        again = PacketBatch(capacity=4 << 20, max_packets=16384)
        p.b.decrypt_batch(read_of(datagrams, p.a_addr, one_read=one_read), p.now, again)
    finally:
        wg_interface._UNIFORM_MIN = saved
    replay = p.peer_of_b.current.replay
    return (
        took,
        p.b.statistics(),
        replay._last,
        list(replay._ring),
        consumed,
        again.to_list(),
    )


@st.composite
def bulk(draw: st.DrawFn) -> tuple[list[bytes], list[bytes], bool, int]:
    size = draw(st.sampled_from([60, 576, 1420]))
    v6 = draw(st.booleans())
    count = draw(st.integers(1, 70))
    foreign = draw(st.integers(0, 9)) == 0  # every packet from a source the peer may not use
    src = ("fd00::9" if v6 else "10.9.9.9") if foreign else None
    packets = [packet(size, i, v6=v6, src=src) for i in range(count)]
    for _ in range(draw(st.integers(0, 2))):  # an odd one: shorter (maybe padded to the same
        # datagram), from a source the peer may not use, or the other IP version
        j = draw(st.integers(0, count - 1))
        packets[j] = draw(
            st.sampled_from(
                [
                    packet(size - 3, j, v6=v6),
                    packet(size - 17, j, v6=v6),
                    packet(size, j, v6=v6, src="fd00::9" if v6 else "10.9.9.9"),
                    packet(size, j, v6=not v6),
                ]
            )
        )
    p = Pair()
    p.handshake()
    datagrams = p.send("a", packets)
    before: list[bytes] = []
    what = draw(st.integers(0, 9))
    if what == 1 and count > 1:  # a tag that does not verify
        j = draw(st.integers(0, count - 1))
        d = bytearray(datagrams[j])
        d[-1] ^= 1
        datagrams[j] = bytes(d)
    elif what == 2 and count > 2:  # a gap
        del datagrams[draw(st.integers(1, count - 2))]
    elif what == 3 and count > 2:  # two swapped
        j = draw(st.integers(0, count - 2))
        datagrams[j], datagrams[j + 1] = datagrams[j + 1], datagrams[j]
    elif what == 4:  # some delivered already: replays at the front
        before = datagrams[: draw(st.integers(1, count))]
    elif what == 5:  # a later message delivered already: one replay inside the run
        before = [datagrams[draw(st.integers(0, count - 1))]]
    elif what == 6 and count > 1:  # another receiver index
        j = draw(st.integers(0, count - 1))
        d = bytearray(datagrams[j])
        d[4] ^= 0x5A
        datagrams[j] = bytes(d)
    elif what == 8:  # another message type, or a reserved byte set (neither is authenticated)
        j = draw(st.integers(0, count - 1))
        d = bytearray(datagrams[j])
        d[draw(st.sampled_from([0, 1, 3]))] ^= 0x01
        datagrams[j] = bytes(d)
    elif what == 7 and count > 1:  # a keepalive or a handshake-sized datagram in between
        j = draw(st.integers(0, count - 1))
        datagrams.insert(j, bytes(datagrams[j][:32]))
    cap = draw(st.sampled_from([4 << 20, (size + 10) * 20 + 100]))  # room for all, or ~20
    return datagrams, before, draw(st.booleans()), cap


@settings(max_examples=250, deadline=None)
@given(bulk())
def test_the_run_at_once_step_makes_what_the_loop_makes(
    case: tuple[list[bytes], list[bytes], bool, int],
) -> None:
    datagrams, before, one_read, cap = case
    fast = run(datagrams, before, uniform=True, one_read=one_read, cap=cap)
    slow = run(datagrams, before, uniform=False, one_read=one_read, cap=cap)
    assert fast == slow


def test_a_clean_run_takes_the_step() -> None:
    p = Pair()
    p.handshake()
    packets = [packet(1420, i) for i in range(40)]
    rx = read_of(p.send("a", packets), p.a_addr, one_read=True)
    out = PacketBatch(capacity=4 << 20, max_packets=16384)
    before = p.b.statistics().rx_packets
    assert p.b._open_uniform(rx, p.now, out) == 40
    assert out.to_list() == packets
    assert p.b.statistics().rx_packets == before + 40
    # a tag that fails ends the run there: the messages before it are taken
    packets = [packet(1420, i) for i in range(40, 80)]
    datagrams = p.send("a", packets)
    bad = bytearray(datagrams[25])
    bad[100] ^= 1
    datagrams[25] = bytes(bad)
    out = PacketBatch(capacity=4 << 20, max_packets=16384)
    assert p.b._open_uniform(read_of(datagrams, p.a_addr, one_read=True), p.now, out) == 25
    # a replayed run is left to the loop
    assert p.b._open_uniform(rx, p.now, out) == 0


def test_a_message_whose_header_counter_was_changed_opens_with_its_own() -> None:
    # the documented difference from the loop: the step does not read the header's counter
    # (not authenticated); message i opens only if sealed with c0 + i — the peer's packet, new
    # — and that counter is recorded, so the genuine copy coming later is a replay
    p = Pair()
    p.handshake()
    packets = [packet(1420, i) for i in range(20)]
    datagrams = p.send("a", packets)
    genuine = datagrams[12]
    changed = bytearray(genuine)
    changed[11] ^= 0xB7  # its counter's fourth byte
    datagrams[12] = bytes(changed)
    rx = read_of(datagrams, p.a_addr, one_read=True)
    out = PacketBatch(capacity=4 << 20, max_packets=16384)
    assert p.b.decrypt_batch(rx, p.now, out) == 20
    assert out.to_list() == packets
    assert p.b.statistics().dropped_bad_aead == 0
    assert p.b.receive_datagram(genuine, p.a_addr, p.now) == []
    assert p.b.statistics().dropped_replay == 1
    # alone, the loop opens it with the counter it says and refuses it, as WireGuard does
    q = Pair()
    q.handshake()
    alone = q.send("a", packets[:13])[12]
    forged = bytearray(alone)
    forged[11] ^= 0xB7
    assert q.b.receive_datagram(bytes(forged), q.a_addr, q.now) == []
    assert q.b.statistics().dropped_bad_aead == 1


@pytest.mark.parametrize("seed", range(20))
def test_mark_run_records_what_check_records(seed: int) -> None:
    rnd = random.Random(seed)
    one, many = ReplayWindow(), ReplayWindow()
    counter = rnd.randrange(0, 1 << 20)
    for _ in range(30):
        counter += rnd.choice([1, 2, 63, 64, 65, 500, 8000, 10_000])  # gaps of every kind
        length = rnd.randrange(1, 200)
        for c in range(counter, counter + length):
            assert one.check(c)
        many.mark_run(counter, counter + length)
        assert (one._last, one._ring) == (many._last, many._ring)
        counter += length - 1


@pytest.mark.parametrize("first", [1, 63, 64, 100])
@pytest.mark.parametrize("length", [8128, 8129, 8130, 8192, 8193, 8300, 20_000])
def test_mark_run_of_a_run_longer_than_the_ring(first: int, length: int) -> None:
    # a run spanning more than 128 words: the ring keeps only its last 128, as check() does —
    # no bit of a counter above the run may be set (it would refuse that message, reordered)
    one, many = ReplayWindow(), ReplayWindow()
    for c in range(first, first + length):
        assert one.check(c)
    many.mark_run(first, first + length)
    assert (one._last, one._ring) == (many._last, many._ring)
    top = first + length - 1
    later = range(top + 64, top, -1)  # the next 64 counters, last first (reordered)
    assert all(many.check(c) for c in later)


def test_a_run_longer_than_the_replay_ring_leaves_later_counters_free() -> None:
    # 9000 messages in one batch (one run-at-once step), then the next ones reordered: none of
    # them was received before, so none is a replay
    p = Pair()
    p.handshake()
    packets = [packet(48, i) for i in range(9000)]
    assert len(p.deliver("b", p.send("a", packets))) == 9000
    later = p.send("a", packets[:20])
    assert len(p.deliver("b", later[::-1])) == 20
    assert p.b.statistics().dropped_replay == 0


# -- and the sending side: a run of full-size packets sealed at once ---------------------------


def sealed_run(
    packets: list[bytes], *, uniform: bool, mtu: int, cap: int, vnet: bool = False
) -> tuple[list[tuple[bytes, object]], int, int]:
    p = Pair(mtu=mtu)
    p.handshake()
    batch = PacketBatch(capacity=1 << 21, max_packets=16384)
    batch.vnet_hdr = vnet  # as a device's plain reads hand them out: headers in the headroom
    batch.extend(packets)
    out = DatagramBatch(cap)
    out.buffer[:] = b"\xa5" * len(out.buffer)  # a used batch: padding must be written, not found
    saved = session_module._UNIFORM_MIN
    if not uniform:
        session_module._UNIFORM_MIN = 1 << 30
    try:
        done = p.a.encrypt_batch(batch, p.now, out)
    finally:
        session_module._UNIFORM_MIN = saved
    return out.to_pairs(), done, p.peer_of_a.current.send_counter


@settings(max_examples=150, deadline=None)
@given(
    # full-size (sealed from the source); padded (small datagrams; 1419 is padded to the MTU
    # only) and larger than the MTU: declined, the loop's
    st.sampled_from([1420, 1280, 1424, 1400, 64, 92, 41, 1419]),
    st.integers(1, 60),
    st.lists(
        st.tuples(st.integers(0, 59), st.sampled_from([-5, 52 - 1420, 40 - 1420])), max_size=6
    ),
    st.sampled_from([1420, 1400, 9000]),
    st.sampled_from([4 << 20, 20_000]),
    st.booleans(),
)
def test_the_sending_run_makes_what_the_loop_makes(
    size: int, count: int, odd: list[tuple[int, int]], mtu: int, cap: int, vnet: bool
) -> None:
    packets = [packet(size, i) for i in range(count)]
    for j, change in odd:  # a packet of another size (an ACK among data) breaks the run
        if j < count:
            packets[j] = packet(max(size + change, 40), j)
    fast = sealed_run(packets, uniform=True, mtu=mtu, cap=cap, vnet=vnet)
    slow = sealed_run(packets, uniform=False, mtu=mtu, cap=cap, vnet=vnet)
    assert fast == slow
    # and the receiving end opens them
    p = Pair(mtu=mtu)
    p.handshake()
    if fast[1] == count:
        assert p.deliver("b", [d for d, _ in fast[0]]) == packets


def test_a_clean_sending_run_takes_the_step() -> None:
    p = Pair()
    p.handshake()
    batch = PacketBatch(capacity=1 << 21, max_packets=16384)
    batch.extend([packet(1420, i) for i in range(40)])
    out = DatagramBatch(4 << 20)
    session = p.peer_of_a.current
    start = session.send_counter
    assert session._encrypt_uniform(batch, out, p.b_addr, 1420, range(40)) == 40
    assert session._encrypt_uniform(batch, out, p.b_addr, 1420, range(0, 40, 1)) == 40
    assert session.send_counter == start + 80
    batch.lengths[7] -= 1  # not one size: declined
    assert session._encrypt_uniform(batch, out, p.b_addr, 1420, range(40)) == 0
    gap = PacketBatch(capacity=1 << 21, max_packets=16384)
    gap.extend([packet(1420, i) for i in range(20)])
    gap.end += 8  # the rest further on: not one stride, declined
    gap.extend([packet(1420, i) for i in range(20, 40)])
    assert session._encrypt_uniform(gap, out, p.b_addr, 1420, range(40)) == 0
    small = PacketBatch(capacity=1 << 21, max_packets=16384)
    small.extend([packet(92, i) for i in range(40)])  # it would be padded: the loop's
    assert session._encrypt_uniform(small, out, p.b_addr, 1420, range(40)) == 0


@pytest.mark.parametrize("uniform", [True, False])
def test_a_message_from_another_address_is_credited_to_it(uniform: bool) -> None:
    """The run's address is checked on the run itself: a later datagram from the first one's
    address does not vouch for one in the run that came from elsewhere (the peer roams to it)."""
    p = Pair()
    p.handshake()
    datagrams = p.send("a", [packet(1420, i) for i in range(10)] + [packet(100, 10)])
    bad = bytearray(datagrams[10])
    bad[-1] ^= 1  # after the run, from the first address, and not authentic
    datagrams[10] = bytes(bad)
    elsewhere = ("192.0.2.9", 40000)
    rx = DatagramBatch(4 << 20)
    for i, d in enumerate(datagrams):
        rx.append(d, address=elsewhere if i == 9 else p.a_addr)
    out = PacketBatch(capacity=4 << 20, max_packets=16384)
    saved = wg_interface._UNIFORM_MIN
    if not uniform:
        wg_interface._UNIFORM_MIN = 1 << 30
    try:
        p.b.decrypt_batch(rx, p.now, out)
    finally:
        wg_interface._UNIFORM_MIN = saved
    assert len(out) == 10
    assert p.peer_of_b.endpoint == elsewhere
