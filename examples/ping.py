"""A ping responder on a TUN device: answers ICMP and ICMPv6 echo for every address routed in.

    sudo python examples/ping.py --backend trio
    ping 10.77.0.2          # in another shell: answered by this program, through the TUN
    ping -6 fd77::2

``--backend`` picks the blocking face (``sync``) or the async one on ``asyncio``, ``uvloop`` or
``trio`` — the same code serves all three.
"""

from __future__ import annotations

import argparse
import sys

import anyio
from responders import echo_reply

from tunflow import AsyncDevice, DeviceBuilder, SyncDevice


def build(args: argparse.Namespace) -> DeviceBuilder:
    builder = DeviceBuilder().mtu(1500)
    if args.name:
        builder.name(args.name)
    address, prefix = args.ipv4.split("/")
    builder.ipv4(address, int(prefix))
    address6, prefix6 = args.ipv6.split("/")
    return builder.ipv6(address6, int(prefix6))


def serve_sync(dev: SyncDevice) -> None:
    print("ready", dev.name(), flush=True)
    while True:
        reply = echo_reply(dev.recv())
        if reply is not None:
            dev.send(reply)


async def serve_async(dev: AsyncDevice) -> None:
    print("ready", await dev.name(), flush=True)
    async for packet in dev:
        reply = echo_reply(packet)
        if reply is not None:
            await dev.send(reply)


async def main_async(args: argparse.Namespace) -> None:
    async with build(args).build_async() as dev:
        await serve_async(dev)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sync", "asyncio", "uvloop", "trio"], default="sync")
    parser.add_argument("--name", default=None)
    parser.add_argument("--ipv4", default="10.77.0.1/24")
    parser.add_argument("--ipv6", default="fd77::1/64")
    args = parser.parse_args()
    try:
        if args.backend == "sync":
            with build(args).build_sync() as dev:
                serve_sync(dev)
        else:
            backend = "trio" if args.backend == "trio" else "asyncio"
            options = {"use_uvloop": True} if args.backend == "uvloop" else {}
            anyio.run(main_async, args, backend=backend, backend_options=options)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
