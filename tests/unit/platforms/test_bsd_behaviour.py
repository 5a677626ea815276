"""What the BSD backends promise at the edges: routing-dump parsing, the routes of one
interface, persist, the subnet route of an address, MTU bounds, flags and close."""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, ip_network
from typing import Any

import attrs
import pytest

from tunflow import ConfigError, DeviceBuilder, DeviceNotFoundError, UnsupportedError
from tunflow.netconfig.device import DeviceConfig
from tunflow.platform import _bsd, freebsd, openbsd
from tunflow.platform._base import Route
from tunflow.platform.fake import FakeSyscalls

Fake = Callable[[str], FakeSyscalls]
Z = b"\0"
SIOCIFDESTROY = 0x80206979  # _IOW('i', 121, struct ifreq), 32-byte ifreq


def config(**kw: Any) -> DeviceConfig:
    base = DeviceBuilder().ipv4("10.0.0.1", 24).mtu(1400).config()
    return attrs.evolve(base, **kw)


def sin(*octets: int) -> bytes:
    return bytes([16, 2, 0, 0, *octets]) + Z * 8


def darwin_message(flags: int, addrs: int, body: bytes, index: int = 4) -> bytes:
    header = struct.pack("<HBBH2xiiiiiiI", 92 + len(body), 5, 4, index, flags, addrs, 0, 0, 0, 0, 0)
    return header + Z * 56 + body


# -- routing dumps -----------------------------------------------------------------------------


def test_a_default_route_with_an_empty_netmask_is_slash_zero() -> None:
    # the kernel hands a default route's netmask as a sockaddr of sa_len 0 (all its bytes are
    # zero): the route is 0.0.0.0/0, not a host route to 0.0.0.0
    body = sin(0, 0, 0, 0) + sin(10, 0, 0, 2) + Z * 4
    (entry,) = _bsd.parse_route_messages(_bsd.DARWIN, darwin_message(0x803, 0x7, body))
    assert entry.destination == ip_network("0.0.0.0/0")
    assert entry.gateway == IPv4Address("10.0.0.2")


def test_a_message_claiming_more_sockaddrs_than_it_holds_is_not_an_index_error() -> None:
    # RTA_DST | RTA_GATEWAY | RTA_NETMASK but only the destination present
    (entry,) = _bsd.parse_route_messages(_bsd.DARWIN, darwin_message(0x805, 0x7, sin(10, 0, 0, 9)))
    assert entry.destination == ip_network("10.0.0.9/32") and entry.gateway is None


def test_a_zero_message_length_ends_the_dump() -> None:
    good = darwin_message(0x805, 0x3, sin(10, 0, 0, 9) + Z * 4)
    assert len(_bsd.parse_route_messages(_bsd.DARWIN, good + Z * 200)) == 1


def test_a_truncated_link_sockaddr_is_no_address() -> None:
    assert _bsd.parse_sockaddr(_bsd.DARWIN, bytes([5, _bsd.AF_LINK, 4, 0, 0])) is None


def test_every_fe80_10_address_has_its_kame_zone_cleared() -> None:
    # KAME IN6_IS_ADDR_LINKLOCAL: s6_addr[0] == 0xfe && (s6_addr[1] & 0xc0) == 0x80
    raw = bytes([28, 30, 0, 0, 0, 0, 0, 0, 0xFE, 0xBF, 0, 7]) + Z * 11 + b"\1" + Z * 4
    assert str(_bsd.parse_sockaddr(_bsd.DARWIN, raw)) == "febf::1"


# -- the routes of one interface ---------------------------------------------------------------


def test_routes_lists_only_this_interfaces_routes(make_fake: Fake) -> None:
    fake = make_fake("freebsd")
    iface, queue = freebsd.open_device(config(name="tun0"), syscalls=fake)
    other = fake.add_interface("tun7")
    fake.routes.append((ip_network("198.51.100.0/24"), None, other.index))
    assert iface.routes() == [Route(ip_network("10.0.0.0/24"))]
    queue.close()
    iface.close()


