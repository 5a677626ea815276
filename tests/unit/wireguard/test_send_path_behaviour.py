"""The send path of :class:`WireGuard` (encrypt_batch, send_packet) and its AllowedIPs, held to
what docs/wireguard.md and the docstrings say: cases the pair tests leave out."""

from __future__ import annotations

import pytest
from test_wg_pair import set_native
from wgpair import A_IP, A_IP6, B_IP, B_IP6, Pair, batch_of, ip4, ip6

from tests.unit.offload_packets import tcp_super_packet
from tunflow.packet import HEADROOM, PacketBatch
from tunflow.wireguard.protocol import DatagramBatch
from tunflow.wireguard.protocol.constants import (
    REJECT_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
    REKEY_TIMEOUT,
)

_MESSAGE = 128 + 32  # a 124-byte packet padded to 128, plus header and tag


def _packet(i: int, dst: str = B_IP) -> bytes:
    return ip4(A_IP, dst, i.to_bytes(4, "big") + bytes(100))


def big(n: int) -> bytes:
    """An IPv4 packet a→b of ``n`` bytes."""
    return ip4(A_IP, B_IP, bytes(n - 20))


@pytest.mark.parametrize("room", range(1, 7))
def test_a_batch_resumed_after_out_fills_sends_each_packet_once_in_order(room: int) -> None:
    # "less than len(packets) only when out filled up (send it, clear it, call again with the
    # rest)": whatever the room, across runs cut by packets with no route, malformed ones and
    # one too large for a datagram, every routed packet arrives once and in order
    p = Pair()
    p.handshake()
    six = ip6(A_IP6, B_IP6, bytes(88))  # 128 bytes as well
    routed = [_packet(0), _packet(1), _packet(2), _packet(3), _packet(4), _packet(5), six]
    routed.append(_packet(6))
    sent = [*routed[:2], ip4(A_IP, "192.0.2.200"), routed[2], b"\x00" * 30, routed[3]]
    sent += [big(65500), *routed[4:]]
    tx = p.a.statistics().tx_packets
    rest = sent
    datagrams: list[bytes] = []
    for _ in range(len(sent) + 1):
        if not rest:
            break
        out = DatagramBatch(room * _MESSAGE)
        done = p.a.encrypt_batch(batch_of(rest), p.now, out)
        assert 0 < done <= len(rest)
        datagrams += [d for d, _ in out.to_pairs()]
        rest = rest[done:]
    assert rest == []
    assert p.deliver("b", datagrams) == routed
    s = p.a.statistics()
    assert (s.dropped_no_route, s.dropped_malformed, s.dropped_too_large) == (1, 1, 1)
    assert s.tx_packets - tx == len(routed)


def test_a_native_session_whose_counter_ran_out_stages_behind_a_new_handshake() -> None:
    # "a session ... whose counter reached REJECT_AFTER_MESSAGES: never used again: packets are
    # staged behind a new handshake" — native mode's own counter as well as WireGuard's
    p = Pair(a_peer={"native_mode": True}, b_peer={"native_mode": True})
    p.handshake()
    s = p.peer_of_a.current
    s.native_send_counter = REJECT_AFTER_MESSAGES - 2
    p.now += REKEY_TIMEOUT  # initiations are at least REKEY_TIMEOUT apart
    sent = [_packet(i) for i in range(5)]
    assert p.transfer("a", sent) == [bytes(HEADROOM) + packet for packet in sent]
    assert p.peer_of_a.current is not s
    assert p.b.statistics().dropped == 0


def test_every_packet_with_no_route_or_not_ip_is_counted() -> None:
    # "packets with no route are counted and dropped": each of them, also in runs
    p = Pair()
    p.handshake()
    tx = p.a.statistics().tx_packets
    nowhere = [ip4(A_IP, "192.0.2.200"), ip4(A_IP, "192.0.2.201"), ip6(A_IP6, "fd00::99")]
    malformed = [b"\x00" * 30, b"\x45" * 19, b""]
    assert p.send("a", nowhere + malformed + [_packet(0)] + nowhere[:2]) != []
    s = p.a.statistics()
    assert (s.dropped_no_route, s.dropped_malformed, s.tx_packets - tx) == (5, 3, 1)
    assert s.dropped == 8


@pytest.mark.parametrize("count", [1, 2, 8])  # the lone path, the loop, a run at once
def test_a_responder_does_not_rekey_on_time_when_sending(count: int) -> None:
    # docs/wireguard.md: "we initiated the session and it is older than REKEY_AFTER_TIME" —
    # only the initiator starts a handshake for the session's age when it sends
    p = Pair()
    p.handshake()
    p.now += REKEY_AFTER_TIME + 5
    sent = [ip4(B_IP, A_IP, i.to_bytes(4, "big") + bytes(104)) for i in range(count)]
    assert p.deliver("a", p.send("b", sent)) == sent
    assert p.b.datagrams_to_send(p.now) == []
    assert p.b.statistics().handshake_initiations_sent == 0


def test_a_staged_super_packet_split_for_a_wireguard_peer_counts_each_message() -> None:
    # tx_packets counts transport messages: a super-packet staged in native mode and sent,
    # split, once its peer left native mode is one message per segment (as the receiver counts)
    p = Pair(a_peer={"native_mode": True}, b_peer={"native_mode": True})
    raw = tcp_super_packet((bytes([10, 0, 0, 1]), 4000), (bytes([10, 0, 0, 2]), 5000), 5000, 1000)
    batch = PacketBatch()
    batch.append(raw[HEADROOM:], header=raw[:HEADROOM])
    batch.vnet_hdr = True
    assert p.a.encrypt_batch(batch, p.now, DatagramBatch(1 << 20)) == 1
    set_native(p, False)
    p.flush()
    assert len(p.got["b"]) == 5
    assert p.a.statistics().tx_packets == p.b.statistics().rx_packets == 5
