"""Routes for AllowedIPs off Linux (``_routing.add_routes`` / ``update_routes`` through the
device, a :class:`DeviceRoutes`), run "on" macOS, the BSDs and Windows through the fake
system-call layer (:func:`~tunflow.platform.fake.pretend_platform`).

What is asserted is the fake's route table — what the OS would hold — not the calls made. The
kernel side on Linux is in ``tests/linux/test_vpn_cli.py`` and
``tests/linux/test_vpn_default_route.py``.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from ipaddress import ip_network

import pytest

from tunflow import AsyncDevice, ConfigError, DeviceBuilder
from tunflow.platform import _bsd
from tunflow.platform.fake import FakeSyscalls, pretend_platform
from tunflow.transport import UDPTransport
from tunflow.wireguard._routing import DeviceRoutes, Network, add_routes, update_routes
from tunflow.wireguard.protocol import PeerConfig, PrivateKey, WireGuard

PLATFORMS = ["darwin", "freebsd", "openbsd", "netbsd", "windows"]
NAME = "wgtest"

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    # the device's calls run in worker threads: one event loop is enough here
    return "asyncio"


@pytest.fixture(params=PLATFORMS)
def fake(request: pytest.FixtureRequest) -> Iterator[FakeSyscalls]:
    with pretend_platform(request.param) as made:
        assert isinstance(made, FakeSyscalls)
        try:
            yield made
        finally:
            made.close_all()


def nets(*text: str) -> set[Network]:
    return {ip_network(t) for t in text}


def _device(builder: DeviceBuilder | None = None) -> AsyncDevice:
    # 10.0.0.1/24: the BSD backends add its subnet route (associate_route), as ifconfig does
    builder = builder or DeviceBuilder()
    return builder.ipv4("10.0.0.1", 24).build_async()


def routed(fake: FakeSyscalls, device: AsyncDevice) -> set[Network]:
    """The prefixes the OS routes into ``device``: the fake's route table, not the device's
    answer."""
    index = device.if_index()
    if fake.platform == "windows":
        w = fake.windows
        luids = {luid for luid, row in w.interfaces.items() if row["index"] == index}
        return {route[1] for route in w.routes if route[0] in luids}
    return {route[0] for route in fake.routes if route[2] == index}


def _wireguard(*peers: tuple[str, ...]) -> WireGuard:
    wg = WireGuard(PrivateKey.generate())
    for allowed in peers:
        wg.add_peer(PeerConfig(PrivateKey.generate().public_key(), allowed_ips=allowed))
    return wg


def _refuse_next_route_add(fake: FakeSyscalls) -> None:
    """The OS refuses the next route added (not with "exists"): ENETUNREACH from PF_ROUTE,
    ERROR_INVALID_PARAMETER (87) from CreateIpForwardEntry2."""
    if fake.platform == "windows":
        fake.on("iphlpapi.CreateIpForwardEntry2", result=87, times=1)
    else:
        fake.fail(
            "write",
            errno.ENETUNREACH,
            when=lambda c: fake.fd_info(c.args[0]).family == _bsd.PF_ROUTE,
        )


async def test_up_routes_prefixes_in_the_main_table_and_skips_default_routes(
    fake: FakeSyscalls, caplog: pytest.LogCaptureFixture
) -> None:
    """``add_routes`` with a real WireGuard and transport: what a ``tunflow up`` does."""
    wg = _wireguard(("10.1.1.0/24", "0.0.0.0/0"), ("10.1.2.0/24", "fd01::/64"))
    transport = UDPTransport.bind(("127.0.0.1", 0))
    try:
        async with _device() as dev:
            before = routed(fake, dev)
            with caplog.at_level(logging.WARNING, logger="tunflow.wireguard"):
                routes = await add_routes(dev, wg, transport, table="auto", netns=None, name=NAME)
            assert isinstance(routes, DeviceRoutes) and routes.policy_table == 0
            assert routed(fake, dev) == before | nets("10.1.1.0/24", "10.1.2.0/24", "fd01::/64")
            assert "not adding the default route 0.0.0.0/0" in caplog.text
            # the default route's fwmark business is Linux's: nothing changed here
            assert wg.fwmark == 0
            await routes.aclose()
    finally:
        await transport.aclose()


async def test_up_refuses_a_table_off_linux(fake: FakeSyscalls) -> None:
    wg = _wireguard(("10.1.1.0/24",))
    transport = UDPTransport.bind(("127.0.0.1", 0))
    try:
        async with _device() as dev:
            before = routed(fake, dev)
            with pytest.raises(ConfigError, match="Table = 123"):
                await add_routes(dev, wg, transport, table=123, netns=None, name=NAME)
            # also with no AllowedIPs yet: else the first reload would meet it, after up
            # said nothing
            with pytest.raises(ConfigError, match="Table = 123"):
                await add_routes(dev, _wireguard(), transport, table=123, netns=None, name=NAME)
            assert routed(fake, dev) == before
    finally:
        await transport.aclose()


async def test_a_reload_adds_new_prefixes_and_removes_gone_ones(fake: FakeSyscalls) -> None:
    async with _device() as dev:
        before = routed(fake, dev)
        routes, _ = await update_routes(
            dev, None, nets("10.1.1.0/24", "10.1.3.0/24"), table="auto", netns=None, name=NAME
        )
        assert isinstance(routes, DeviceRoutes)
        kept, changes = await update_routes(
            dev,
            routes,
            nets("10.1.1.0/24", "10.1.2.0/24", "fd01::/64"),
            table="auto",
            netns=None,
            name=NAME,
        )
        assert kept is routes
        assert changes.added == (ip_network("10.1.2.0/24"), ip_network("fd01::/64"))
        assert changes.removed == (ip_network("10.1.3.0/24"),)
        assert changes.refused == ()
        assert routed(fake, dev) == before | nets("10.1.1.0/24", "10.1.2.0/24", "fd01::/64")
        # and back to none
        _, changes = await update_routes(dev, routes, set(), table="auto", netns=None, name=NAME)
        assert set(changes.removed) == nets("10.1.1.0/24", "10.1.2.0/24", "fd01::/64")
        assert routed(fake, dev) == before


async def test_a_reload_with_no_routes_wanted_makes_nothing(fake: FakeSyscalls) -> None:
    async with _device() as dev:
        routes, changes = await update_routes(dev, None, set(), table="auto", netns=None, name=NAME)
        assert routes is None and not changes
        with pytest.raises(ConfigError, match="Table = 123"):
            await update_routes(dev, None, nets("10.1.1.0/24"), table=123, netns=None, name=NAME)


async def test_routes_already_there_or_already_gone_are_fine(fake: FakeSyscalls) -> None:
    async with _device() as dev:
        routes, _ = await update_routes(
            dev, None, nets("10.1.1.0/24"), table="auto", netns=None, name=NAME
        )
        assert routes is not None
        # someone routed 10.1.2.0/24 into the device by hand, and removed 10.1.1.0/24
        await dev.add_route("10.1.2.0/24")
        await dev.remove_route("10.1.1.0/24")
        before = routed(fake, dev)
        _, changes = await update_routes(
            dev, routes, nets("10.1.2.0/24"), table="auto", netns=None, name=NAME
        )
        # the add found it there (DeviceExistsError): no addition, no refusal; the removal
        # found it gone (DeviceNotFoundError: ESRCH on the BSDs, ENOENT on Windows): removed
        assert changes.added == () and changes.refused == ()
        assert changes.removed == (ip_network("10.1.1.0/24"),)
        assert routed(fake, dev) == before
        # not ours: stays when the prefix leaves the file
        _, changes = await update_routes(dev, routes, set(), table="auto", netns=None, name=NAME)
        assert not changes
        assert ip_network("10.1.2.0/24") in routed(fake, dev)


async def test_a_reload_never_removes_a_route_that_was_there_before(fake: FakeSyscalls) -> None:
    """The device's own subnet route (10.0.0.0/24, which the BSD backends add with the address)
    and a route given to the builder (192.0.2.0/24) are in the AllowedIPs at up, then leave
    the file: they stay, only the route up added goes."""
    wg = _wireguard(("10.0.0.0/24", "192.0.2.0/24", "10.1.1.0/24"))
    transport = UDPTransport.bind(("127.0.0.1", 0))
    try:
        async with _device(DeviceBuilder().route("192.0.2.0/24")) as dev:
            before = routed(fake, dev)
            assert ip_network("192.0.2.0/24") in before
            if fake.platform != "windows":
                assert ip_network("10.0.0.0/24") in before
            routes = await add_routes(dev, wg, transport, table="auto", netns=None, name=NAME)
            assert isinstance(routes, DeviceRoutes)
            assert routed(fake, dev) == before | nets("10.0.0.0/24", "10.1.1.0/24")
            _, changes = await update_routes(
                dev, routes, nets("10.1.9.0/24"), table="auto", netns=None, name=NAME
            )
            gone = nets("10.1.1.0/24")
            if fake.platform == "windows":
                # no subnet route came with the address in this model: up added that one
                gone |= nets("10.0.0.0/24")
            assert set(changes.removed) == gone
            assert routed(fake, dev) == (before | nets("10.0.0.0/24", "10.1.9.0/24")) - gone
    finally:
        await transport.aclose()


async def test_a_refused_route_is_reported_not_raised(
    fake: FakeSyscalls, caplog: pytest.LogCaptureFixture
) -> None:
    async with _device() as dev:
        routes, _ = await update_routes(
            dev, None, nets("10.1.1.0/24"), table="auto", netns=None, name=NAME
        )
        assert routes is not None
        before = routed(fake, dev)
        _refuse_next_route_add(fake)
        with caplog.at_level(logging.WARNING, logger="tunflow.wireguard"):
            _, changes = await update_routes(
                dev,
                routes,
                nets("10.1.1.0/24", "10.1.2.0/24"),
                table="auto",
                netns=None,
                name=NAME,
            )
        assert changes.added == ()
        assert len(changes.refused) == 1 and changes.refused[0].startswith("add 10.1.2.0/24: ")
        assert "cannot add a route to 10.1.2.0/24" in caplog.text
        assert routed(fake, dev) == before
        # the next reload tries it again
        _, changes = await update_routes(
            dev, routes, nets("10.1.1.0/24", "10.1.2.0/24"), table="auto", netns=None, name=NAME
        )
        assert changes.added == (ip_network("10.1.2.0/24"),)
        assert routed(fake, dev) == before | nets("10.1.2.0/24")


async def test_a_default_route_new_to_the_file_is_warned_about_once(
    fake: FakeSyscalls, caplog: pytest.LogCaptureFixture
) -> None:
    async with _device() as dev:
        before = routed(fake, dev)
        routes, _ = await update_routes(
            dev, None, nets("10.1.1.0/24"), table="auto", netns=None, name=NAME
        )
        assert routes is not None
        with caplog.at_level(logging.WARNING, logger="tunflow.wireguard"):
            _, changes = await update_routes(
                dev, routes, nets("10.1.1.0/24", "::/0"), table="auto", netns=None, name=NAME
            )
            assert not changes  # nothing a restart would change either: not in restart
            assert "not adding the default route ::/0" in caplog.text
            caplog.clear()
            await update_routes(
                dev, routes, nets("10.1.1.0/24", "::/0"), table="auto", netns=None, name=NAME
            )
            assert "default route" not in caplog.text
        assert routed(fake, dev) == before | nets("10.1.1.0/24")
