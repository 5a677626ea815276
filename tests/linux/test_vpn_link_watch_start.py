"""The link watch of a running interface from its first line: a link cycled before the
watch's worker thread has subscribed (``ip link set wg0 down; … up`` as the block begins, a
network manager reacting to the new interface) still gets its routes and addresses back.
"""

from __future__ import annotations

import anyio
import pytest

from tests.linux.test_vpn_default_route import default_peer
from tests.linux.test_vpn_routing_behaviour import in_table, until
from tunflow import testing
from tunflow.wireguard import open_interface

pytestmark = pytest.mark.needs_root


def v6_addresses(ns: testing.Netns, name: str) -> list[str]:
    found = ns.ip_json("-6", "address", "show", "dev", name, "scope", "global")
    infos = [a for link in found for a in link.get("addr_info", []) if "local" in a]
    return [f"{a['local']}/{a['prefixlen']}" for a in infos]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_link_cycled_before_the_watch_subscribed_gets_its_routes_back(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    a, _ = netns_pair
    name = testing.unique_name("ls")
    config = default_peer(allowed_ips="10.96.0.0/24")
    with anyio.fail_after(30):
        async with open_interface(
            config, name=name, addresses=["fd42:96::1/64"], netns=a.name, uapi=False
        ):
            # the block's first line: no task of the interface has run yet, so the kernel's
            # notifications of these two go to no subscriber
            a.run("ip", "link", "set", name, "down")
            assert in_table(a, 254) == [] and v6_addresses(a, name) == []
            a.run("ip", "link", "set", name, "up")
            await until(lambda: in_table(a, 254) == [("10.96.0.0/24", name)])
            await until(lambda: v6_addresses(a, name) == ["fd42:96::1/64"])
