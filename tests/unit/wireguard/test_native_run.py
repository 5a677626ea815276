"""Native fast mode: a whole message read at once (one UDP_GRO read) opens in one step; any
run that is not one clean message falls back to fragment-by-fragment reassembly."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st
from wgpair import A_IP, B_IP, Pair, batch_of, ip4

from tunflow.packet import HEADROOM, PacketBatch
from tunflow.wireguard.protocol import (
    NATIVE_HEADER_SIZE,
    DatagramBatch,
    open_native_run,
    seal_native,
)
from tunflow.wireguard.protocol.constants import TAG_SIZE


def super_packet(n: int, seed: int = 0) -> bytes:
    rnd = random.Random(seed)
    return ip4(A_IP, B_IP, bytes(rnd.randrange(256) for _ in range(n - 20)), proto=6)


def sealed(p: Pair, packets: list[bytes]) -> DatagramBatch:
    batch = batch_of(packets)
    batch.zero_headers()
    out = DatagramBatch(4 << 20)
    assert p.a.encrypt_batch(batch, p.now, out) == len(packets)
    return out


def native_pair() -> Pair:
    p = Pair(a_peer={"native_mode": True}, b_peer={"native_mode": True})
    p.handshake()
    return p


def as_gro_read(out: DatagramBatch, addr: tuple[str, int]) -> DatagramBatch:
    """What one UDP_GRO read of ``out`` looks like: the same bytes, cut by the first size."""
    rx = DatagramBatch(4 << 20)
    rx.buffer[: out.end] = out.view[: out.end]
    rx.add_segments(0, out.end, out.lengths[0], addr)
    return rx


def test_one_read_one_message_one_step() -> None:
    p = native_pair()
    big = super_packet(60_000)
    rx = as_gro_read(sealed(p, [big]), p.a_addr)
    assert len(rx) == 42  # ceil((60000 + 10 + 16) / 1432)
    out = PacketBatch(1 << 20)
    assert p.b.decrypt_batch(rx, p.now, out) == len(rx)
    assert out.vnet_hdr and out.to_list() == [big]
    assert not p.peer_of_b.current.native_partial  # never stored fragment by fragment
    # the same read again: a replay, dropped as a whole
    again = PacketBatch(1 << 20)
    assert p.b.decrypt_batch(rx, p.now, again) == len(rx)
    assert len(again) == 0 and p.b.statistics().dropped_replay == 1


def test_two_messages_back_to_back_and_a_short_one() -> None:
    p = native_pair()
    packets = [super_packet(30_000, 1), super_packet(30_000, 2), ip4(A_IP, B_IP, b"ack")]
    out = sealed(p, packets)
    rx = DatagramBatch(4 << 20)
    for d, _ in out.to_pairs():
        rx.append(d, address=p.a_addr)
    got = PacketBatch(1 << 20)
    assert p.b.decrypt_batch(rx, p.now, got) == len(rx)
    assert got.to_list() == packets


def test_a_broken_run_falls_back_to_reassembly() -> None:
    p = native_pair()
    big = super_packet(40_000, 3)
    out = sealed(p, [big])
    pairs = out.to_pairs()
    # fragment 5 arrives first (stored alone), then the whole message in one read: the run
    # path sees a stored fragment and hands the rest to reassembly, which completes it
    first = DatagramBatch(1 << 16)
    first.append(pairs[5][0], address=p.a_addr)
    got = PacketBatch(1 << 20)
    p.b.decrypt_batch(first, p.now, got)
    assert len(got) == 0
    rest = DatagramBatch(4 << 20)
    for k, (d, _) in enumerate(pairs):
        if k != 5:
            rest.append(d, address=p.a_addr)
    p.b.decrypt_batch(rest, p.now, got)
    assert got.to_list() == [big]


def test_open_native_run_refuses_what_is_not_one_message() -> None:
    p = native_pair()
    out = sealed(p, [super_packet(20_000, 4)])
    session = p.peer_of_b.current
    view, stride, count = out.view, out.lengths[0], len(out)
    scratch = bytearray(70_000)
    got = PacketBatch(1 << 20)
    # a header that disagrees (another counter in fragment 2)
    bad = bytearray(out.buffer[: out.end])
    bad[2 * stride + 8] ^= 1
    assert (
        open_native_run(session, memoryview(bad), 0, count, stride, out.lengths[-1], got, scratch)
        is None
    )
    # a wrong stride or count
    assert (
        open_native_run(session, view, 0, count, stride - 1, out.lengths[-1], got, scratch) is None
    )
    assert (
        open_native_run(session, view, 0, count + 1, stride, out.lengths[-1], got, scratch) is None
    )
    # the real thing
    assert open_native_run(session, view, 0, count, stride, out.lengths[-1], got, scratch) == 1
    # a flipped ciphertext bit: the AEAD refuses
    out2 = sealed(p, [super_packet(20_000, 5)])
    flipped = bytearray(out2.buffer[: out2.end])
    flipped[3 * stride + 100] ^= 1
    assert (
        open_native_run(
            session, memoryview(flipped), 0, count, stride, out2.lengths[-1], got, scratch
        )
        == -3
    )


def scatter(out: DatagramBatch) -> tuple[bytearray, bytearray]:
    """What a scattered read does: 20-byte headers in one buffer, chunks in another."""
    headers, bodies = bytearray(), bytearray()
    for d, _ in out.to_pairs():
        headers += d[:20]
        bodies += d[20:]
    return headers, bodies


def test_scattered_fragments_open_where_they_lie() -> None:
    p = native_pair()
    big = super_packet(50_000, 6)
    out = sealed(p, [big])
    headers, bodies = scatter(out)
    got = PacketBatch(1 << 20)
    done = p.b.decrypt_native_scattered(
        memoryview(headers), memoryview(bodies), len(out), out.lengths[-1], p.a_addr, p.now, got
    )
    assert done is True and got.to_list() == [big]
    assert p.peer_of_b.endpoint == p.a_addr
    # again: a replay, consumed and counted
    assert p.b.decrypt_native_scattered(
        memoryview(headers), memoryview(bodies), len(out), out.lengths[-1], p.a_addr, p.now, got
    )
    assert len(got) == 1 and p.b.statistics().dropped_replay == 1
    # not one whole message (a header changed, a fragment missing): the caller falls back
    out = sealed(p, [super_packet(50_000, 7)])
    headers, bodies = scatter(out)
    bad = bytearray(headers)
    bad[20 * 3 + 9] ^= 1
    view_b = memoryview(bodies)
    assert (
        p.b.decrypt_native_scattered(
            memoryview(bad), view_b, len(out), out.lengths[-1], p.a_addr, p.now, got
        )
        is None
    )
    assert (
        p.b.decrypt_native_scattered(
            memoryview(headers), view_b, len(out) - 1, out.lengths[-1], p.a_addr, p.now, got
        )
        is None
    )


def test_gathered_seal_puts_the_same_bytes_on_the_wire() -> None:
    from tunflow.datagram import UDP_MAX_GSO_BYTES, UDP_MAX_SEGMENTS
    from tunflow.wireguard.protocol.native import SendSlots, seal_native, seal_native_gathered

    p = native_pair()
    s = p.peer_of_a.current
    slots = SendSlots(count=3)
    addr = p.b_addr
    for size in (60, 30_000, 65_535):  # one fragment; one send; two sends (46 fragments)
        packet = bytes(10) + super_packet(size, size)
        counter = s.native_send_counter
        plain = DatagramBatch(1 << 17)
        assert seal_native(s, packet, plain, addr, 1452, bytearray(70_000))
        s.native_send_counter = counter  # same counter, same nonce: the same bytes expected
        gathered = DatagramBatch(1024, gather=True)
        count = seal_native_gathered(s, packet, gathered, addr, 1452, slots)
        assert count == len(plain) and s.native_send_counter == counter + 1
        if count == 1:
            # one fragment goes into the arena, where runs of small messages share a send
            assert not gathered.gathered and gathered.to_pairs() == plain.to_pairs()
            continue
        assert len(gathered) == 0 and gathered.end == 0  # nothing copied into the arena
        wire = []
        for address, parts, length, seg in gathered.gathered:
            assert address == addr and seg == 1452
            data = b"".join(parts)
            assert len(data) == length <= UDP_MAX_GSO_BYTES
            assert -(-length // seg) <= UDP_MAX_SEGMENTS
            wire += [data[k : k + seg] for k in range(0, length, seg)]
        assert wire == [d for d, _ in plain.to_pairs()]
        assert gathered.gathered_bytes == plain.end
        # and the peer opens it
        rx = DatagramBatch(1 << 17)
        for d in wire:
            rx.append(d, address=p.a_addr)
        got = PacketBatch(1 << 17)
        p.b.decrypt_batch(rx, p.now, got)
        assert got.to_list() == [packet[10:]]


def test_gathered_seal_stops_when_the_slots_are_taken() -> None:
    from tunflow.wireguard.protocol.native import SendSlots, seal_native_gathered

    p = native_pair()
    s = p.peer_of_a.current
    slots = SendSlots(count=2)
    out = DatagramBatch(1024, gather=True)
    packet = bytes(10) + super_packet(3000)
    assert seal_native_gathered(s, packet, out, p.b_addr, 1452, slots) == 3
    assert seal_native_gathered(s, packet, out, p.b_addr, 1452, slots) == 3
    counter = s.native_send_counter
    assert seal_native_gathered(s, packet, out, p.b_addr, 1452, slots) == 0
    assert s.native_send_counter == counter and len(out.gathered) == 2
    out.clear()  # sent: the slots are free again
    assert seal_native_gathered(s, packet, out, p.b_addr, 1452, slots) == 3
    with pytest.raises(ValueError, match="gather=True"):
        seal_native_gathered(s, packet, DatagramBatch(1024), p.b_addr, 1452, slots)
    with pytest.raises(ValueError):
        SendSlots(count=0)


def test_encrypt_batch_gathers_native_messages_when_the_batch_allows() -> None:
    p = native_pair()
    packets = [super_packet(40_000, k) for k in range(20)]  # more than the 16 slots
    batch = batch_of(packets)
    batch.zero_headers()
    out = DatagramBatch(1 << 16, gather=True)
    before = p.peer_of_a.tx_bytes
    assert p.a.encrypt_batch(batch, p.now, out) == 16  # a full round; the caller sends the rest
    assert len(out) == 0 and len(out.gathered) == 16
    assert p.peer_of_a.tx_bytes - before == out.gathered_bytes
    rx = DatagramBatch(4 << 20)
    for _, parts, _, _ in out.gathered:
        data = b"".join(parts)
        rx.buffer[rx.end : rx.end + len(data)] = data
        rx.add_segments(rx.end, len(data), 1452, p.a_addr)
    got = PacketBatch(4 << 20)
    p.b.decrypt_batch(rx, p.now, got)
    assert got.to_list() == packets[:16]
    # small messages take no slot: they go into the arena however many there are
    small = batch_of([ip4(A_IP, B_IP, b"ack %d" % k, proto=6) for k in range(40)])
    small.zero_headers()
    smalls = DatagramBatch(1 << 16, gather=True)
    assert p.a.encrypt_batch(small, p.now, smalls) == 40
    assert len(smalls) == 40 and not smalls.gathered


def test_gathered_and_arena_messages_leave_in_order() -> None:
    # a big message (gathered) then a small one (arena) to the same peer: the small one must
    # not overtake it — the inner TCP would see reordering
    p = native_pair()
    packets = [super_packet(30_000, 7), ip4(A_IP, B_IP, b"tail", proto=6), super_packet(5000, 8)]
    batch = batch_of(packets)
    batch.zero_headers()
    out = DatagramBatch(1 << 16, gather=True)
    assert p.a.encrypt_batch(batch, p.now, out) == 3
    groups = out.send_groups()
    kinds = ["arena" if isinstance(where, int) else "gathered" for _, where, _, _ in groups]
    assert kinds == ["gathered", "arena", "gathered"]
    rx = DatagramBatch(4 << 20)
    for _, where, length, seg in groups:
        data = (
            bytes(out.view[where : where + length]) if isinstance(where, int) else b"".join(where)
        )
        for k in range(0, length, seg):
            rx.append(data[k : k + seg], address=p.a_addr)
    got = PacketBatch(4 << 20)
    p.b.decrypt_batch(rx, p.now, got)
    assert got.to_list() == packets
    with pytest.raises(ValueError, match="gathered"):
        out.keep([0])


def test_a_message_of_two_sends_takes_one_slot() -> None:
    p = native_pair()
    packets = [super_packet(65_000, k) for k in range(16)]  # 46 fragments: two sends each
    batch = batch_of(packets)
    batch.zero_headers()
    out = DatagramBatch(1 << 16, gather=True)
    assert p.a.encrypt_batch(batch, p.now, out) == 16
    assert len(out.gathered) == 32


def test_two_gathering_batches_do_not_share_slots() -> None:
    p = native_pair()
    first, second = (DatagramBatch(1 << 16, gather=True) for _ in range(2))
    for out, seed in ((first, 1), (second, 2)):
        batch = batch_of([super_packet(20_000, seed)])
        batch.zero_headers()
        assert p.a.encrypt_batch(batch, p.now, out) == 1
    assert first.gather_slots is not second.gather_slots
    # the first batch's bytes are intact although the second was sealed before it was sent
    rx = DatagramBatch(1 << 17)
    for _, parts, length, seg in first.gathered:
        data = b"".join(parts)
        for k in range(0, length, seg):
            rx.append(data[k : k + seg], address=p.a_addr)
    got = PacketBatch(1 << 17)
    p.b.decrypt_batch(rx, p.now, got)
    assert got.to_list() == [super_packet(20_000, 1)]


# -- one-fragment messages (TCP ACKs, small packets): opened inline by decrypt_batch ----------


def small(i: int, src: str = A_IP) -> bytes:
    return ip4(src, B_IP, bytes([i % 251]) * (20 + i % 13), proto=6)


def scattered_read(p: Pair, d: bytes) -> list[bytes]:
    """What the runtime does with a read of one datagram ``d`` in scatter mode: header and
    body in separate buffers (the body's larger than needed), decrypt_batch when refused."""
    if len(d) > NATIVE_HEADER_SIZE:
        headers = memoryview(bytearray(d[:NATIVE_HEADER_SIZE]))
        bodies = memoryview(bytearray(d[NATIVE_HEADER_SIZE:]) + bytes(1500))
        out = PacketBatch(capacity=1 << 16, max_packets=4)
        done = p.b.decrypt_native_scattered(headers, bodies, 1, len(d), p.a_addr, p.now, out)
        if done is not None:
            assert done
            return [bytes(out.with_header(j)) for j in range(len(out))]
    return p.deliver("b", [d])


@pytest.mark.parametrize("via", ["batch", "scattered"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_one_fragment_messages_open_as_open_native_opens_them(
    via: str, data: st.DataObject
) -> None:
    # decrypt_batch and decrypt_native_scattered open one-fragment native messages in one
    # call; _receive_native (open_native and its bookkeeping, one datagram at a time) is the
    # reference. Both pairs are the same (deterministic keys and indices), so they seal the
    # same messages.
    fast, ref = native_pair(), native_pair()
    n = data.draw(st.integers(1, 150), label="messages")
    packets = [
        small(i, data.draw(st.sampled_from([A_IP, A_IP, A_IP, "10.0.0.77"]))) for i in range(n)
    ]
    messages = [d for d, _ in sealed(fast, packets).to_pairs()]
    assert messages == [d for d, _ in sealed(ref, packets).to_pairs()]
    assert all(m[:4] == bytes([0x7F, 0, 1, 1]) for m in messages)  # one fragment each
    deliveries = []
    for k in data.draw(st.lists(st.integers(0, n - 1), max_size=3 * n), label="order"):
        d = bytearray(messages[k])
        kind = data.draw(st.sampled_from(["ok"] * 6 + ["tag", "reserved", "counter", "cut"]))
        if kind == "tag":
            d[-1] ^= 1
        elif kind == "reserved":
            d[18] = 1
        elif kind == "counter":
            d[8] ^= data.draw(st.sampled_from([1, 0x40, 0x80]))
        elif kind == "cut":
            del d[data.draw(st.integers(0, len(d) - 1)) :]
        deliveries.append(bytes(d))

    got_fast: list[bytes] = []
    i = 0
    while i < len(deliveries):
        if via == "scattered":
            got_fast += scattered_read(fast, deliveries[i])
            i += 1
            continue
        k = data.draw(st.integers(1, 40), label="batch")
        got_fast += fast.deliver("b", deliveries[i : i + k])
        i += k
    got_ref: list[bytes] = []
    for d in deliveries:
        out = PacketBatch(capacity=1 << 16, max_packets=4)
        if len(d) < 21:
            # no more than a header: refused before the native code looks at it (which checks
            # the counter first); anything longer may be a native message's last fragment
            ref.b._counters.dropped_malformed += 1
            continue
        assert ref.b._receive_native(memoryview(d), ref.a_addr, ref.now, out)
        got_ref += [bytes(out.with_header(j)) for j in range(len(out))]
    assert got_fast == got_ref
    assert fast.b.statistics() == ref.b.statistics()


def test_one_fragment_messages_stop_when_the_batch_is_full() -> None:
    p = native_pair()
    rx = DatagramBatch(1 << 16)
    for d, _ in sealed(p, [small(i) for i in range(5)]).to_pairs():
        rx.append(d, address=p.a_addr)
    out = PacketBatch(capacity=1 << 16, max_packets=3)
    assert p.b.decrypt_batch(rx, p.now, out) == 3
    assert out.vnet_hdr and out.to_list() == [small(i) for i in range(3)]
    rx.keep(range(3, 5))
    out.clear()
    assert p.b.decrypt_batch(rx, p.now, out) == 2
    assert out.to_list() == [small(3), small(4)]
    assert p.b.statistics().rx_packets == 5 + 1  # and the handshake's keepalive


@pytest.mark.parametrize("gather", [False, True])
def test_one_fragment_messages_are_sealed_as_seal_native_seals_them(gather: bool) -> None:
    # encrypt_batch seals one-fragment messages itself; seal_native is the reference. The
    # largest packet that fits one fragment and the smallest that does not are among them.
    fast, ref = native_pair(), native_pair()
    frag = fast.a.native_fragment_size
    largest = frag - NATIVE_HEADER_SIZE - HEADROOM - TAG_SIZE
    sizes = [20, 52, 400, largest, largest + 1, 60, 3000, 40]
    packets = [ip4(A_IP, B_IP, bytes([k]) * (n - 20), proto=6) for k, n in enumerate(sizes)]
    assert [len(p) for p in packets] == sizes
    batch = batch_of(packets)
    batch.zero_headers()
    out = DatagramBatch(1 << 20, gather=gather)
    assert fast.a.encrypt_batch(batch, fast.now, out) == len(packets)
    session = ref.peer_of_a.current
    expected = DatagramBatch(1 << 20)
    scratch = bytearray(1 << 17)
    for p in packets:
        assert seal_native(session, bytes(HEADROOM) + p, expected, ref.b_addr, frag, scratch)
    # what the transport sends, in order (arena datagrams and gathered groups alike)
    wire = b"".join(
        bytes(out.view[g[1] : g[1] + g[2]]) if isinstance(g[1], int) else b"".join(g[1])
        for g in out.send_groups()
    )
    assert wire == bytes(expected.view[: expected.end])
    assert fast.peer_of_a.current.native_send_counter == session.native_send_counter
    assert fast.deliver("b", [d for d, _ in expected.to_pairs()]) == [
        bytes(HEADROOM) + p for p in packets
    ]


@pytest.mark.parametrize("via", ["batch", "scattered"])
def test_one_fragment_replay_window_across_a_wrap_of_its_ring(via: str) -> None:
    # The inline window update takes a shortcut for a counter in the same 64-bit word as the
    # last one; a jump into a word the ring used a full turn earlier must clear it, or an
    # older message still inside the window is refused as a replay.
    fast, ref = native_pair(), native_pair()
    order = list(range(100))  # counters 1…100 (the handshake's keepalive was 0)
    messages: list[bytes] = []
    for p in (fast, ref):
        sealed_now = [d for d, _ in sealed(p, [small(i) for i in range(100)]).to_pairs()]
        p.peer_of_a.current.native_send_counter = 8192 + 5  # the ring's word 0 again
        sealed_now += [d for d, _ in sealed(p, [small(i) for i in range(40)]).to_pairs()]
        messages = sealed_now
    order += [100 + k for k in range(20, 40)]  # 8217…8236 in order
    order += [100 + k for k in range(20)]  # then 8197…8216: older, inside the window
    order += [100 + 3, 5]  # true replays
    got_fast: list[bytes] = []
    got_ref: list[bytes] = []
    for k in order:
        d = messages[k]
        got_fast += scattered_read(fast, d) if via == "scattered" else fast.deliver("b", [d])
        out = PacketBatch(capacity=1 << 16, max_packets=4)
        assert ref.b._receive_native(memoryview(d), ref.a_addr, ref.now, out)
        got_ref += [bytes(out.with_header(j)) for j in range(len(out))]
    assert len(got_ref) == len(order) - 2  # the reference takes all but the two replays
    assert got_fast == got_ref
    assert fast.b.statistics() == ref.b.statistics()


@pytest.mark.parametrize("via", ["batch", "scattered"])
def test_a_forged_fragment_does_not_block_a_one_fragment_message(via: str) -> None:
    # A stored fragment of a "two-fragment message" under the next counter (anybody can send
    # one: fragments are authenticated only once the message is whole) must not make the
    # genuine one-fragment message with that counter malformed.
    p = native_pair()
    ((genuine, _),) = sealed(p, [small(7)]).to_pairs()
    forged = bytearray(genuine[:NATIVE_HEADER_SIZE]) + bytes(1432)
    forged[1], forged[2] = 0, 2  # index 0 of 2
    forged[16:18] = (1432).to_bytes(2, "little")
    assert p.deliver("b", [bytes(forged)]) == []
    assert p.peer_of_b.current.native_partial  # stored, waiting for its second fragment
    got = scattered_read(p, genuine) if via == "scattered" else p.deliver("b", [genuine])
    assert got == [bytes(HEADROOM) + small(7)]
    assert p.b.statistics().dropped_malformed == 0


@pytest.mark.parametrize("tail", [1, 5, 11, 12])
def test_a_last_fragment_shorter_than_a_transport_message_is_reassembled(tail: int) -> None:
    # the last fragment holds ``tail`` bytes of the sealed message: a datagram of 21…31 bytes
    # for tail ≤ 11, shorter than any WireGuard message but a valid native fragment
    p = native_pair()
    big = super_packet(2 * 1432 + tail - HEADROOM - TAG_SIZE)
    pairs = sealed(p, [big]).to_pairs()
    assert len(pairs[-1][0]) == NATIVE_HEADER_SIZE + tail
    got = PacketBatch(1 << 20)
    for d, _ in reversed(pairs):  # one datagram a batch, the last first: reassembled
        rx = DatagramBatch(1 << 16)
        rx.append(d, address=p.a_addr)
        assert p.b.decrypt_batch(rx, p.now, got) == 1
    assert got.to_list() == [big]
    assert p.b.statistics().dropped == 0


def test_receive_datagram_delivers_a_message_of_many_fragments() -> None:
    # the slow path: one fragment a call, the last one completes the super-packet
    p = native_pair()
    big = super_packet(5000, 4)
    got: list[bytes] = []
    for d, _ in sealed(p, [big]).to_pairs():
        got += p.b.receive_datagram(d, p.a_addr, p.now)
    assert got == [bytes(HEADROOM) + big]
    assert not p.peer_of_b.current.native_partial


def test_send_packet_sends_a_staged_native_message_once() -> None:
    # a packet staged while the peer had no endpoint goes out before the next one — once (the
    # staged message was sealed into the batch send_packet collects its own datagrams in)
    p = native_pair()
    staged, fresh = super_packet(3000, 5), super_packet(100, 6)
    p.a.set_endpoint(p.kb.public_key(), None)
    p.a.send_packet(staged, p.now)
    assert len(p.peer_of_a.staged) == 1
    p.a.set_endpoint(p.kb.public_key(), p.b_addr)
    p.a.send_packet(fresh, p.now)
    datagrams = [d for d, _ in p.a.datagrams_to_send()]
    assert len(datagrams) == 3 + 1  # the staged message's three fragments, the fresh one's
    got = p.deliver("b", datagrams)
    assert [g[HEADROOM:] for g in got] == [staged, fresh]
    assert p.b.statistics().dropped == 0


def test_a_replayed_first_fragment_does_not_take_the_next_message_with_it() -> None:
    # a replayed fragment 0 right before another message's fragments, at the same stride (one
    # UDP_GRO read: the kernel coalesces a spoofed or duplicated datagram with the flow's): it
    # alone is the replay; the message after it opens
    p = native_pair()
    first, second = super_packet(2000, 7), super_packet(2000, 8)
    old = [d for d, _ in sealed(p, [first]).to_pairs()]
    new = [d for d, _ in sealed(p, [second]).to_pairs()]
    assert len(old) == len(new) == 2 and len(old[0]) == len(new[0])
    assert p.deliver("b", old) == [bytes(HEADROOM) + first]
    assert p.deliver("b", [old[0], *new]) == [bytes(HEADROOM) + second]
    stats = p.b.statistics()
    assert stats.dropped_replay == 1 and stats.dropped == 1


def test_a_message_completed_into_a_full_batch_opens_on_the_retry() -> None:
    # the fragment that completes a stored message finds ``out`` full: it is not consumed, and
    # the caller's retry with the rest of the batch (a fresh ``out``) delivers the message
    p = native_pair()
    big, small = super_packet(2000, 9), ip4(A_IP, B_IP, b"ping")
    frags = [d for d, _ in sealed(p, [big]).to_pairs()]
    ping = [d for d, _ in sealed(p, [small]).to_pairs()]
    rx = DatagramBatch(1 << 16)
    for d in (frags[0], *ping, frags[1]):
        rx.append(d, address=p.a_addr)
    got: list[bytes] = []
    while len(rx):
        out = PacketBatch(1 << 17, max_packets=1)
        done = p.b.decrypt_batch(rx, p.now, out)
        assert done > 0
        got += [bytes(out.with_header(i)) for i in range(len(out))]
        rx.keep(range(done, len(rx)))
    assert got == [bytes(HEADROOM) + small, bytes(HEADROOM) + big]
    assert not p.peer_of_b.current.native_partial


def test_a_run_with_fragments_out_of_order_is_reassembled_by_index() -> None:
    """Every fragment's index is checked against its place in the run: two full fragments
    swapped in one read are not copied in read order (the AEAD would refuse the message)
    but left to reassembly, which puts each chunk where its index says."""
    p = native_pair()
    big = super_packet(20_000, 6)
    out = sealed(p, [big])
    frags = [d for d, _ in out.to_pairs()]
    assert len(frags) > 3
    frags[1], frags[2] = frags[2], frags[1]
    session = p.peer_of_b.current
    got = PacketBatch(1 << 20)
    swapped = memoryview(b"".join(frags))
    stride = len(frags[0])
    scratch = bytearray(70_000)
    assert (
        open_native_run(session, swapped, 0, len(frags), stride, len(frags[-1]), got, scratch)
        is None
    )
    rx = DatagramBatch(4 << 20)
    rx.buffer[: len(swapped)] = swapped
    rx.add_segments(0, len(swapped), stride, p.a_addr)
    assert p.b.decrypt_batch(rx, p.now, got) == len(rx)
    assert got.to_list() == [big]
    assert p.b.statistics().dropped_bad_aead == 0
