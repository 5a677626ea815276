"""The lone-packet paths of encrypt_batch and decrypt_batch (a batch of one, handled without a
batch's setup) against the general paths they stand for.

Two pairs of interfaces made from the same seed go through the same script — pings both ways,
keepalives, replays, forged and malformed messages, a rekey after messages and after time, a
packet over the MTU, one that is not allowed — once with the lone paths and once with them
turned off. Every datagram on the wire, every packet delivered, every counter and every timer
must come out the same; and the lone paths must have taken most of the traffic, so the
comparison is not of the general path with itself.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from wgpair import A_IP, A_IP6, B_IP, B_IP6, Pair, ip4, ip6

from tunflow.packet import PacketBatch
from tunflow.wireguard.protocol import DatagramBatch, WireGuard
from tunflow.wireguard.protocol.constants import REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME
from tunflow.wireguard.protocol.session import Session

_TIMERS = (
    "keepalive_at",
    "new_handshake_at",
    "persistent_at",
    "retransmit_at",
    "zero_keys_at",
    "handshake_attempts",
    "need_another_keepalive",
    "sent_last_minute_handshake",
    "rx_bytes",
    "tx_bytes",
)


def _count_lone(wg: WireGuard, taken: dict[str, int], *, off: bool) -> None:
    """Wrap (or turn off) the instance's lone paths; count the packets they took."""
    for name in ("_encrypt_lone", "_decrypt_lone"):
        real = getattr(wg, name)

        def wrapped(*args: Any, _real: Any = real, _name: str = name) -> bool:
            if off:
                return False
            done: bool = _real(*args)
            taken[_name] += done
            return done

        setattr(wg, name, wrapped)


def _state(pair: Pair) -> Any:
    peers = []
    for wg in (pair.a, pair.b):
        for peer in wg.peers.values():
            sessions = [
                None if s is None else (s.send_counter, s.replay.highest, s.is_initiator)
                for s in (peer.previous, peer.current, peer.next)
            ]
            peers.append(([getattr(peer, t) for t in _TIMERS], sessions, peer.endpoint))
    return (pair.a.statistics(), pair.b.statistics(), peers, pair.a.get_timer(), pair.b.get_timer())


