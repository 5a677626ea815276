"""What a remote sender can make a running interface log: a line per event it can repeat fast
(a handshake: one every 20 ms per peer) is bounded, not a line per event for weeks.

    ns a: veth 192.168.97.1 — a peer driven by hand (a protocol core on a plain UDP socket)
    ns b: veth 192.168.97.2 — the interface, 10.97.0.2/24
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import anyio
import pytest

from tests.helpers import ipv4_udp
from tests.linux.test_vpn_routing_behaviour import until
from tunflow import testing
from tunflow.wireguard import InterfaceConfig, PeerConfig, PrivateKey, open_interface
from tunflow.wireguard.protocol import WireGuard

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]

UA, UB = "192.168.97.1", "192.168.97.2"
OA, OB = "10.97.0.1", "10.97.0.2"


@pytest.fixture
def pair() -> Iterator[tuple[testing.Netns, testing.Netns]]:
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24")
        yield a, b


async def handshake(sock: socket.socket, key: PrivateKey, peer: PrivateKey, now: float) -> None:
    """One whole handshake with the interface at ``UB``, initiated by a fresh core holding
    ``key``: initiation, response, then the first data message (the key confirmation)."""
    wg = WireGuard(key)
    wg.add_peer(PeerConfig(peer.public_key(), endpoint=(UB, 51820), allowed_ips=[f"{OB}/32"]))
    wg.send_packet(ipv4_udp(OA, OB, 9, 9, b"x"), now)
    for data, dst in wg.datagrams_to_send(now):
        sock.sendto(data, dst)
    with anyio.fail_after(5):
        while True:  # (what the interface sent on an earlier session is passed over)
            await anyio.wait_readable(sock)
            data, addr = sock.recvfrom(2048)
            if data[0] == 2:  # the handshake response
                break
    wg.receive_datagram(data, addr, now)
    for data, dst in wg.datagrams_to_send(now):
        sock.sendto(data, dst)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_peer_repeating_handshakes_gets_a_bounded_number_of_info_lines(
    pair: tuple[testing.Netns, testing.Netns], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    config = InterfaceConfig(
        kb, listen_port=51820, peers=[PeerConfig(ka.public_key(), allowed_ips=[f"{OA}/32"])]
    )
    with a.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        sock.bind((UA, 0))
    rounds = 30
    with (
        sock,
        caplog.at_level(logging.INFO, logger="tunflow.wireguard"),
        anyio.fail_after(60),
    ):
        async with open_interface(
            config, name=testing.unique_name("lf"), addresses=[f"{OB}/24"], netns=b.name, uapi=False
        ) as iface:
            for _ in range(rounds):
                await handshake(sock, ka, kb, anyio.current_time())
                # past the interface's flood check (one initiation per peer every 20 ms)
                await anyio.sleep(0.025)
            await until(lambda: iface.statistics().wireguard.handshakes_completed == rounds)

            def lines() -> list[str]:
                return [
                    r.getMessage()
                    for r in caplog.records
                    if r.levelno >= logging.INFO and "handshake with" in r.getMessage()
                ]

            assert len(lines()) == 1
            # a while later, the next one is logged with the count of those not logged
            iface.skip_time(3600)
            await handshake(sock, ka, kb, anyio.current_time())
            await until(lambda: iface.statistics().wireguard.handshakes_completed == rounds + 1)
            assert len(lines()) == 2
            assert f"{rounds - 1} more" in lines()[1]
