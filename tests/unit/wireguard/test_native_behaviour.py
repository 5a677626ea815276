"""Native fast mode, checked against what the wire format and the module docstring promise:
the fragment rules (a header-only datagram, an index past the count), the partial-message
store, the replay checks before and after the AEAD — the cases a hand mutation review found
the rest of the suite let through."""

from __future__ import annotations

import struct

import pytest
from test_native_hostile import CHUNK, deliver, native_pair, plaintext_of, sealed_fragments
from test_native_run import as_gro_read, scatter, scattered_read, sealed, small, super_packet
from wgpair import A_IP, B_IP, Pair, ip4

from tunflow.packet import HEADROOM, PacketBatch
from tunflow.wireguard.protocol import DatagramBatch, PeerConfig, native as N
from tunflow.wireguard.protocol.constants import REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME, TAG_SIZE
from tunflow.wireguard.protocol.session import Session


def sealed_with_chunk(session: Session, plaintext: bytes, chunk: int) -> list[bytes]:
    """``plaintext`` sealed by ``session`` and cut into chunks of ``chunk`` bytes, whatever
    the sender's own checks allow — as a peer holding the key could send it."""
    counter = session.native_send_counter
    session.native_send_counter += 1
    sealed_len = len(plaintext) + TAG_SIZE
    count = -(-sealed_len // chunk)
    first = N.NATIVE_HEADER.pack(
        0x7F, 0, count, N.NATIVE_VERSION, session.remote_index, counter, chunk, 0
    )
    nonce = bytearray(12)
    struct.pack_into("<Q", nonce, 4, counter)
    body = bytearray(sealed_len)
    session.native_seal(nonce, plaintext, first, memoryview(body))
    return [
        first[:1] + bytes([k]) + first[2:] + body[k * chunk : (k + 1) * chunk] for k in range(count)
    ]


def count_opens(session: Session) -> list[int]:
    """Count the session's AEAD opens of native messages from now on (in the list's item)."""
    opens = [0]
    real_open = session.native_open

    def counting_open(*args: object) -> None:
        opens[0] += 1
        real_open(*args)

    session.native_open = counting_open  # type: ignore[method-assign]
    return opens


def test_a_header_without_bytes_is_malformed_and_stores_nothing() -> None:
    """Every fragment carries at least one byte of its message (``count`` is the sealed
    length over the chunk, rounded up): a bare 20-byte header — even as the last fragment
    of a larger message — is malformed, and takes no place in the partial-message store."""
    p = native_pair()
    session = p.peer_of_b.current
    counter = p.peer_of_a.current.native_send_counter
    bare = N.NATIVE_HEADER.pack(
        0x7F, 1, 2, N.NATIVE_VERSION, session.local_index, counter, CHUNK, 0
    )
    assert len(bare) == N.NATIVE_HEADER_SIZE
    out = PacketBatch(1 << 20)
    assert N.open_native(session, bare, out) == N.OpenResult.MALFORMED
    assert not session.native_partial


@pytest.mark.parametrize("one_by_one", [False, True], ids=["batch", "open_native"])
def test_a_fragment_indexed_past_its_count_is_malformed(one_by_one: bool) -> None:
    """Indices run 0 … N-1: a full-sized fragment with index N is malformed — not stored as
    a part of the message, where it would stand in for a missing fragment and make the
    genuine message fail its AEAD once."""
    p = native_pair()
    fragments = sealed_fragments(p.peer_of_a.current, plaintext_of(2000))
    assert len(fragments) == 2
    past = bytearray(fragments[0])
    past[1] = 2  # index 2 of 2
    session = p.peer_of_b.current
    if one_by_one:
        out = PacketBatch(1 << 20)
        assert N.open_native(session, bytes(past), out) == N.OpenResult.MALFORMED
        assert not session.native_partial
        results = [N.open_native(session, f, out) for f in fragments]
        assert results == [N.OpenResult.INCOMPLETE, N.OpenResult.COMPLETE]
    else:
        consumed, out = deliver(p, [bytes(past), fragments[1], fragments[0]])
        assert consumed == 3
        stats = p.b.statistics()
        assert stats.dropped_malformed == 1 and stats.dropped_bad_aead == 0
    assert out.to_list() == [plaintext_of(2000)[HEADROOM:]]


@pytest.mark.parametrize(
    ("index", "change"),
    [(0, -1), (0, +1), (1, +1)],
    ids=["short-middle", "long-middle", "long-last"],
)
def test_a_fragment_whose_length_disagrees_with_its_chunk_is_malformed(
    index: int, change: int
) -> None:
    """Every fragment but the last holds exactly C bytes, the last at most C: one a byte
    short or long is malformed when it arrives — not stored to fail the whole message's AEAD
    later — and the genuine message still opens."""
    p = native_pair()
    fragments = sealed_fragments(p.peer_of_a.current, plaintext_of(2000))
    assert len(fragments) == 2 and len(fragments[1]) < len(fragments[0])
    f = fragments[index]
    if index == 1:  # padded to C bytes: one more makes it too long
        f = f + bytes(N.NATIVE_HEADER_SIZE + CHUNK - len(f))
    bad = f[:-1] if change < 0 else f + b"\0"
    session = p.peer_of_b.current
    out = PacketBatch(1 << 20)
    assert N.open_native(session, bad, out) == N.OpenResult.MALFORMED
    assert not session.native_partial
    assert [N.open_native(session, g, out) for g in fragments] == [0, 1]
    assert out.to_list() == [plaintext_of(2000)[HEADROOM:]]


@pytest.mark.parametrize("which", [0, 1])
def test_a_fragment_with_reserved_bits_set_is_malformed(which: int) -> None:
    """The reserved field is 0 in every fragment: a message one of whose fragments has it
    set is not delivered (the field is not in the AEAD's associated data, which has it 0:
    only this check refuses it), in any order."""
    for reverse in (False, True):
        p = native_pair()
        fragments = sealed_fragments(p.peer_of_a.current, plaintext_of(2000))
        bad = bytearray(fragments[which])
        bad[18] = 1
        fragments[which] = bytes(bad)
        consumed, out = deliver(p, fragments[::-1] if reverse else fragments)
        assert consumed == 2 and len(out) == 0
        assert p.b.statistics().dropped_malformed == 1


@pytest.mark.parametrize("size", [100, 400], ids=["one-fragment", "two-fragments"])
def test_a_chunk_below_the_smallest_fragment_size_is_malformed(size: int) -> None:
    """A chunk too small to carry the largest message in 255 fragments is no tunflow peer's
    (``seal_native`` refuses a fragment size below :data:`MIN_FRAGMENT_SIZE`): such a message
    is malformed whichever receive path takes it, and nothing of it is stored."""
    chunk = N.MIN_FRAGMENT_SIZE - N.NATIVE_HEADER_SIZE - 1
    for one_by_one in (False, True):
        p = native_pair()
        fragments = sealed_with_chunk(p.peer_of_a.current, plaintext_of(size), chunk)
        assert len(fragments) == (1 if size == 100 else 2)
        if one_by_one:
            got = [q for f in fragments for q in p.b.receive_datagram(f, p.a_addr, p.now)]
        else:
            got = deliver(p, fragments)[1].to_list()
        assert got == []
        assert p.b.statistics().dropped_malformed == len(fragments)
        assert not p.peer_of_b.current.native_partial
        # the same message cut at the smallest legal chunk opens
        legal = sealed_with_chunk(p.peer_of_a.current, plaintext_of(size), chunk + 1)
        assert deliver(p, legal)[1].to_list() == [plaintext_of(size)[HEADROOM:]]


def test_a_forged_fragment_of_a_huge_shape_does_not_replace_a_stored_message() -> None:
    """A fragment that disagrees with the stored message's shape replaces it (the newest
    counts) only if its shape is one a message may have: a forged fragment claiming 255
    chunks of 64 KiB is malformed — it neither makes the receiver set 16 MiB aside nor costs
    the genuine message its stored fragment."""
    p = native_pair()
    fragments = sealed_fragments(p.peer_of_a.current, plaintext_of(2000))
    session = p.peer_of_b.current
    out = PacketBatch(1 << 20)
    assert N.open_native(session, fragments[0], out) == N.OpenResult.INCOMPLETE
    huge = bytearray(fragments[0][: N.NATIVE_HEADER_SIZE]) + bytes(0xFFFF)
    huge[1], huge[2] = 3, 255
    huge[16:18] = (0xFFFF).to_bytes(2, "little")
    assert N.open_native(session, bytes(huge), out) == N.OpenResult.MALFORMED
    (entry,) = session.native_partial.values()
    assert (entry.count, entry.chunk, len(entry.buffer)) == (2, CHUNK, 2 * CHUNK)
    assert N.open_native(session, fragments[1], out) == N.OpenResult.COMPLETE
    assert out.to_list() == [plaintext_of(2000)[HEADROOM:]]


def test_a_forged_copy_is_replaced_by_the_genuine_one_before_the_message_completes() -> None:
    """Copies of one fragment that disagree in bytes: the newest counts. A forged copy of
    fragment 1 followed by the genuine one, while fragment 0 is still missing: the message
    opens at its first try (no AEAD failure counted)."""
    p = native_pair()
    fragments = sealed_fragments(p.peer_of_a.current, plaintext_of(5000))
    assert len(fragments) == 4
    forged = fragments[1][:-1] + bytes([fragments[1][-1] ^ 1])
    stream = [forged, fragments[1], fragments[3], fragments[2], fragments[0]]
    got = [q for f in stream for q in p.b.receive_datagram(f, p.a_addr, p.now)]
    assert [g[HEADROOM:] for g in got] == [plaintext_of(5000)[HEADROOM:]]
    assert p.b.statistics().dropped_bad_aead == 0


@pytest.mark.parametrize("offset", [0, 1])
def test_a_fragment_at_or_past_the_counter_limit_is_refused_before_it_is_stored(
    offset: int,
) -> None:
    """Counters at or above ``REJECT_AFTER_MESSAGES`` are never accepted: the replay check
    before the AEAD refuses a first fragment with such a counter, which is not stored."""
    p = native_pair()
    session = p.peer_of_b.current
    counter = REJECT_AFTER_MESSAGES + offset
    first = N.NATIVE_HEADER.pack(
        0x7F, 0, 2, N.NATIVE_VERSION, session.local_index, counter, CHUNK, 0
    )
    out = PacketBatch(1 << 20)
    assert N.open_native(session, first + bytes(CHUNK), out) == N.OpenResult.REPLAY
    assert not session.native_partial


def test_a_message_shorter_than_a_virtio_net_header_is_malformed() -> None:
    """The plaintext is a 10-byte virtio-net header and a packet: a message that opens to
    fewer bytes — sealed by a peer holding the key — is malformed, and ``out`` is left as
    it was (no packet of negative length appended)."""
    p = native_pair()
    for size in (0, HEADROOM - 1):
        (fragment,) = sealed_with_chunk(p.peer_of_a.current, bytes(size), CHUNK)
        session = p.peer_of_b.current
        out = PacketBatch(1 << 16)
        assert N.open_native(session, fragment, out) == N.OpenResult.MALFORMED
        assert len(out) == 0 and out.end == 0
        consumed, got = deliver(p, [fragment])
        assert consumed == 1 and len(got) == 0
    assert p.b.statistics().dropped_malformed == 2
    assert p.b.statistics().dropped_bad_aead == 0


def test_a_read_ending_in_a_bare_header_is_left_to_reassembly() -> None:
    """A bare 20-byte header after a message's other fragments, in one read (its last
    fragment lost, a forged header in its place): that is not one whole message, so it is
    taken fragment by fragment — the header is malformed, no AEAD failure is counted, and
    the genuine last fragment then completes the message."""
    p = native_pair()
    big = super_packet(5000, 3)
    frags = [d for d, _ in sealed(p, [big]).to_pairs()]
    assert len(frags) == 4
    forged = frags[-1][: N.NATIVE_HEADER_SIZE]
    stride = len(frags[0])
    got = PacketBatch(1 << 20)
    rx = DatagramBatch(1 << 17)
    run = b"".join([*frags[:-1], forged])
    rx.buffer[: len(run)] = run
    rx.add_segments(0, len(run), stride, p.a_addr)
    assert len(rx) == 4
    assert p.b.decrypt_batch(rx, p.now, got) == 4
    assert len(got) == 0
    stats = p.b.statistics()
    assert stats.dropped_malformed == 1 and stats.dropped_bad_aead == 0
    assert p.deliver("b", [frags[-1]]) == [bytes(HEADROOM) + big]


@pytest.mark.parametrize("via", ["run", "scattered"])
def test_a_replayed_whole_message_is_refused_before_its_aead(via: str) -> None:
    """The replay window is checked before the AEAD: a whole message read again (one read,
    or one scattered read) is dropped as a replay without spending an AEAD over it."""
    p = native_pair()
    out = sealed(p, [super_packet(20_000, 4)])
    session = p.peer_of_b.current
    opens = count_opens(session)
    for _ in range(2):
        got = PacketBatch(1 << 20)
        if via == "run":
            assert p.b.decrypt_batch(as_gro_read(out, p.a_addr), p.now, got) == len(out)
        else:
            headers, bodies = scatter(out)
            assert p.b.decrypt_native_scattered(
                memoryview(headers),
                memoryview(bodies),
                len(out),
                out.lengths[-1],
                p.a_addr,
                p.now,
                got,
            )
    assert len(got) == 0 and opens == [1]
    assert p.b.statistics().dropped_replay == 1


def test_scattered_chunks_shorter_than_the_headers_say_are_not_one_message() -> None:
    """``bodies`` must hold every chunk the headers and ``last_length`` describe: a read
    that holds fewer bytes is not one whole message (``None``: the caller falls back), not
    an AEAD failure counted and stored."""
    p = native_pair()
    big = super_packet(5000, 5)
    out = sealed(p, [big])
    headers, bodies = scatter(out)
    got = PacketBatch(1 << 20)
    args = (len(out), out.lengths[-1], p.a_addr, p.now, got)
    short = memoryview(bodies)[:-1]
    assert p.b.decrypt_native_scattered(memoryview(headers), short, *args) is None
    assert p.b.statistics().dropped == 0 and not p.peer_of_b.current.native_partial
    assert p.b.decrypt_native_scattered(memoryview(headers), memoryview(bodies), *args)
    assert got.to_list() == [big]


def test_a_message_completed_into_a_batch_with_no_packet_slot_left_finds_no_room() -> None:
    """``out`` is full when it holds ``max_packets`` packets, whatever its bytes: the
    fragment that completes a message then finds no room (and is not consumed) rather
    than appending a packet past the batch's limit."""
    p = native_pair()
    fragments = sealed_fragments(p.peer_of_a.current, plaintext_of(2000))
    session = p.peer_of_b.current
    out = PacketBatch(1 << 20, max_packets=1)
    out.append(b"x" * 20)
    assert N.open_native(session, fragments[0], out) == N.OpenResult.INCOMPLETE
    assert N.open_native(session, fragments[1], out) == N.OpenResult.NO_ROOM
    assert len(out) == 1
    out.clear()
    assert N.open_native(session, fragments[1], out) == N.OpenResult.COMPLETE
    assert out.to_list() == [plaintext_of(2000)[HEADROOM:]]


def test_a_whole_message_that_fails_keeps_its_own_stored_entry_and_pushes_out_no_other() -> None:
    """A whole message (one read) that fails its AEAD is kept for another try; when its
    counter already has an entry (a fragment that came alone before), that entry is reused
    — no other incomplete message is pushed out for it, however full the store."""
    p = native_pair()
    sender = p.peer_of_a.current
    messages = [sealed_fragments(sender, plaintext_of(3000, bytes([i]))) for i in range(8)]
    for m in messages:
        deliver(p, m[:1])
    partials = p.peer_of_b.current.native_partial
    assert len(partials) == N.MAX_PARTIAL_MESSAGES
    whole = list(messages[-1])
    whole[1] = whole[1][:-1] + bytes([whole[1][-1] ^ 1])
    rx = DatagramBatch(1 << 16)
    run = b"".join(whole)
    rx.buffer[: len(run)] = run
    rx.add_segments(0, len(run), len(whole[0]), p.a_addr)
    assert len(rx) == 3
    before = set(partials)
    p.b.decrypt_batch(rx, p.now, PacketBatch(1 << 18))
    stats = p.b.statistics()
    assert stats.dropped_bad_aead == 1 and stats.dropped_incomplete == 0
    assert set(partials) == before
    # the oldest is still there: its other fragments complete it
    assert deliver(p, messages[0][1:])[1].to_list() == [plaintext_of(3000, bytes([0]))[HEADROOM:]]


@pytest.mark.parametrize("via", ["batch", "scattered"])
def test_a_one_fragment_message_past_the_counter_limit_is_a_replay_without_an_aead(
    via: str,
) -> None:
    """The one-fragment fast path checks the replay window before the AEAD as
    ``open_native`` does: a message whose counter is at ``REJECT_AFTER_MESSAGES`` (anyone
    can send one) is dropped as a replay, not opened and counted as an AEAD failure."""
    p = native_pair()
    ((genuine, _),) = sealed(p, [small(3)]).to_pairs()
    forged = bytearray(genuine)
    forged[8:16] = REJECT_AFTER_MESSAGES.to_bytes(8, "little")
    session = p.peer_of_b.current
    opens = count_opens(session)
    got = scattered_read(p, bytes(forged)) if via == "scattered" else p.deliver("b", [forged])
    assert got == [] and opens == [0]
    stats = p.b.statistics()
    assert stats.dropped_replay == 1 and stats.dropped_bad_aead == 0


def one_fragment_longer_than_its_chunk(session: Session, chunk: int) -> bytes:
    """A one-fragment message whose sealed bytes exceed the chunk its header names — sealed
    with that header, as a peer holding the key could."""
    plaintext = plaintext_of(chunk + 100)
    counter = session.native_send_counter
    session.native_send_counter += 1
    head = N.NATIVE_HEADER.pack(
        0x7F, 0, 1, N.NATIVE_VERSION, session.remote_index, counter, chunk, 0
    )
    nonce = bytearray(12)
    struct.pack_into("<Q", nonce, 4, counter)
    body = bytearray(len(plaintext) + TAG_SIZE)
    session.native_seal(nonce, plaintext, head, memoryview(body))
    return head + body


@pytest.mark.parametrize("via", ["batch", "scattered", "one-by-one"])
def test_a_one_fragment_message_longer_than_its_chunk_is_malformed(via: str) -> None:
    """No fragment holds more than the chunk its header names: a one-fragment message that
    does is malformed in every receive path (the fast paths for one-fragment messages
    agree with ``open_native``)."""
    p = native_pair()
    fragment = one_fragment_longer_than_its_chunk(p.peer_of_a.current, 400)
    if via == "scattered":
        got = scattered_read(p, fragment)
    elif via == "batch":
        got = p.deliver("b", [fragment])
    else:
        got = p.b.receive_datagram(fragment, p.a_addr, p.now)
    assert got == []
    assert p.b.statistics().dropped_malformed == 1


@pytest.mark.parametrize("via", ["batch", "scattered"])
def test_a_one_fragment_message_to_a_peer_without_native_mode_is_malformed(via: str) -> None:
    """A tunflow peer without ``native_mode`` counts native messages as malformed — small
    ones, which the one-fragment fast paths take, too."""
    p = Pair()
    p.handshake()
    p.a.add_peer(PeerConfig(p.kb.public_key(), allowed_ips=f"{B_IP}/32", native_mode=True))
    ((d, _),) = sealed(p, [ip4(A_IP, B_IP, b"ping")]).to_pairs()
    assert d[:4] == bytes([0x7F, 0, 1, N.NATIVE_VERSION])
    got = scattered_read(p, d) if via == "scattered" else p.deliver("b", [d])
    assert got == []
    assert p.b.statistics().dropped_malformed == 1


@pytest.mark.parametrize("size", [100, 5000], ids=["one-fragment", "many-fragments"])
def test_a_scattered_read_of_a_session_older_than_reject_after_time_is_refused(
    size: int,
) -> None:
    """Messages of a session older than ``REJECT_AFTER_TIME`` are refused (``dropped_too_old``)
    — through a scattered read as through ``decrypt_batch``."""
    p = native_pair()
    datagrams = [d for d, _ in sealed(p, [super_packet(size, 2)]).to_pairs()]
    p.now += REJECT_AFTER_TIME + 1
    headers = b"".join(d[: N.NATIVE_HEADER_SIZE] for d in datagrams)
    bodies = b"".join(d[N.NATIVE_HEADER_SIZE :] for d in datagrams)
    out = PacketBatch(1 << 20)
    done = p.b.decrypt_native_scattered(
        memoryview(headers),
        memoryview(bodies),
        len(datagrams),
        len(datagrams[-1]),
        p.a_addr,
        p.now,
        out,
    )
    if done is None:  # the caller falls back to decrypt_batch
        assert p.deliver("b", datagrams) == []
    assert len(out) == 0
    assert p.b.statistics().dropped_too_old == len(datagrams)


def test_a_run_of_small_packets_stops_at_the_counter_limit() -> None:
    """No native message is sealed with a counter at or past ``REJECT_AFTER_MESSAGES``: a
    run of small packets that reaches it mid-way sends those below it, and stages the rest
    behind a new handshake."""
    p = native_pair()
    s = p.peer_of_a.current
    s.native_send_counter = REJECT_AFTER_MESSAGES - 2
    datagrams = p.send("a", [small(i) for i in range(5)])
    counters = [int.from_bytes(d[8:16], "little") for d in datagrams if d[0] == 0x7F]
    assert counters == [REJECT_AFTER_MESSAGES - 2, REJECT_AFTER_MESSAGES - 1]
    assert len(p.peer_of_a.staged) == 3


def test_a_fragment_whose_type_is_not_native_is_malformed_after_the_first() -> None:
    """Every fragment's header is checked, not only the first to arrive: a later fragment
    whose type byte is not 0x7F is malformed and leaves the stored message as it was."""
    p = native_pair()
    fragments = sealed_fragments(p.peer_of_a.current, plaintext_of(5000))
    session = p.peer_of_b.current
    out = PacketBatch(1 << 20)
    assert N.open_native(session, fragments[0], out) == N.OpenResult.INCOMPLETE
    wrong = bytes([4]) + fragments[1][1:]
    assert N.open_native(session, wrong, out) == N.OpenResult.MALFORMED
    (entry,) = session.native_partial.values()
    assert entry.missing == 3
    results = [N.open_native(session, f, out) for f in fragments[1:]]
    assert results == [0, 0, N.OpenResult.COMPLETE]


def test_a_run_with_a_fragment_whose_type_is_not_native_is_not_one_message() -> None:
    """``open_native_run`` checks each header against the first, the type byte included: a
    run whose second fragment is not typed 0x7F is left to fragment-by-fragment reassembly."""
    p = native_pair()
    out = sealed(p, [super_packet(20_000, 8)])
    stride, count = out.lengths[0], len(out)
    bad = bytearray(out.buffer[: out.end])
    bad[stride] = 4
    got = PacketBatch(1 << 20)
    session = p.peer_of_b.current
    result = N.open_native_run(
        session, memoryview(bad), 0, count, stride, out.lengths[-1], got, bytearray(70_000)
    )
    assert result is None and len(got) == 0


def test_a_first_fragment_whose_message_cannot_fit_is_malformed_at_the_bound() -> None:
    """A message's sealed length is at most ``MAX_SEALED_SIZE``, and its last fragment holds
    at least one byte: a header whose ``count - 1`` full chunks already come to that much is
    malformed at once and stores nothing; one byte less of chunk is a shape a message may
    have."""
    p = native_pair()
    session = p.peer_of_b.current
    counter = session.native_replay.highest + 1
    chunk = 1237
    assert 53 * chunk == N.MAX_SEALED_SIZE
    out = PacketBatch(1 << 17)
    for size, expected in ((chunk, N.OpenResult.MALFORMED), (chunk - 1, N.OpenResult.INCOMPLETE)):
        header = N.NATIVE_HEADER.pack(
            0x7F, 0, 54, N.NATIVE_VERSION, session.local_index, counter, size, 0
        )
        assert N.open_native(session, header + bytes(size), out) == expected
        assert (counter in session.native_partial) == (expected == N.OpenResult.INCOMPLETE)


def test_a_forged_fragment_of_the_same_count_but_another_chunk_is_replaced() -> None:
    """A fragment forged ahead of a message with its fragment count but another chunk size
    (nothing is authenticated before the whole opens) is replaced by the genuine fragments,
    which then open in any order, with no failed AEAD on the way."""
    p = native_pair()
    s = p.peer_of_a.current
    forged = N.NATIVE_HEADER.pack(
        0x7F, 3, 4, N.NATIVE_VERSION, s.remote_index, s.native_send_counter, 300, 0
    )
    p.b.receive_datagram(forged + b"\0", ("203.0.113.66", 9), p.now)
    packet = ip4(A_IP, B_IP, b"S" * 5000)
    fragments = p.send("a", [packet])
    assert len(fragments) == 4
    got = [q for k in (0, 2, 1, 3) for q in p.b.receive_datagram(fragments[k], p.a_addr, p.now)]
    assert [g[-len(packet) :] for g in got] == [packet]
    assert p.b.statistics().dropped_bad_aead == 0
    assert not p.peer_of_b.current.native_partial


def test_a_scattered_last_fragment_longer_than_its_chunk_is_not_one_message() -> None:
    """The last fragment of a message holds at most one chunk: a scattered read whose last
    fragment says it is longer is not one message (the caller falls back to reassembly,
    which finds it malformed) — no AEAD is tried over it and nothing is stored."""
    p = native_pair()
    out = sealed(p, [super_packet(3000, 9)])
    assert len(out) == 3
    headers, bodies = scatter(out)
    chunk = out.lengths[0] - N.NATIVE_HEADER_SIZE
    bodies += bytes(chunk + 1)
    session = p.peer_of_b.current
    opens = count_opens(session)
    got = PacketBatch(1 << 17)
    result = N.open_native_scattered(
        session, memoryview(headers), memoryview(bodies), 3, N.NATIVE_HEADER_SIZE + chunk + 1, got
    )
    assert result is None and opens == [0] and not session.native_partial


def test_a_scattered_one_fragment_message_with_a_chunk_below_the_smallest_is_refused() -> None:
    """As in ``decrypt_batch``, a one-fragment message whose chunk is below the smallest a
    tunflow peer uses is not opened by a scattered read: it is left to the general path
    (``None``), which finds it malformed."""
    p = native_pair()
    chunk = N.MIN_FRAGMENT_SIZE - N.NATIVE_HEADER_SIZE - 1
    (fragment,) = sealed_with_chunk(p.peer_of_a.current, plaintext_of(100), chunk)
    got = PacketBatch(1 << 17)
    result = p.b.decrypt_native_scattered(
        memoryview(fragment[: N.NATIVE_HEADER_SIZE]),
        memoryview(fragment[N.NATIVE_HEADER_SIZE :]),
        1,
        len(fragment),
        p.a_addr,
        p.now,
        got,
    )
    assert result is None and len(got) == 0


@pytest.mark.parametrize("size", [N.MIN_FRAGMENT_SIZE - 1, N.NATIVE_HEADER_SIZE + 0x10000])
def test_a_fragment_size_out_of_range_is_a_value_error_naming_the_range(size: int) -> None:
    """``seal_native`` refuses a fragment size whose chunk is below the smallest or does not
    fit the header's 16-bit chunk field, with a ValueError that says the allowed range (a
    too-large size was said to be "below" the smallest)."""
    p = native_pair()
    s = p.peer_of_a.current
    counter = s.native_send_counter
    low, high = N.MIN_FRAGMENT_SIZE, N.NATIVE_HEADER_SIZE + 0xFFFF
    with pytest.raises(ValueError, match=f"fragment size {size} is outside {low}…{high}"):
        N.seal_native(
            s, bytes(HEADROOM + 40), DatagramBatch(1 << 17), None, size, bytearray(70_000)
        )
    assert s.native_send_counter == counter


def test_a_message_shorter_than_a_virtio_net_header_is_not_sealed() -> None:
    """``seal_native`` takes a 10-byte virtio-net header and a packet: fewer bytes are a
    ValueError, and the counter does not move."""
    p = native_pair()
    s = p.peer_of_a.current
    counter = s.native_send_counter
    with pytest.raises(ValueError, match="native message of 9 bytes"):
        N.seal_native(s, bytes(HEADROOM - 1), DatagramBatch(4096), None, 1452, bytearray(70_000))
    assert s.native_send_counter == counter


def test_a_message_that_exactly_fills_the_arena_is_sealed() -> None:
    """``seal_native`` returns 0 only when ``out`` has no room: fragments that fill the rest of
    its arena to the last byte are written."""
    p = native_pair()
    s = p.peer_of_a.current
    message = bytes(HEADROOM) + super_packet(3000, 10)
    sealed_len = len(message) + TAG_SIZE
    need = sealed_len + N.NATIVE_HEADER_SIZE * N.fragment_count(len(message), 1452)
    assert N.seal_native(s, message, DatagramBatch(need - 1), None, 1452, bytearray(70_000)) == 0
    out = DatagramBatch(need)
    assert N.seal_native(s, message, out, None, 1452, bytearray(70_000)) == 3
    assert out.end == need


def test_a_gathered_message_that_exactly_fills_one_fragment_goes_into_the_arena() -> None:
    """``seal_native_gathered`` writes a message of one fragment into ``out``'s arena — one
    whose sealed bytes fill the chunk to the last byte too — and takes no slot for it."""
    p = native_pair()
    s = p.peer_of_a.current
    chunk = 1452 - N.NATIVE_HEADER_SIZE
    message = bytes(HEADROOM) + super_packet(chunk - TAG_SIZE - HEADROOM, 11)
    slots = N.SendSlots(count=1)
    out = DatagramBatch(4096, gather=True)
    assert N.seal_native_gathered(s, message, out, p.b_addr, 1452, slots) == 1
    assert not out.gathered and out.lengths == [1452] and slots.used == 0
    rx = DatagramBatch(4096)
    rx.append(out.to_pairs()[0][0], address=p.a_addr)
    got = PacketBatch(1 << 17)
    p.b.decrypt_batch(rx, p.now, got)
    assert got.to_list() == [message[HEADROOM:]]