def _script(pair: Pair) -> list[Any]:
    """Lone packets through ``pair`` in many situations; what each step showed."""
    seen: list[Any] = []

    def ping(frm: str, packet: bytes) -> None:
        seen.append(("ping", frm, pair.transfer(frm, [packet]), _state(pair)))

    def deliver(to: str, datagram: bytes) -> None:
        seen.append(("deliver", to, pair.deliver(to, [datagram]), _state(pair)))

    pair.handshake()
    for i in range(6):
        ping("a", ip4(A_IP, B_IP, b"ping %d" % i))
        ping("b", ip4(B_IP, A_IP, b"pong %d" % i))
        ping("a", ip6(A_IP6, B_IP6, b"six" * i))
        pair.advance(0.4)
    # sizes around the padding and the MTU (1420): padded, exact, capped, over the MTU
    for size in (1, 15, 16, 17, 1390, 1400, 1401, 1419, 1420, 1421, 1500, 9000):
        ping("a", ip4(A_IP, B_IP, bytes(range(256)) * (size // 256) + bytes(size % 256)))
    # a replayed message, a forged one, one for an unknown index, a short one
    last = pair.send("a", [ip4(A_IP, B_IP, b"once")])[0]
    deliver("b", last)
    deliver("b", last)
    deliver("b", last[:-1] + bytes([last[-1] ^ 1]))
    deliver("b", last[:4] + b"\xff\xff\xff\xff" + last[8:])
    deliver("b", last[:20])
    # inner packets that are not allowed, malformed, or no IP packet at all
    ping("a", ip4("10.9.9.9", B_IP))  # (a routes by destination: b refuses the source)
    bad_length = bytearray(ip4(A_IP, B_IP, b"z" * 30))
    struct.pack_into("!H", bad_length, 2, 500)
    ping("a", bytes(bad_length))
    ping("a", ip4(A_IP, "10.7.7.7"))  # no route on a
    ping("a", b"\x50" + bytes(39))  # no IP version a routes
    # keepalives (both ways), then quiet long enough for the next handshake to be due
    pair.advance(11)
    ping("b", ip4(B_IP, A_IP, b"after keepalive"))
    # a rekey after messages: the counters just under the threshold on both sides
    for wg in (pair.a, pair.b):
        for peer in wg.peers.values():
            assert peer.current is not None
            peer.current.send_counter = REKEY_AFTER_MESSAGES - 2
            peer.current.native_send_counter = REKEY_AFTER_MESSAGES - 2
    for i in range(4):
        ping("a", ip4(A_IP, B_IP, b"near the limit %d" % i))
        ping("b", ip4(B_IP, A_IP, b"near the limit %d" % i))
    # a rekey after time (the initiator's session gets old while packets flow)
    for _ in range(4):
        pair.advance(REKEY_AFTER_TIME / 3)
        ping("a", ip4(A_IP, B_IP, b"later"))
        ping("b", ip4(B_IP, A_IP, b"later"))
    seen.append(("wire", pair.wire, pair.destinations, pair.got))
    return seen


@pytest.mark.parametrize("native", [False, True], ids=["wireguard", "native"])
def test_lone_paths_do_what_the_general_paths_do(native: bool) -> None:
    taken = {"_encrypt_lone": 0, "_decrypt_lone": 0}
    mode = {"native_mode": native}
    lone = Pair(b"lone", a_peer=mode, b_peer=mode)
    general = Pair(b"lone", a_peer=mode, b_peer=mode)
    for wg in (lone.a, lone.b):
        _count_lone(wg, taken, off=False)
    for wg in (general.a, general.b):
        _count_lone(wg, {"_encrypt_lone": 0, "_decrypt_lone": 0}, off=True)
    got, want = _script(lone), _script(general)
    assert len(got) == len(want)
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"step {step}: {g[:2]}"
    # most pings went the lone way (the others: handshakes, over-MTU and refused packets…;
    # native messages are opened by decrypt_batch's own one-fragment path)
    assert taken["_encrypt_lone"] >= 40
    assert taken["_decrypt_lone"] >= (1 if native else 40)
    # and the script did reach what it means to test
    stats = lone.b.statistics()
    assert stats.dropped_replay >= 1
    assert stats.dropped_not_allowed_source >= 1
    assert stats.keepalives_received >= 1
    if not native:  # (a forged native message is dropped without a word: it may be a fragment)
        assert stats.dropped_bad_aead >= 1
        assert stats.dropped_unknown_index >= 1
        assert stats.dropped_malformed >= 2
    assert lone.a.statistics().dropped_no_route >= 1
    # the first handshake, the rekey after messages, the rekey after time
    initiations = [wg.statistics().handshake_initiations_sent for wg in (lone.a, lone.b)]
    assert sum(initiations) >= 3, initiations


@pytest.mark.parametrize("mtu", [0, 1280, 1420])
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 100, 1279, 1280, 1281, 1419, 1420, 1421, 3000])
def test_encrypt_one_is_encrypt_batch_of_one(size: int, mtu: int) -> None:
    pair = Pair(b"one")
    pair.handshake()
    keys = pair.peer_of_a.current
    assert keys is not None
    packet = bytes(range(256)) * (size // 256) + bytes(size % 256)
    outs = []
    for one in (True, False):
        session = _copy(keys)
        out = DatagramBatch(1 << 16)
        out.append(b"before", address=("192.0.2.9", 9))  # not at the arena's start
        if one:
            assert session.encrypt_one(memoryview(packet), out, ("192.0.2.9", 1), mtu)
        else:
            batch = PacketBatch(capacity=1 << 16, max_packets=4)
            batch.append(packet)
            assert session.encrypt_batch(batch, out, ("192.0.2.9", 1), mtu) == 1
        outs.append((out.to_pairs(), session.send_counter))
    assert outs[0] == outs[1]


def test_encrypt_one_without_room_changes_nothing() -> None:
    pair = Pair(b"room")
    pair.handshake()
    session = pair.peer_of_a.current
    assert session is not None
    counter = session.send_counter
    out = DatagramBatch(100)
    assert not session.encrypt_one(memoryview(bytes(80)), out, ("192.0.2.9", 1), 1420)
    assert (len(out), out.end, session.send_counter) == (0, 0, counter)
    full = DatagramBatch(1 << 16, max_packets=1)
    full.append(b"x", address=None)
    assert not session.encrypt_one(memoryview(bytes(8)), full, ("192.0.2.9", 1), 1420)
    assert (len(full), session.send_counter) == (1, counter)


def _copy(session: Session) -> Session:
    """A session that seals as ``session`` does (same keys, indices, counter)."""
    twin = Session.__new__(Session)
    for name in Session.__slots__:
        value = getattr(session, name)
        setattr(twin, name, bytearray(value) if isinstance(value, bytearray) else value)
    return twin
