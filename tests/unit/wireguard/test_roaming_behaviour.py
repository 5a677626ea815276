"""Roaming only after authentication, as docs/wireguard.md says ("Every authenticated datagram
(transport message, initiation, response) sets the peer's endpoint to its source address …
Forged or replayed datagrams do not") and wireguard-go does (``SetEndpointFromPacket`` after
the replay filter and after a handshake message is consumed): a replayed transport or native
message, a replayed initiation and a response that does not authenticate, each from a new
address, leave the endpoint where it was — on every receive path."""

from __future__ import annotations

import pytest
from test_native_run import as_gro_read, native_pair, scatter, sealed, super_packet
from wgpair import A_IP, B_IP, Pair, ip4

from tunflow.packet import PacketBatch
from tunflow.wireguard.protocol import DatagramBatch, EndpointChanged
from tunflow.wireguard.protocol.cookie import CookieGenerator
from tunflow.wireguard.protocol.replay import WINDOW_SIZE

#: where an attacker replays what it captured from
ELSEWHERE = ("203.0.113.66", 4444)


def _packets(n: int) -> list[bytes]:
    return [ip4(A_IP, B_IP, i.to_bytes(4, "big") + bytes(104)) for i in range(n)]


@pytest.mark.parametrize("count", [1, 2, 8])  # the lone path, the loop, a run opened at once
def test_a_replayed_transport_message_moves_no_endpoint(count: int) -> None:
    p = Pair()
    p.handshake()
    datagrams = p.send("a", _packets(count))
    assert p.deliver("b", datagrams) == _packets(count)
    p.events("b")
    replays = p.b.statistics().dropped_replay
    assert p.deliver("b", datagrams, src=ELSEWHERE) == []
    assert p.b.statistics().dropped_replay == replays + count
    assert p.peer_of_b.endpoint == p.a_addr
    assert not any(isinstance(e, EndpointChanged) for e in p.events("b"))


@pytest.mark.parametrize("behind", [False, True])
@pytest.mark.parametrize("how", ["alone", "twice", "after a fresh one"])
def test_a_stale_message_moves_no_endpoint(how: str, behind: bool) -> None:
    # stale: a message already received, or one never received but further behind the newest
    # than the replay window reaches (dropped as a replay all the same); alone (the lone path),
    # twice, or after a fresh message from the peer's address (the loop)
    p = Pair()
    p.handshake()
    [old] = p.send("a", _packets(1))
    if behind:
        p.peer_of_a.current.send_counter += WINDOW_SIZE + 1
    else:
        p.deliver("b", [old])
    [new] = p.send("a", _packets(1))
    batch = DatagramBatch(1 << 16)
    if how == "after a fresh one":
        batch.append(new, address=p.a_addr)
    else:
        p.deliver("b", [new])
    batch.append(old, address=ELSEWHERE)
    if how == "twice":
        batch.append(old, address=ELSEWHERE)
    p.events("b")
    replays = p.b.statistics().dropped_replay
    out = PacketBatch(capacity=1 << 16, max_packets=8)
    assert p.b.decrypt_batch(batch, p.now, out) == len(batch)
    assert out.to_list() == (_packets(1) if how == "after a fresh one" else [])
    assert p.b.statistics().dropped_replay == replays + (2 if how == "twice" else 1)
    assert p.peer_of_b.endpoint == p.a_addr
    assert p.events("b") == []


@pytest.mark.parametrize("via", ["run", "scattered"])
def test_a_replayed_native_message_moves_no_endpoint(via: str) -> None:
    p = native_pair()
    out = sealed(p, [super_packet(20_000, 4)])
    got = PacketBatch(1 << 20)
    assert p.b.decrypt_batch(as_gro_read(out, p.a_addr), p.now, got) == len(out)
    assert len(got) == 1
    got = PacketBatch(1 << 20)
    if via == "run":
        assert p.b.decrypt_batch(as_gro_read(out, ELSEWHERE), p.now, got) == len(out)
    else:
        headers, bodies = scatter(out)
        assert p.b.decrypt_native_scattered(
            memoryview(headers),
            memoryview(bodies),
            len(out),
            out.lengths[-1],
            ELSEWHERE,
            p.now,
            got,
        )
    assert len(got) == 0 and p.b.statistics().dropped_replay == 1
    assert p.peer_of_b.endpoint == p.a_addr


def test_a_replayed_initiation_moves_no_endpoint() -> None:
    p = Pair()
    p.a.send_packet(ip4(A_IP, B_IP), p.now)
    [(init, _)] = p.a.datagrams_to_send()
    p.deliver("b", [init])
    assert p.peer_of_b.endpoint == p.a_addr
    p.b.datagrams_to_send()
    p.events("b")
    p.now += 1
    p.deliver("b", [init], src=ELSEWHERE)  # its timestamp is not newer: a replay
    assert p.b.statistics().dropped_handshake == 1
    assert p.peer_of_b.endpoint == p.a_addr
    assert p.events("b") == [] and p.b.datagrams_to_send() == []


def test_a_response_that_does_not_authenticate_moves_no_endpoint() -> None:
    # a response to a's outstanding initiation (its receiver index is on the wire) with a valid
    # mac1 — anyone knowing a's public key can make one — but not from b: dropped, and the
    # real response still completes the handshake
    p = Pair()
    p.a.send_packet(ip4(A_IP, B_IP), p.now)
    [(init, _)] = p.a.datagrams_to_send()
    p.deliver("b", [init])
    [(response, _)] = p.b.datagrams_to_send()
    forged = bytearray(response)
    forged[44] ^= 1  # the encrypted empty payload
    CookieGenerator(p.ka.public_key()).add_macs(forged, p.now)
    p.deliver("a", [bytes(forged)], src=ELSEWHERE)
    assert p.a.statistics().dropped_handshake == 1
    assert p.peer_of_a.endpoint == p.b_addr and p.peer_of_a.current is None
    assert p.events("a") == []
    p.deliver("a", [response])
    assert p.peer_of_a.current is not None and p.peer_of_a.endpoint == p.b_addr
