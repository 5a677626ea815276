"""A TAP device with a pretend host behind it that answers ARP, neighbour solicitation and ping.

    sudo python examples/tap_responder.py
    arping -I <tap name> 10.81.0.2      # in another shell
    ping 10.81.0.2; ping -6 fd81::2

The kernel side of the TAP gets 10.81.0.1/24 and fd81::1/64; the program plays 10.81.0.2 and
fd81::2 with the MAC 02:00:00:81:00:02.
"""

from __future__ import annotations

import argparse
from ipaddress import IPv4Address, IPv6Address

import anyio
from responders import tap_reply

from tunflow import DeviceBuilder, Layer

HOST_MAC = bytes.fromhex("020000810002")


async def main(args: argparse.Namespace) -> None:
    builder = DeviceBuilder().layer(Layer.L2).mac_addr("02:00:00:81:00:01")
    if args.name:
        builder.name(args.name)
    builder.ipv4("10.81.0.1", 24).ipv6("fd81::1", 64)
    host4, host6 = IPv4Address("10.81.0.2"), IPv6Address("fd81::2")
    async with builder.build_async() as dev:
        print("ready", await dev.name(), await dev.mac_address(), flush=True)
        async for frame in dev:
            reply = tap_reply(frame, HOST_MAC, host4, host6)
            if reply is not None:
                await dev.send(reply)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=None)
    parser.add_argument("--backend", choices=["asyncio", "uvloop", "trio"], default="asyncio")
    args = parser.parse_args()
    options = {"use_uvloop": True} if args.backend == "uvloop" else {}
    try:
        anyio.run(
            main,
            args,
            backend="trio" if args.backend == "trio" else "asyncio",
            backend_options=options,
        )
    except KeyboardInterrupt:
        pass
