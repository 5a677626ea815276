"""WireGuardPort on loopback (no root) where the socket is the bottleneck: a lone packet the
express path could not send because the socket buffer was full is counted once, when the task
sends it; and a socket that overflows — the kernel dropping datagrams, or receive after
receive finding more waiting than a batch holds — makes the interface answer handshake
initiations with a cookie reply for a while (docs/vpn.md, "Under load")."""

from __future__ import annotations

import anyio
import pytest
from wgpair import A_IP, B_IP, batch_of, ip4

from tunflow.packet import PacketBatch
from tunflow.transport import DatagramBatch, UDPTransport
from tunflow.wireguard import PeerConfig, PrivateKey, WireGuard, WireGuardPort

pytestmark = pytest.mark.anyio

INITIATION, RESPONSE, COOKIE_REPLY = 1, 2, 3


async def received(transport: UDPTransport, count: int = 1) -> list[bytes]:
    """The next ``count`` datagrams ``transport`` receives (bounded wait)."""
    got = DatagramBatch(1 << 20)
    with anyio.fail_after(5):
        while len(got) < count:
            await transport.recv_batch(got)
    return [d for d, _ in got.to_pairs()]


async def test_a_lone_packet_the_full_socket_did_not_take_is_counted_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``_express_send``: when the socket buffer is full it returns ``False`` and "the task
    then sends the packet, waiting for room": that packet went out once, so the port counts
    one packet and the peer's ``tx_bytes`` (``wg show``'s transfer, "only what was sent")
    one datagram — not the copy sealed for the socket that did not take it as well."""
    async with UDPTransport.bind("127.0.0.1:0") as mine, UDPTransport.bind("127.0.0.1:0") as far:
        key, far_key = PrivateKey.generate(), PrivateKey.generate()
        wg = WireGuard(key)
        wg.add_peer(
            PeerConfig(far_key.public_key(), endpoint=far.local_address, allowed_ips=f"{B_IP}/32")
        )
        other = WireGuard(far_key)
        other.add_peer(PeerConfig(wg.public_key, allowed_ips=f"{A_IP}/32"))
        wg.send_packet(ip4(A_IP, B_IP), 0.0)  # staged; the initiation is queued
        for d, _ in wg.datagrams_to_send():
            other.receive_datagram(d, mine.local_address, 0.0)
        for d, _ in other.datagrams_to_send():
            wg.receive_datagram(d, far.local_address, 0.0)
        wg.datagrams_to_send()  # (the staged packet: not part of this test)
        port = WireGuardPort(wg, mine, mtu=1420, clock=lambda: 0.0)
        before = wg.peer_statistics(far_key.public_key()).tx_bytes
        wg_before = wg.statistics().tx_bytes

        real = mine.send_batch_nowait
        full = [True]

        def send_batch_nowait(batch: PacketBatch, *, drop_when_full: bool = True) -> int:
            if full[0] and not drop_when_full:
                full[0] = False
                return -1  # the socket buffer is full: nothing went, nothing counted
            return real(batch, drop_when_full=drop_when_full)

        monkeypatch.setattr(mine, "send_batch_nowait", send_batch_nowait)
        packet = ip4(A_IP, B_IP, b"z" * 100)
        assert not port._express_send(batch_of([packet]))
        assert not full[0]  # the full socket was met
        assert port.statistics().tx_packets == 0
        await port.send_batch(batch_of([packet]))
        (datagram,) = await received(far)
        assert other.receive_datagram(datagram, mine.local_address, 0.0) == [packet]
        stats = port.statistics()
        assert (stats.tx_packets, stats.tx_bytes) == (1, len(packet))
        after = wg.peer_statistics(far_key.public_key()).tx_bytes
        assert after - before == len(datagram)
        assert wg.statistics().tx_bytes - wg_before == len(datagram)
