"""Several IPv4 and IPv6 addresses and routes, added, listed and removed at run time.

sudo python examples/addresses.py
"""

from __future__ import annotations

from tunflow import DeviceBuilder


def main() -> None:
    builder = (
        DeviceBuilder()
        .ipv4("10.82.0.1", 24)
        .ipv4("10.82.1.1", "255.255.255.0")
        .ipv6("fd82::1", 64)
        .route("203.0.113.0/24")
    )
    with builder.build_sync() as dev:
        print("built:", dev.name(), sorted(map(str, dev.addresses())))
        dev.add_address_v4("10.82.2.1", 24)
        dev.add_address_v6("fd82:1::1", 64)
        dev.add_route("198.51.100.0/24")
        dev.add_route("2001:db8:82::/48")
        print("after adding:", sorted(map(str, dev.addresses())))
        dev.remove_address("10.82.1.1")
        dev.remove_address("fd82::1")
        dev.remove_route("203.0.113.0/24")
        print("after removing:", sorted(map(str, dev.addresses())))
        print("routes:", sorted(str(r.destination) for r in dev.routes()))


if __name__ == "__main__":
    main()