def test_the_subnet_route_of_a_slash_31_address_is_listed(make_fake: Fake) -> None:
    # RFC 3021: on a /31 the network address is a host address; only the kernel's host route
    # (RTF_HOST) to an own address is left out, not the subnet route that starts there
    fake = make_fake("freebsd")
    built = DeviceBuilder().name("tun0").ipv4("10.0.0.0", 31).config()
    iface, queue = freebsd.open_device(built, syscalls=fake)
    assert iface.routes() == [Route(ip_network("10.0.0.0/31"))]
    queue.close()
    iface.close()


# -- persist, associate_route, MTU, flags, close -----------------------------------------------


@pytest.mark.parametrize("module", [freebsd, openbsd], ids=["freebsd", "openbsd"])
def test_persist_keeps_the_interface_after_close(make_fake: Fake, module: Any) -> None:
    fake = make_fake(module.__name__.rsplit(".", 1)[1])
    iface, queue = module.open_device(config(name="tun3", persist=True), syscalls=fake)
    queue.close()
    iface.close()
    assert "tun3" in fake.interfaces
    assert fake.ioctls(SIOCIFDESTROY) == []


def test_a_second_address_in_the_same_subnet_is_added(make_fake: Fake) -> None:
    # its subnet route exists already (EEXIST from RTM_ADD): not an error
    fake = make_fake("freebsd")
    iface, queue = freebsd.open_device(config(name="tun0"), syscalls=fake)
    iface.add_address(IPv4Interface("10.0.0.7/24"))
    assert IPv4Interface("10.0.0.7/24") in iface.addresses()
    queue.close()
    iface.close()


def test_an_address_whose_subnet_route_fails_is_taken_back(make_fake: Fake) -> None:
    fake = make_fake("freebsd")
    iface, queue = freebsd.open_device(config(name="tun0"), syscalls=fake)
    fake.fail("write", errno.ENOBUFS, when=lambda c: c.args[0] != queue.fileno())
    with pytest.raises(OSError):
        iface.add_address(IPv4Interface("10.9.0.1/24"))
    assert iface.addresses() == [IPv4Interface("10.0.0.1/24")]
    queue.close()
    iface.close()


def test_ipv6_mtu_bound_is_1280_and_link_local_is_exempt(make_fake: Fake) -> None:
    fake = make_fake("freebsd")
    iface, queue = freebsd.open_device(config(name="tun0", mtu=1280), syscalls=fake)
    iface.add_address(IPv6Interface("fd00::1/64"))  # exactly 1280: allowed
    iface.set_mtu(1280)
    with pytest.raises(ConfigError, match="1280"):
        iface.set_mtu(1279)
    iface.remove_address(IPv6Interface("fd00::1/64").ip)
    iface.add_address(IPv6Interface("fe80::1/64"))
    iface.set_mtu(1279)  # a link-local address alone does not hold the MTU up
    assert iface.mtu() == 1279
    queue.close()
    iface.close()


def test_is_running_needs_iff_running_too(make_fake: Fake) -> None:
    fake = make_fake("freebsd")
    iface, queue = freebsd.open_device(config(name="tun0"), syscalls=fake)
    assert iface.is_running()
    fake.interfaces["tun0"].flags &= ~_bsd.IFF_RUNNING
    assert not iface.is_running()
    queue.close()
    iface.close()


def test_close_runs_every_clean_up_once() -> None:
    ran: list[str] = []

    def failing() -> None:
        ran.append("failing")
        raise OSError(errno.EIO, "boom")

    iface = _bsd.BsdInterface(
        syscalls=FakeSyscalls("freebsd"),
        flavor=_bsd.FREEBSD,
        name="tun0",
        layer=DeviceBuilder().config().layer,
        cleanups=[lambda: ran.append("first"), failing],
    )
    with pytest.raises(OSError):
        iface.close()
    assert ran == ["failing", "first"]  # reverse order; a failure does not skip the rest
    iface.close()
    assert ran == ["failing", "first"]


def test_adopting_a_negative_fd_is_refused(make_fake: Fake) -> None:
    with pytest.raises(UnsupportedError):
        freebsd.adopt_fd(-1, close_fd=True, syscalls=make_fake("freebsd"))


def test_openbsd_attach_to_a_missing_interface(make_fake: Fake) -> None:
    fake = make_fake("openbsd")
    with pytest.raises(DeviceNotFoundError):
        openbsd.open_device(config(name="tun2", attach=True), syscalls=fake)
    assert "tun2" not in fake.interfaces and fake.open_fds() == set()
