"""NetBSD TAP MAC address through the fake system-call layer: ``SIOCALIFADDR`` with
``IFLR_ACTIVE`` on a ``PF_LINK`` socket, as tap(4) documents and ``ifconfig tapN link MAC
active`` sends it (sbin/ifconfig/af_link.c, parse.c's parse_linkaddr, af_inetany.c's
commit_address). Only the fake kernel model has run this code."""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from tunflow import (
    ConfigError,
    DeviceBuilder,
    DeviceError,
    DeviceNotFoundError,
    DevicePermissionError,
    Layer,
    UnsupportedError,
)
from tunflow.netconfig.device import DeviceConfig
from tunflow.platform import netbsd
from tunflow.platform.fake import FakeSyscalls, pretend_platform

Fake = Callable[[str], FakeSyscalls]

# sys/sockio.h: SIOCALIFADDR _IOW('i', 28, struct if_laddrreq); golang.org/x/sys
# unix/zerrors_netbsd_amd64.go: SIOCALIFADDR = 0x8118691c
SIOCALIFADDR = 0x8118691C
TAPGIFNAME = 0x40906500
AF_LINK = 18  # sys/socket.h
SOCK_DGRAM = 2
IFLR_ACTIVE = 0x4000  # net/if.h
MAC = bytes.fromhex("020000c0ffee")


def if_laddrreq(name: str, mac: bytes) -> bytes:
    """The bytes ifconfig hands the kernel for ``ifconfig NAME link MAC active`` on amd64.

    net/if.h::

        struct if_laddrreq {
            char iflr_name[IFNAMSIZ];            /* 16 */
            unsigned int flags;                  /* IFLR_ACTIVE */
            unsigned int prefixlen;              /* 0 */
            struct sockaddr_storage addr;        /* 128, at offset 24 */
            struct sockaddr_storage dstaddr;     /* 128, at offset 152 */
        };                                       /* 280 */

    ``addr`` holds parse_linkaddr's sockaddr_dl (net/if_dl.h): sdl_len = offsetof(sdl_data) + 6
    = 14, sdl_family AF_LINK, sdl_index 0, sdl_type 0, sdl_nlen 0, sdl_alen 6, sdl_slen 0, then
    the six octets; everything else is zero.
    """
    name_field = name.encode().ljust(16, b"\0")
    sdl = bytes([14, AF_LINK]) + struct.pack("<H", 0) + bytes([0, 0, 6, 0]) + mac
    addr = sdl + bytes(128 - len(sdl))
    request = name_field + struct.pack("<II", IFLR_ACTIVE, 0) + addr + bytes(128)
    assert len(request) == 280
    return request


def tap_config(**kw: Any) -> DeviceConfig:
    return attrs.evolve(DeviceBuilder().layer(Layer.L2).config(), **kw)


def test_the_ioctl_number_is_the_headers() -> None:
    assert netbsd.SIOCALIFADDR == SIOCALIFADDR


def test_the_builder_mac_goes_out_as_ifconfig_link_active(make_fake: Fake) -> None:
    fake = make_fake("netbsd")
    iface, queue = netbsd.open_device(tap_config(mac=MAC), syscalls=fake)
    name = iface.name()
    (call,) = fake.ioctls(SIOCALIFADDR)
    assert call.args[2] == if_laddrreq(name, MAC)
    # on a PF_LINK datagram socket (tap(4): "the SIOCALIFADDR ioctl on a PF_LINK socket")
    sock = call.args[0]
    opened = [c for c in fake.named("socket") if c.result == sock and c.number < call.number]
    assert opened[-1].args == (AF_LINK, SOCK_DGRAM, 0)
    closed = [c for c in fake.named("close") if c.args == (sock,) and c.number > call.number]
    assert closed  # and closed afterwards
    assert fake.requests().index(TAPGIFNAME) < fake.requests().index(SIOCALIFADDR)
    assert fake.interfaces[name].mac == MAC
    assert iface.mac_address() == MAC
    queue.close()
    iface.close()


def test_a_named_tap_gets_its_mac_too(make_fake: Fake) -> None:
    fake = make_fake("netbsd")
    iface, queue = netbsd.open_device(tap_config(name="tap3", mac=MAC), syscalls=fake)
    assert fake.ioctls(SIOCALIFADDR)[0].args[2] == if_laddrreq("tap3", MAC)
    assert fake.interfaces["tap3"].mac == MAC
    queue.close()
    iface.close()
    assert set(fake.interfaces) == {"lo0"}


