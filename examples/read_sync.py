"""Print every packet that arrives on a new TUN device (blocking code).

sudo python examples/read_sync.py
ping -c 3 10.78.0.2        # in another shell
"""

from __future__ import annotations

import argparse

from tunflow import DeviceBuilder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ipv4", default="10.78.0.1/24")
    parser.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    args = parser.parse_args()
    address, prefix = args.ipv4.split("/")
    with DeviceBuilder().ipv4(address, int(prefix)).build_sync() as dev:
        print(
            f"ready {dev.name()} mtu={dev.mtu()} addresses={[str(a) for a in dev.addresses()]}",
            flush=True,
        )
        seen = 0
        while not args.count or seen < args.count:
            packet = dev.recv()
            seen += 1
            print(f"{len(packet)} bytes: {packet[:20].hex()}", flush=True)


if __name__ == "__main__":
    main()
