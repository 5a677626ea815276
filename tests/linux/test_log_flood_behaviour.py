"""What a remote sender or the host's other links can make a running interface log: a line
per event that can repeat fast (a handshake: one every 20 ms per peer; notifications lost to a
burst of link changes) is bounded, or not written when nothing happened to the interface.

    ns a: veth 192.168.97.1 — a peer driven by hand (a protocol core on a plain UDP socket)
    ns b: veth 192.168.97.2 — the interface, 10.97.0.2/24
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import socket
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.helpers import ipv4_udp
from tests.linux.test_vpn_routing_behaviour import until
from tunflow import testing
from tunflow.platform.linux import netlink
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


def peer_at_ua(
    a: testing.Netns,
) -> tuple[PrivateKey, PrivateKey, InterfaceConfig, socket.socket]:
    """A peer's key and the interface's, the interface's configuration with that peer (its
    AllowedIPs ``OA``), and the peer's socket, bound to ``UA`` in ``a``."""
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    config = InterfaceConfig(
        kb, listen_port=51820, peers=[PeerConfig(ka.public_key(), allowed_ips=[f"{OA}/32"])]
    )
    with a.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        sock.bind((UA, 0))
    return ka, kb, config, sock


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
    ka, kb, config, sock = peer_at_ua(a)
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


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_link_notifications_lost_to_other_links_churn_log_nothing(
    pair: tuple[testing.Netns, testing.Netns],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # the link watch hears every link of the namespace: a burst of changes to others (a
    # container runtime, a flapping NIC) not read in time is lost notifications, after which
    # the interface's own state is asked afresh; it never went down, nothing is put back
    _, b = pair
    lost: list[None] = []
    real = netlink.LinkWatch.changes

    def changes(self: netlink.LinkWatch) -> list[netlink.LinkInfo | None]:
        seen = real(self)
        lost.extend(c for c in seen if c is None)
        return seen

    monkeypatch.setattr(netlink.LinkWatch, "changes", changes)
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    config = InterfaceConfig(
        kb, listen_port=51820, peers=[PeerConfig(ka.public_key(), allowed_ips=["10.98.0.0/24"])]
    )
    batch = tmp_path / "churn"
    batch.write_text("".join(f"link set lo txqueuelen {1000 + k % 2}\n" for k in range(2000)))
    with caplog.at_level(logging.INFO, logger="tunflow.wireguard"), anyio.fail_after(60):
        async with open_interface(
            config, name=testing.unique_name("lf"), addresses=[f"{OB}/24"], netns=b.name, uapi=False
        ):
            await anyio.sleep(0.3)  # (the watch subscribed)
            for _ in range(3):
                b.run("ip", "-batch", str(batch))  # the event loop blocked meanwhile
                await anyio.sleep(0.3)
    assert lost, "no notification was lost"
    assert not [r for r in caplog.records if "the link is up again" in r.getMessage()]


async def out_of_descriptors(path: str, seconds: float) -> None:
    """Hold this process out of file descriptors for ``seconds``: the limit lowered to what is
    open and the rest taken by clients of the control socket ``path`` waiting in its backlog;
    then everything as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    clients: list[socket.socket] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
    try:
        with contextlib.suppress(OSError):  # (EMFILE: all taken)
            while True:
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
                clients.append(c)
                with contextlib.suppress(BlockingIOError):
                    c.connect(path)
        await anyio.sleep(seconds)
    finally:
        for c in clients:
            c.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_the_control_socket_outlives_running_out_of_descriptors_and_says_so_once(
    pair: tuple[testing.Netns, testing.Netns], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    # out of file descriptors, each accept fails while the clients wait in the backlog: it is
    # retried every 0.1 s, logged the first time only, and served again once there are some
    _, b = pair
    path = str(tmp_path / "wg.sock")
    config = InterfaceConfig(PrivateKey.generate(), listen_port=51820)
    with caplog.at_level(logging.INFO, logger="tunflow.wireguard"), anyio.fail_after(30):
        async with open_interface(config, name=testing.unique_name("lf"), netns=b.name, uapi=path):
            await anyio.sleep(0.2)
            await out_of_descriptors(path, 1.5)
            reply = await uapi_get(path)
            assert reply.startswith("private_key=") and reply.endswith("errno=0\n\n")
    failed = [r for r in caplog.records if "UAPI accept failed" in r.getMessage()]
    assert len(failed) == 1


async def uapi_get(path: str) -> str:
    """The control socket's answer to ``get=1``."""
    async with await anyio.connect_unix(path) as stream:
        await stream.send(b"get=1\n\n")
        reply = b""
        while not reply.endswith(b"\n\n"):
            reply += await stream.receive()
    return reply.decode()
