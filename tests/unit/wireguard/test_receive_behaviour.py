"""decrypt_batch, the receive path, against what its docstring, docs/wireguard.md and the
whitepaper say: the drop reason of a bad datagram, the room it needs in ``out``, the headers of
a ``vnet_hdr`` batch, a cookie reply to a response — on the lone path (a batch of one), the
loop (a few datagrams) and a run opened at once (eight or more of one flow) alike.
"""

from __future__ import annotations

import pytest
from wgpair import A_IP, A_IP6, B_IP, B_IP6, Pair, ip4, ip6

from tunflow.packet import HEADROOM, PacketBatch
from tunflow.wireguard.protocol import DatagramBatch

#: a batch of one (the lone path), a few (the loop), a run of one flow (opened at once)
PATHS = [1, 2, 8]


def _packets(n: int, size: int = 128) -> list[bytes]:
    """``n`` IPv4 packets of ``size`` bytes (a multiple of 16: sealed without padding)."""
    return [ip4(A_IP, B_IP, i.to_bytes(4, "big") + bytes(size - 24)) for i in range(n)]


def _decrypt(p: Pair, datagrams: list[bytes], out: PacketBatch) -> int:
    batch = DatagramBatch(1 << 20)
    for d in datagrams:
        batch.append(d, address=p.a_addr)
    return p.b.decrypt_batch(batch, p.now, out)


@pytest.mark.parametrize("count", PATHS)
def test_a_transport_message_shorter_than_header_and_tag_is_malformed(count: int) -> None:
    p = Pair()
    p.handshake()
    before = p.b.statistics()
    short = [d[:31] for d in p.send("a", _packets(count))]  # a known receiver index, 15 bytes on
    assert p.deliver("b", short) == []
    after = p.b.statistics()
    assert after.dropped_malformed == count
    assert after.dropped == count and after.rx_packets == before.rx_packets


@pytest.mark.parametrize("count", PATHS)
def test_an_out_batch_with_exactly_the_room_takes_every_datagram(count: int) -> None:
    p = Pair()
    p.handshake()
    sent = _packets(count)
    datagrams = p.send("a", sent)
    room = count * (HEADROOM + 128)
    out = PacketBatch(capacity=room, max_packets=count)
    assert _decrypt(p, datagrams, out) == count
    assert out.to_list() == sent
    # a byte less: the last one does not fit, and is left (not consumed, not dropped)
    q = Pair()
    q.handshake()
    out = PacketBatch(capacity=room - 1, max_packets=count)
    assert _decrypt(q, q.send("a", sent), out) == count - 1
    assert out.to_list() == sent[:-1]
    assert q.b.statistics().dropped == 0


@pytest.mark.parametrize("count", PATHS)
def test_counters_at_the_windows_limit_are_refused(count: int) -> None:
    p = Pair()
    p.handshake()
    session = p.peer_of_b.current
    assert session is not None and session.replay.highest == 0  # the confirming keepalive
    sent = _packets(count)
    session.replay.limit = count  # the counters sent next are 1 … count: the last is refused
    assert p.deliver("b", p.send("a", sent)) == sent[:-1]
    assert p.b.statistics().dropped_replay == 1


@pytest.mark.parametrize("count", PATHS)
def test_an_out_batch_with_room_for_fewer_packets_takes_as_many(count: int) -> None:
    p = Pair()
    p.handshake()
    sent = _packets(count)
    out = PacketBatch(capacity=1 << 16, max_packets=count - 1 or 1)
    taken = _decrypt(p, p.send("a", sent), out)
    assert taken == len(out) == max(count - 1, 1)
    assert out.to_list() == sent[:taken]
    assert p.b.statistics().dropped == 0


@pytest.mark.parametrize("count", PATHS)
def test_a_full_out_batch_takes_nothing(count: int) -> None:
    p = Pair()
    p.handshake()
    out = PacketBatch(capacity=1 << 16, max_packets=1)
    out.append(b"\x45" + bytes(19))
    assert _decrypt(p, p.send("a", _packets(count)), out) == 0
    assert len(out) == 1
    assert p.b.statistics().dropped == 0


