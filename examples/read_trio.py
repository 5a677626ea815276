"""Print every packet that arrives on a new TUN device, on trio.

sudo python examples/read_trio.py
ping -c 3 10.80.0.2        # in another shell
"""

from __future__ import annotations

import argparse

import trio

from tunflow import DeviceBuilder


async def main(address: str, prefix: int, count: int) -> None:
    async with DeviceBuilder().ipv4(address, prefix).build_async() as dev:
        print(f"ready {await dev.name()}", flush=True)
        seen = 0
        async for packet in dev:
            seen += 1
            print(f"{len(packet)} bytes: {packet[:20].hex()}", flush=True)
            if count and seen >= count:
                break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ipv4", default="10.80.0.1/24")
    parser.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    args = parser.parse_args()
    address, prefix = args.ipv4.split("/")
    trio.run(main, address, int(prefix), args.count)
