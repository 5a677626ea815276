"""Two WireGuard interfaces, each in its own network namespace, talking through their tunnel.

One asyncio program runs both ends with ``open_interface(..., netns=...)``: new keys, a peer
each, a handshake (started by A's persistent keepalive as the interface comes up), then
whatever the namespaces send between 10.66.0.1 and 10.66.0.2 goes through the tunnel,
encrypted, over the underlay that joins them — here a veth pair you make first:

    sudo ip netns add vpa; sudo ip netns add vpb
    sudo ip link add va netns vpa type veth peer name vb netns vpb
    sudo ip -n vpa addr add 192.168.66.1/24 dev va; sudo ip -n vpa link set va up
    sudo ip -n vpb addr add 192.168.66.2/24 dev vb; sudo ip -n vpb link set vb up
    sudo .venv/bin/python examples/vpn_pair.py vpa vpb 192.168.66.2
    sudo ip netns exec vpa ping -c 3 10.66.0.2      # in another shell; and `wg show vpna`

It prints each side's counters when it stops (after ``--seconds``, on Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import math
import signal

import anyio

from tunflow.wireguard import InterfaceConfig, PeerConfig, PrivateKey, open_interface


async def main(ns_a: str, ns_b: str, underlay_b: str, names: list[str], seconds: float) -> None:
    key_a, key_b = PrivateKey.generate(), PrivateKey.generate()
    side_a = InterfaceConfig(
        key_a,
        peers=[
            PeerConfig(
                key_b.public_key(),
                endpoint=f"{underlay_b}:51820",  # B's address on the underlay
                allowed_ips="10.66.0.2/32",  # what goes to B through the tunnel
                persistent_keepalive=25,
            )
        ],
    )
    # B listens on a known port and learns A's endpoint from the handshake
    side_b = InterfaceConfig(
        key_b, listen_port=51820, peers=[PeerConfig(key_a.public_key(), allowed_ips="10.66.0.1/32")]
    )
    async with (
        open_interface(side_b, name=names[1], addresses=["10.66.0.2/24"], netns=ns_b) as b,
        open_interface(side_a, name=names[0], addresses=["10.66.0.1/24"], netns=ns_a) as a,
    ):
        await a.wait_handshake(key_b.public_key())
        print(f"ready {a.name} 10.66.0.1 <-> {b.name} 10.66.0.2", flush=True)
        with (
            anyio.move_on_after(seconds or math.inf),
            anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals,
        ):
            async for _ in signals:
                break  # then both interfaces go down, everything they made removed
        for side in (a, b):
            s = side.statistics().wireguard
            print(
                f"{side.name}: {s.rx_packets} messages in, {s.tx_packets} out, "
                f"{s.handshakes_completed} handshake(s), {s.dropped} dropped",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("netns_a", help="A's network namespace")
    parser.add_argument("netns_b", help="B's network namespace")
    parser.add_argument("underlay_b", help="B's address on the link between them")
    parser.add_argument("--names", nargs=2, default=["vpna", "vpnb"], metavar=("A", "B"))
    parser.add_argument("--seconds", type=float, default=0, help="stop after (0: on a signal)")
    args = parser.parse_args()
    anyio.run(main, args.netns_a, args.netns_b, args.underlay_b, args.names, args.seconds)