@pytest.mark.parametrize("count", PATHS)
def test_an_ipv6_payload_length_past_the_message_is_malformed(count: int) -> None:
    p = Pair()
    p.handshake()
    bad = bytearray(ip6(A_IP6, B_IP6, bytes(24)))  # 64 bytes: sealed without padding
    bad[4:6] = (24 + 16).to_bytes(2, "big")  # says 16 bytes more than the message holds
    assert p.deliver("b", p.send("a", [bytes(bad)] * count)) == []
    assert p.b.statistics().dropped_malformed == count


def test_an_ipv4_length_shorter_than_its_header_is_malformed_in_a_run() -> None:
    # (test_wg_pair checks the lone path and the loop; a run at once checks them on its own)
    count = 8
    p = Pair()
    p.handshake()
    bad = bytearray(_packets(1)[0])
    bad[2:4] = (19).to_bytes(2, "big")
    assert p.deliver("b", p.send("a", [bytes(bad)] * count)) == []
    assert p.b.statistics().dropped_malformed == count


@pytest.mark.parametrize("count", PATHS)
def test_packets_of_other_sources_in_one_flow_are_dropped_one_by_one(count: int) -> None:
    # cryptokey routing (whitepaper §2): each packet's source must be the sending peer's
    p = Pair()
    p.handshake()
    sent = [ip4(A_IP if i % 2 else "10.0.0.99", B_IP, bytes(108)) for i in range(count)]
    assert p.deliver("b", p.send("a", sent)) == sent[1::2]
    assert p.b.statistics().dropped_not_allowed_source == (count + 1) // 2


@pytest.mark.parametrize("count", PATHS)
def test_packets_into_a_vnet_hdr_batch_get_zero_headers(count: int) -> None:
    # a reused batch holds old bytes where the headers go: each is written, not assumed zero
    p = Pair()
    p.handshake()
    sent = _packets(count)
    out = PacketBatch(capacity=1 << 16, max_packets=count)
    out.buffer[:] = b"\xff" * len(out.buffer)
    out.zero_headers()
    assert _decrypt(p, p.send("a", sent), out) == count
    assert [bytes(out.with_header(i)) for i in range(count)] == [bytes(10) + q for q in sent]


@pytest.mark.parametrize("at", [1, 2, 3])
def test_a_handshake_message_with_a_reserved_byte_set_is_malformed(at: int) -> None:
    # the message type is a little-endian 32-bit word (whitepaper §5.4; wireguard-go reads it
    # as one): 1 with a reserved byte set is no known type
    p = Pair()
    p.a.send_packet(ip4(A_IP, B_IP), p.now)
    [(initiation, _)] = p.a.datagrams_to_send()
    bad = bytearray(initiation)
    bad[at] = 1
    assert p.deliver("b", [bytes(bad)]) == []
    s = p.b.statistics()
    assert s.dropped_malformed == 1 and s.handshake_initiations_received == 0
    assert p.b.datagrams_to_send() == []


def test_receive_datagram_counts_a_datagram_too_large_for_any_batch() -> None:
    p = Pair()
    p.handshake()
    assert p.b.receive_datagram(bytes(300 * 1024), p.a_addr, p.now) == []
    assert p.b.statistics().dropped_malformed == 1


def test_a_cookie_reply_to_a_response_is_taken_by_the_responder() -> None:
    # an initiator under load answers a response without mac2 with a cookie reply to the
    # response's sender index — the responder's new session (whitepaper §5.4.7)
    p = Pair()
    p.a.send_packet(ip4(A_IP, B_IP), p.now)
    [(initiation, _)] = p.a.datagrams_to_send()
    p.deliver("b", [initiation])
    [(response, _)] = p.b.datagrams_to_send()
    p.a.set_under_load(p.now, duration=60)
    p.deliver("a", [response])
    [(cookie, _)] = p.a.datagrams_to_send()
    assert p.a.statistics().cookie_replies_sent == 1
    p.deliver("b", [cookie])
    s = p.b.statistics()
    assert s.cookie_replies_received == 1 and s.dropped == 0
    assert p.peer_of_b.cookies.has_cookie


@pytest.mark.parametrize("change", [-1, 1])
def test_a_handshake_message_of_another_size_is_malformed(change: int) -> None:
    p = Pair()
    p.a.send_packet(ip4(A_IP, B_IP), p.now)
    [(initiation, _)] = p.a.datagrams_to_send()
    odd = initiation[:change] if change < 0 else initiation + bytes(change)
    assert p.deliver("b", [odd]) == []
    s = p.b.statistics()
    assert s.dropped_malformed == s.dropped == 1 and s.handshake_initiations_received == 0
