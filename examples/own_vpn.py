"""A WireGuard peer put together from tunflow's pieces, not ``tunflow up``.

A TUN device (``AsyncDevice``), a UDP socket (``UDPTransport``), the sans-I/O protocol
(``WireGuard``) and the port that joins them (``WireGuardPort``) in a tunnel (``open_tunnel``),
beside the port's timer task (``run_timers``): what ``open_interface`` does, minus policy
routing, ``wg`` control socket and reloads. It speaks WireGuard, so the other end may be ``wg-quick``, ``tunflow up``
or this program again:

    tunflow genkey > a.key; tunflow genkey > b.key      # (wg genkey works too)
    sudo python examples/own_vpn.py --private-key a.key --peer "$(tunflow pubkey < b.key)" \\
        --endpoint 192.0.2.2:51820 --allowed-ips 10.66.0.2/32 --address 10.66.0.1/24
    sudo python examples/own_vpn.py --private-key b.key --peer "$(tunflow pubkey < a.key)" \\
        --listen-port 51820 --allowed-ips 10.66.0.1/32 --address 10.66.0.2/24 --backend trio
    ping 10.66.0.2                                       # on the first machine

The side with ``--endpoint`` starts the handshake (``--keepalive``, 25 s by default, sends a
keepalive as it comes up); the other learns its endpoint from it. AllowedIPs outside the
``--address`` networks are routed into the device; a default route (``0.0.0.0/0``) needs the
policy routing ``tunflow up`` sets up, so this program refuses it. Ctrl-C or SIGTERM stops it:
it prints its counters, and the device and socket are gone.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import time
from pathlib import Path

import anyio

from tunflow import DeviceBuilder
from tunflow.pipeline import open_tunnel
from tunflow.transport import UDPTransport
from tunflow.wireguard import PeerConfig, PrivateKey, WireGuard, WireGuardPort


async def main(key: PrivateKey, args: argparse.Namespace) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        peer = PeerConfig(
            args.peer,
            endpoint=args.endpoint,
            allowed_ips=args.allowed_ips,
            persistent_keepalive=args.keepalive if args.endpoint else 0,
        )
        addresses = [ipaddress.ip_interface(a) for a in args.address]
        builder = DeviceBuilder().mtu(1420)
        if args.name:
            builder.name(args.name)
        for a in addresses:
            if a.version == 4:
                builder.ipv4(a)
            else:
                builder.ipv6(a)
        for net in peer.allowed_ips:
            if net.prefixlen == 0:
                raise SystemExit("a default route needs policy routing: use tunflow up")
            if not any(  # on-link when inside an address's network; else routed
                net.network_address in a.network and a.network.prefixlen <= net.prefixlen
                for a in addresses
            ):
                builder.route(net)

        wg = WireGuard(key, wall_clock=time.time)
        wg.add_peer(peer)
        async with (
            builder.build_async() as dev,
            UDPTransport.bind(("::", args.listen_port)) as udp,  # IPv4 and IPv6 peers
        ):
            name = await dev.name()
            wg.listen_port = udp.local_address[1]  # the port picked, for 0
            port = WireGuardPort(wg, udp)
            port.on_event(lambda event: print(type(event).__name__, flush=True))
            async with open_tunnel(dev, port), anyio.create_task_group() as tg:
                # retransmits, keepalives, rekeying; up: a persistent keepalive goes out now
                await tg.start(port.run_timers)
                print("ready", name, "port", wg.listen_port, flush=True)
                async for _ in signals:
                    break
                tg.cancel_scope.cancel()
            s = wg.statistics()
            print(
                f"{name}: {s.rx_packets} messages in, {s.tx_packets} out, "
                f"{s.handshakes_completed} handshake(s), {s.dropped} dropped",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--private-key", required=True, help="a file holding the private key")
    parser.add_argument("--peer", required=True, help="the peer's public key (base64)")
    parser.add_argument("--endpoint", help="the peer's HOST:PORT (else learnt from it)")
    parser.add_argument("--allowed-ips", required=True, help="e.g. 10.66.0.2/32,fd66::2/128")
    parser.add_argument("--address", action="append", default=[], help="CIDR, repeatable")
    parser.add_argument("--listen-port", type=int, default=0, help="UDP port (0: any)")
    parser.add_argument("--keepalive", type=int, default=25, help="seconds (with --endpoint)")
    parser.add_argument("--name", help="the device's name")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    key = PrivateKey.from_base64(Path(args.private_key).read_text())
    anyio.run(main, key, args, backend=args.backend)