def test_set_mac_address_at_run_time() -> None:
    with pretend_platform("netbsd") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().layer(Layer.L2).build_sync() as dev:
            dev.set_mac_address("02:00:00:00:00:2a")
            assert dev.mac_address() == "02:00:00:00:00:2a"
            assert fake.interfaces[dev.name()].mac == bytes.fromhex("02000000002a")
            assert fake.ioctls(SIOCALIFADDR)[-1].args[2] == if_laddrreq(
                dev.name(), bytes.fromhex("02000000002a")
            )
            # not a unicast address: refused before any system call
            before = len(fake.calls)
            with pytest.raises(ConfigError):
                dev.set_mac_address("03:00:00:00:00:01")
            with pytest.raises(ConfigError):
                dev.set_mac_address("00:00:00:00:00:00")
            assert len(fake.calls) == before
        fake.close_all()


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (errno.EPERM, DevicePermissionError),  # kauth: KAUTH_REQ_NETWORK_INTERFACE_SETPRIV
        (errno.ENXIO, DeviceNotFoundError),  # ifunit() found no such interface
        (errno.EINVAL, DeviceError),  # link_control: sdl_alen is not if_addrlen…
    ],
)
def test_errors_are_typed_and_leave_the_mac(
    make_fake: Fake, code: int, error: type[DeviceError]
) -> None:
    fake = make_fake("netbsd")
    iface, queue = netbsd.open_device(tap_config(), syscalls=fake)
    model = fake.interfaces[iface.name()]
    before = model.mac
    fake.fail_ioctl(SIOCALIFADDR, code)
    with pytest.raises(error) as caught:
        iface.set_mac_address(MAC)
    assert type(caught.value) is error
    assert caught.value.errno == code
    assert iface.name() in str(caught.value)
    if code == errno.EPERM:
        assert "root" in str(caught.value)
    assert model.mac == before
    assert fake.open_fds() == {fake.device_fd(iface.name())}  # the PF_LINK socket is closed
    queue.close()
    iface.close()


def test_a_refused_mac_at_build_takes_the_device_back(make_fake: Fake) -> None:
    fake = make_fake("netbsd")
    fake.fail_ioctl(SIOCALIFADDR, errno.EPERM)
    with pytest.raises(DevicePermissionError):
        netbsd.open_device(tap_config(name="tap2", mac=MAC), syscalls=fake)
    assert fake.open_fds() == set()
    assert set(fake.interfaces) == {"lo0"}


def test_the_kernel_model_refuses_what_netbsd_refuses(make_fake: Fake) -> None:
    # ether_ioctl: a multicast or all-zero address is EINVAL (the public API refuses both
    # first); link_control: an address that is not 6 bytes long on a tap
    fake = make_fake("netbsd")
    iface, queue = netbsd.open_device(tap_config(), syscalls=fake)
    model = fake.interfaces[iface.name()]
    for bad in (bytes.fromhex("010000000001"), bytes(6), bytes.fromhex("0200000001")):
        with pytest.raises(DeviceError) as caught:
            iface.set_mac_address(bad)
        assert caught.value.errno == errno.EINVAL
    assert model.mac == bytes(6)
    # link_control is the link domain's: another socket's domain does not set the address
    sock = fake.socket(2, SOCK_DGRAM, 0)
    with pytest.raises(OSError) as caught:
        fake.ioctl(sock, SIOCALIFADDR, if_laddrreq(iface.name(), MAC))
    assert caught.value.errno == errno.EINVAL
    fake.close(sock)
    assert model.mac == bytes(6)
    queue.close()
    iface.close()


def test_a_tun_has_no_mac(make_fake: Fake) -> None:
    fake = make_fake("netbsd")
    iface, queue = netbsd.open_device(
        attrs.evolve(DeviceBuilder().config(), name="tun0"), syscalls=fake
    )
    with pytest.raises(UnsupportedError, match="no MAC"):
        iface.set_mac_address(MAC)
    assert fake.ioctls(SIOCALIFADDR) == []
    queue.close()
    iface.close()
