"""WireGuardPort without a device (loopback UDP, no root): super-packets read whole for native
peers are split for a WireGuard peer that joins later."""

from __future__ import annotations

import anyio
import pytest
from wgpair import A_IP, ip4

from tunflow.offload import GROTable
from tunflow.packet import PacketBatch
from tunflow.transport import DatagramBatch, UDPTransport
from tunflow.wireguard import PeerConfig, PrivateKey, WireGuard, WireGuardPort

pytestmark = pytest.mark.anyio


def tcp_super_packet(dst: str, segments: int) -> PacketBatch:
    """One TSO super-packet (virtio-net header in the headroom) made by coalescing segments."""
    import socket
    import struct

    from tunflow.packet import checksum, pseudo_header_checksum_no_fold

    src_b, dst_b = socket.inet_aton(A_IP), socket.inet_aton(dst)
    plain = PacketBatch(1 << 20)
    for i in range(segments):
        seg = bytearray(struct.pack("!HHIIBBHHH", 1, 2, 1 + 1000 * i, 1, 0x50, 0x10, 1000, 0, 0))
        seg += bytes([i]) * 1000
        cs = ~checksum(seg, pseudo_header_checksum_no_fold(6, src_b, dst_b, len(seg))) & 0xFFFF
        seg[16:18] = struct.pack("!H", cs)
        plain.append(bytes(ip4(A_IP, dst, bytes(seg), proto=6)))
    out = PacketBatch(1 << 20)
    GROTable().coalesce(plain, out)
    assert len(out) == 1 and out.vnet_hdr
    return out


async def test_a_wireguard_peer_joining_native_ones_gets_mtu_packets() -> None:
    async with UDPTransport.bind("127.0.0.1:0") as mine, UDPTransport.bind("127.0.0.1:0") as far:
        native_key, wg_key = PrivateKey.generate(), PrivateKey.generate()
        wg = WireGuard(PrivateKey.generate())
        wg.add_peer(
            PeerConfig(native_key.public_key(), allowed_ips="10.1.0.0/16", native_mode=True)
        )
        port = WireGuardPort(wg, mine, whole=True, device_offload=True, mtu=1420, clock=lambda: 0.0)
        assert port.offload.vnet_hdr
        # a WireGuard peer joins (wg set) with an endpoint and a session of its own
        wg.add_peer(
            PeerConfig(wg_key.public_key(), endpoint=far.local_address, allowed_ips="10.0.0.2/32")
        )
        other = WireGuard(wg_key)
        other.add_peer(PeerConfig(wg.public_key, allowed_ips=f"{A_IP}/32"))
        port.peers_changed()
        wg.send_packet(ip4(A_IP, "10.0.0.2"), 0.0)  # staged; the initiation is queued
        for d, _ in wg.datagrams_to_send():
            other.receive_datagram(d, mine.local_address, 0.0)
        for d, _ in other.datagrams_to_send():
            wg.receive_datagram(d, far.local_address, 0.0)
        wg.datagrams_to_send()
        await port.send_batch(tcp_super_packet("10.0.0.2", 8))
        got = DatagramBatch(1 << 20)
        with anyio.fail_after(5):
            while len(got) < 8:
                await far.recv_batch(got)
        assert all(n <= 1420 + 32 for n in got.lengths)
        packets = [p for d, a in got.to_pairs() for p in other.receive_datagram(d, a, 0.0)]
        assert len(packets) == 8 and all(len(p) == 1040 for p in packets)
