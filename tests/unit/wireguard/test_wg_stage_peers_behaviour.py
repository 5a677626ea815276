"""The ``wireguard`` stage whose peers were all native when it was made (so the pipeline reads
super-packets whole for it): a WireGuard-mode peer that joins later from Python gets MTU-sized
packets, as ``wg set`` gives them to one joining ``tunflow up`` (docs/vpn.md, "Native fast
mode"), not whole super-packets it cannot take."""

from __future__ import annotations

import time

import pytest
from wgpair import A_IP, ip4

from tests.unit.wireguard.test_wg_port import tcp_super_packet
from tunflow.datagram import DatagramBatch
from tunflow.pipeline import Lane
from tunflow.wireguard import PeerConfig, PrivateKey, WireGuard
from tunflow.wireguard.stage import WireGuardStage

MINE, FAR = ("127.0.0.1", 40001), ("127.0.0.1", 40002)


def stage_and_joiner(native: bool) -> tuple[WireGuardStage, WireGuard]:
    """A stage made with one native peer; then a second peer (``native`` or not) added to its
    protocol, with a session to the sans-I/O WireGuard returned (10.0.0.2)."""
    wg = WireGuard(PrivateKey.generate())
    wg.add_peer(
        PeerConfig(PrivateKey.generate().public_key(), allowed_ips="10.1.0.0/16", native_mode=True)
    )
    stage = WireGuardStage.for_protocol(wg)
    assert not stage.needs_mtu_packets  # planned: super-packets whole
    key = PrivateKey.generate()
    wg.add_peer(
        PeerConfig(key.public_key(), endpoint=FAR, allowed_ips="10.0.0.2/32", native_mode=native)
    )
    other = WireGuard(key)
    other.add_peer(PeerConfig(wg.public_key, allowed_ips=f"{A_IP}/32", native_mode=native))
    now = time.monotonic()  # the stage's clock
    wg.send_packet(ip4(A_IP, "10.0.0.2"), now)  # staged; the initiation is queued
    for d, _ in wg.datagrams_to_send():
        other.receive_datagram(d, MINE, now)
    for d, _ in other.datagrams_to_send():
        wg.receive_datagram(d, FAR, now)
    for d, _ in wg.datagrams_to_send():  # the staged packet: the responder's session confirmed
        other.receive_datagram(d, MINE, now)
    return stage, other


def sent(stage: WireGuardStage, segments: int) -> list[tuple[bytes, object]]:
    out = stage.bind(Lane())(tcp_super_packet("10.0.0.2", segments))
    assert isinstance(out, DatagramBatch)
    return list(out.to_pairs())


def test_a_wireguard_peer_joining_later_gets_the_super_packet_cut_to_the_mtu() -> None:
    stage, other = stage_and_joiner(native=False)
    datagrams = sent(stage, 8)
    assert len(datagrams) == 8 and all(len(d) <= 1420 + 32 for d, _ in datagrams)
    packets = [p for d, _ in datagrams for p in other.receive_datagram(d, MINE, time.monotonic())]
    assert [len(p) for p in packets] == [1040] * 8
    assert [p[40] for p in packets] == list(range(8))  # in order, each segment's own payload


@pytest.mark.parametrize("leaves", [False, True], ids=["native-joins", "wireguard-leaves"])
def test_super_packets_stay_whole_while_every_peer_is_native(leaves: bool) -> None:
    stage, other = stage_and_joiner(native=not leaves)
    if leaves:
        # the WireGuard peer goes again (as the native one it now is): whole once more
        (pk,) = other.peers
        stage.wg.add_peer(
            PeerConfig(other.public_key, endpoint=FAR, allowed_ips="10.0.0.2/32", native_mode=True)
        )
        other.add_peer(PeerConfig(pk, allowed_ips=f"{A_IP}/32", native_mode=True))
        assert sent(stage, 2)  # (a cut batch while it was WireGuard: the new mode's first)
    datagrams = sent(stage, 8)
    packets = [p for d, _ in datagrams for p in other.receive_datagram(d, MINE, time.monotonic())]
    # one native message: the super-packet whole (its virtio-net header before it)
    assert [len(p) for p in packets] == [10 + 8 * 1000 + 40]


def test_adding_updating_and_removing_a_peer_each_move_the_peers_version() -> None:
    wg = WireGuard(PrivateKey.generate())
    pk = PrivateKey.generate().public_key()
    seen = [wg.peers_version]
    wg.add_peer(PeerConfig(pk, allowed_ips="10.0.0.2/32", native_mode=True))
    seen.append(wg.peers_version)
    wg.add_peer(PeerConfig(pk, allowed_ips="10.0.0.2/32"))  # the same peer, no longer native
    seen.append(wg.peers_version)
    assert wg.remove_peer(pk)
    seen.append(wg.peers_version)
    assert not wg.remove_peer(pk)  # (nothing changed)
    assert len(set(seen)) == 4 and wg.peers_version == seen[-1]
