"""The link watch of a running interface from its first line: a link cycled before the
watch's worker thread has subscribed (``ip link set wg0 down; … up`` as the block begins, a
network manager reacting to the new interface) still gets its routes and addresses back; and
catching up and a reload change the routes one at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import attrs
import pytest

from tests.linux.test_vpn_default_route import default_peer
from tests.linux.test_vpn_routing_behaviour import in_table, until
from tunflow import testing
from tunflow.wireguard import _routing, open_interface

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


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_routes_are_put_back_and_reloaded_one_at_a_time(
    netns_pair: tuple[testing.Netns, testing.Netns], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the watch's catch-up as the block begins and a reload in the block's first line each
    # change the routes in a worker thread: at the same time, a route the reload removes could
    # be put back by a restore that listed it just before (and left for good), or the restore's
    # listing could meet the reload's change of the same set
    a, _ = netns_pair
    spans: dict[str, list[tuple[float, float]]] = {"restore": [], "update": []}

    def spied(method: str) -> Callable[..., Any]:
        real = getattr(_routing.Routes, method)

        def run(self: _routing.Routes, *args: Any) -> Any:
            start = time.monotonic()
            try:
                time.sleep(0.4)  # long enough that the two would overlap
                return real(self, *args)
            finally:
                spans[method].append((start, time.monotonic()))

        return run

    monkeypatch.setattr(_routing.Routes, "restore", spied("restore"))
    monkeypatch.setattr(_routing.Routes, "update", spied("update"))
    config = default_peer(allowed_ips="10.96.0.0/24")
    wider = attrs.evolve(
        config, peers=[attrs.evolve(config.peers[0], allowed_ips="10.96.0.0/24, 10.95.0.0/24")]
    )
    name = testing.unique_name("lr")
    with anyio.fail_after(30):
        async with open_interface(config, name=name, netns=a.name, uapi=False) as iface:
            changes = await iface.sync(wider, fwmark=False, routes=True)
            assert changes.refused == ()
            await until(lambda: bool(spans["restore"]))
    assert len(spans["update"]) == 1 and len(spans["restore"]) == 1
    (u0, u1), (r0, r1) = spans["update"][0], spans["restore"][0]
    assert u1 <= r0 or r1 <= u0, "a restore ran during the reload"
