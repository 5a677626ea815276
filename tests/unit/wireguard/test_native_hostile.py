"""Native fast mode against hostile or broken fragments: an oversized message, fragments of
many messages at once, a tampered later fragment, a forged message — each dropped and counted,
and the receiver left as it was (found by a fuzzing review in the fourteenth session)."""

from __future__ import annotations

import struct

import pytest
from wgpair import A_IP, B_IP, Pair, ip4

from tunflow.packet import HEADROOM, PacketBatch
from tunflow.wireguard.protocol import DatagramBatch, native as N
from tunflow.wireguard.protocol.constants import TAG_SIZE
from tunflow.wireguard.protocol.replay import WINDOW_SIZE
from tunflow.wireguard.protocol.session import Session

CHUNK = 1432


def native_pair() -> Pair:
    p = Pair(a_peer={"native_mode": True}, b_peer={"native_mode": True})
    p.handshake()
    return p


def sealed_fragments(
    session: Session, plaintext: bytes, *, version: int = N.NATIVE_VERSION
) -> list[bytes]:
    """``plaintext`` (virtio-net header + packet) sealed by ``session`` and cut as the wire
    format says — without the sender's size check, as a peer holding the key could."""
    counter = session.native_send_counter
    session.native_send_counter += 1
    sealed_len = len(plaintext) + TAG_SIZE
    count = -(-sealed_len // CHUNK)
    header = N.NATIVE_HEADER.pack(0x7F, 0, count, version, session.remote_index, counter, CHUNK, 0)
    nonce = bytearray(12)
    struct.pack_into("<Q", nonce, 4, counter)
    body = bytearray(sealed_len)
    session.native_seal(nonce, plaintext, header, memoryview(body))
    out = []
    for k in range(count):
        h = bytearray(header)
        h[1] = k
        out.append(bytes(h) + bytes(body[k * CHUNK : (k + 1) * CHUNK]))
    return out


def deliver(p: Pair, fragments: list[bytes], capacity: int = 4 << 20) -> tuple[int, PacketBatch]:
    rx = DatagramBatch(8 << 20)
    for f in fragments:
        rx.append(f, address=p.a_addr)
    out = PacketBatch(capacity=capacity, max_packets=1024)
    return p.b.decrypt_batch(rx, p.now, out), out


def plaintext_of(n: int, fill: bytes = b"z") -> bytes:
    return bytes(HEADROOM) + ip4(A_IP, B_IP, fill * (n - 20), proto=6)


def test_an_oversized_message_is_malformed_not_delivered_nor_stuck() -> None:
    """A message longer than the largest super-packet — even one that authenticates — is
    dropped as malformed, before any room is asked for: it neither comes out (a packet over
    64 KiB) nor makes ``decrypt_batch`` report a full batch forever."""
    p = native_pair()
    fragments = sealed_fragments(p.peer_of_a.current, plaintext_of(65535) + b"q" * 300)
    assert len(fragments) == 46
    before = p.b.statistics().dropped_malformed
    for _ in range(3):  # a batch sized for the largest legal message, empty each time
        consumed, out = deliver(p, fragments, capacity=N.MAX_SEALED_SIZE + HEADROOM)
        assert consumed == len(fragments) and len(out) == 0
    assert p.b.statistics().dropped_malformed > before
    # the largest legal one still opens
    good = plaintext_of(65535)
    consumed, out = deliver(p, sealed_fragments(p.peer_of_a.current, good))
    assert out.to_list() == [good[HEADROOM:]]


def test_messages_pushed_out_before_completing_are_counted() -> None:
    """More messages in progress at once than a session keeps: the oldest are pushed out,
    their fragments not all in — each counted as ``dropped_incomplete``, none silently."""
    p = native_pair()
    session = p.peer_of_a.current
    n = N.MAX_PARTIAL_MESSAGES + 4
    messages = [sealed_fragments(session, plaintext_of(5000, bytes([i]))) for i in range(n)]
    firsts = [m[0] for m in messages]
    rests = [f for m in messages for f in m[1:]]
    consumed, out = deliver(p, firsts + rests)
    assert consumed == len(firsts) + len(rests)
    # every message lost is counted (a message's later fragments start it again, and it may
    # be pushed out again: each push counts)
    lost = n - len(out)
    assert lost >= n - N.MAX_PARTIAL_MESSAGES
    assert p.b.statistics().dropped_incomplete >= lost
    assert len(p.peer_of_b.current.native_partial) <= N.MAX_PARTIAL_MESSAGES


def test_a_tampered_later_fragment_is_refused_whatever_the_order() -> None:
    """Every fragment's header is checked (type, version, reserved), not only the first to
    arrive: a message with one tampered fragment is not delivered in either order."""
    for reverse in (False, True):
        p = native_pair()
        fragments = sealed_fragments(p.peer_of_a.current, plaintext_of(8000))
        bad = bytearray(fragments[3])
        bad[3] = 0  # version 0
        fragments[3] = bytes(bad)
        consumed, out = deliver(p, fragments[::-1] if reverse else fragments)
        assert consumed == len(fragments) and len(out) == 0
        assert p.b.statistics().dropped_malformed >= 1


def test_a_forged_message_leaves_the_batch_as_it_was() -> None:
    """A message that does not authenticate does not switch the output batch to
    ``vnet_hdr`` (only a message that opens does)."""
    p = native_pair()
    out = PacketBatch(1 << 20)
    session = p.peer_of_b.current
    forged = sealed_fragments(p.peer_of_a.current, plaintext_of(5000))
    forged[1] = forged[1][:-1] + bytes([forged[1][-1] ^ 1])
    for f in forged:
        N.open_native(session, f, out)
    assert not out.vnet_hdr and len(out) == 0


def forged_ahead(p: Pair, *, same_shape: bool) -> bytes:
    """One fragment for the counter of a's next message, before a sends it: what anyone who
    sees the receiver index and the (sequential) counters on the wire can send, with no key
    and no race."""
    s = p.peer_of_a.current
    counter, index = s.native_send_counter, s.remote_index
    if same_shape:  # the last of four fragments, as the genuine message will have, garbage
        return N.NATIVE_HEADER.pack(0x7F, 3, 4, N.NATIVE_VERSION, index, counter, CHUNK, 0) + b"\0"
    return N.NATIVE_HEADER.pack(0x7F, 1, 2, N.NATIVE_VERSION, index, counter, 1000, 0) + b"\0"


@pytest.mark.parametrize("same_shape", [False, True], ids=["other-shape", "same-shape"])
@pytest.mark.parametrize("one_by_one", [False, True], ids=["one-read", "one-by-one"])
def test_a_fragment_forged_ahead_does_not_lose_the_genuine_message(
    same_shape: bool, one_by_one: bool
) -> None:
    """The first fragment to arrive set the message's shape and bytes: the genuine fragments
    were then refused as malformed or duplicates, even as one whole read (which gave up when a
    fragment of its counter was stored) — one 21-byte datagram stalled a native tunnel. Now the
    newest copy counts, a whole read opens regardless, and a message whose AEAD failed is kept
    for its genuine copy."""
    p = native_pair()
    p.b.receive_datagram(forged_ahead(p, same_shape=same_shape), ("203.0.113.66", 9), p.now)
    packet = ip4(A_IP, B_IP, b"Q" * 5000)
    fragments = p.send("a", [packet])
    assert len(fragments) == 4
    if one_by_one:
        got = [q for f in fragments for q in p.b.receive_datagram(f, p.a_addr, p.now)]
    else:
        _, out = deliver(p, fragments)
        got = [bytes(q) for q in out]
    assert [g[-len(packet) :] for g in got] == [packet]
    assert not p.peer_of_b.current.native_partial  # nothing left of the forged one


def test_a_forged_copy_of_a_fragment_before_the_genuine_one_is_mended() -> None:
    """A truncated copy of the last fragment arrives before it: the message fails its AEAD
    once (counted), then opens with the genuine copy — one by one and as one read alike."""
    for one_by_one in (False, True):
        p = native_pair()
        packet = ip4(A_IP, B_IP, b"R" * 5000)
        fragments = p.send("a", [packet])
        stream = [*fragments[:3], fragments[3][:-40], fragments[3]]
        if one_by_one:
            got = [q for f in stream for q in p.b.receive_datagram(f, p.a_addr, p.now)]
        else:
            _, out = deliver(p, stream)
            got = [bytes(q) for q in out]
        assert [g[-len(packet) :] for g in got] == [packet], one_by_one
        assert p.b.statistics().dropped_bad_aead == 1


@pytest.mark.parametrize("via", ["run", "scattered"])
def test_a_message_pushed_out_by_a_whole_one_that_fails_is_counted_at_once(via: str) -> None:
    """A whole message (one read) that does not open is kept for another try, and pushes the
    oldest incomplete one out when a session keeps the most: that one is counted as
    ``dropped_incomplete`` then — it was counted only when a later fragment came in alone."""
    p = native_pair()
    session = p.peer_of_a.current
    for i in range(N.MAX_PARTIAL_MESSAGES):
        deliver(p, sealed_fragments(session, plaintext_of(5000, bytes([i])))[:1])
    assert len(p.peer_of_b.current.native_partial) == N.MAX_PARTIAL_MESSAGES
    fragments = sealed_fragments(session, plaintext_of(5000, b"w"))
    bad = bytearray(fragments[1])
    bad[-1] ^= 1
    fragments[1] = bytes(bad)
    before = p.b.statistics()
    if via == "run":
        rx = DatagramBatch(1 << 16)
        rx.buffer[: sum(map(len, fragments))] = b"".join(fragments)
        rx.add_segments(0, sum(map(len, fragments)), len(fragments[0]), p.a_addr)
        p.b.decrypt_batch(rx, p.now, PacketBatch(capacity=1 << 18, max_packets=64))
    else:
        headers = b"".join(f[: N.NATIVE_HEADER_SIZE] for f in fragments)
        bodies = b"".join(f[N.NATIVE_HEADER_SIZE :] for f in fragments)
        assert p.b.decrypt_native_scattered(
            memoryview(headers),
            memoryview(bodies),
            len(fragments),
            len(fragments[-1]),
            p.a_addr,
            p.now,
            PacketBatch(capacity=1 << 18, max_packets=64),
        )
    after = p.b.statistics()
    assert after.dropped_bad_aead == before.dropped_bad_aead + 1
    assert after.dropped_incomplete == before.dropped_incomplete + 1
    assert p.peer_of_b.current.native_evicted == 0


def test_a_message_that_keeps_failing_is_given_up_after_its_retries() -> None:
    """A stored message whose AEAD failed is tried again with each new copy of a fragment
    (the genuine copy of a forged one may still come) — but only ``_MAX_RETRIES`` times:
    each try is an AEAD over the whole message, which a forged copy of any fragment asks
    for. After that the message is forgotten; a later fragment starts it anew."""
    p = native_pair()
    fragments = sealed_fragments(p.peer_of_a.current, plaintext_of(5000))
    assert len(fragments) == 4
    forged = bytearray(fragments[0])
    forged[-1] ^= 1
    session = p.peer_of_b.current
    counter = session.native_replay.highest + 1
    out = PacketBatch(1 << 20)
    results = [N.open_native(session, f, out) for f in [bytes(forged), *fragments[1:]]]
    assert results == [0, 0, 0, N.OpenResult.BAD_AEAD]
    for _ in range(N._MAX_RETRIES):
        assert counter in session.native_partial
        assert N.open_native(session, bytes(forged), out) == N.OpenResult.INCOMPLETE
    assert counter not in session.native_partial
    # the genuine copy now finds nothing stored: it is the first fragment of a new message
    assert N.open_native(session, fragments[0], out) == N.OpenResult.INCOMPLETE
    assert session.native_partial[counter].missing == 3
    assert len(out) == 0


def test_a_message_completed_after_the_window_moved_past_it_is_a_replay() -> None:
    """The replay window is checked again after the AEAD: a message whose first fragment
    was stored while its counter was in the window, and whose last one arrives after newer
    messages moved the window past it, is refused — not delivered from behind the window."""
    p = native_pair()
    sender = p.peer_of_a.current
    late = sealed_fragments(sender, plaintext_of(5000, b"l"))
    assert deliver(p, late[:1])[1].to_list() == []
    sender.native_send_counter += WINDOW_SIZE + 1
    newer = plaintext_of(100, b"n")
    assert deliver(p, sealed_fragments(sender, newer))[1].to_list() == [newer[HEADROOM:]]
    before = p.b.statistics().dropped_replay
    consumed, out = deliver(p, late[1:])
    assert consumed == len(late) - 1 and len(out) == 0
    assert p.b.statistics().dropped_replay == before + 1
