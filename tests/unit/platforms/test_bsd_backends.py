"""FreeBSD, OpenBSD and NetBSD backends through the fake system-call layer."""

from __future__ import annotations

import ctypes
import errno
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, ip_network
from types import ModuleType
from typing import Any

import attrs
import pytest

from tunflow import (
    ConfigError,
    DeviceBuilder,
    DeviceBusyError,
    DeviceError,
    DeviceNotFoundError,
    DevicePermissionError,
    Layer,
    UnsupportedError,
)
from tunflow.netconfig.device import DeviceConfig
from tunflow.packet import PacketBatch
from tunflow.platform import freebsd, netbsd, openbsd
from tunflow.platform._base import Route
from tunflow.platform.fake import FakeSyscalls

from .support import af_header, ipv4_packet, ipv6_packet, trace

Fake = Callable[[str], FakeSyscalls]

BACKENDS: dict[str, ModuleType] = {"freebsd": freebsd, "openbsd": openbsd, "netbsd": netbsd}
# AF_INET6 in each sys/socket.h (zerrors_*_amd64.go): FreeBSD 28, OpenBSD 24, NetBSD 24
AF_INET6 = {"freebsd": 28, "openbsd": 24, "netbsd": 24}
# header values (see test_header_values.py)
TUNSIFHEAD = {"freebsd": 0x80047460, "netbsd": 0x80047442}
SIOCIFCREATE = {"openbsd": 0x8020697A, "netbsd": 0x8090697A}
SIOCIFDESTROY = {"freebsd": 0x80206979, "openbsd": 0x80206979, "netbsd": 0x80906979}
SIOCSIFMTU = {"freebsd": 0x80206934, "openbsd": 0x8020697F, "netbsd": 0x8090697F}
SIOCAIFADDR = {"freebsd": 0x8044692B, "openbsd": 0x8040691A, "netbsd": 0x8040691A}
SIOCAIFADDR_IN6 = {"freebsd": 0x8088691B, "openbsd": 0x8080691A, "netbsd": 0x8080696B}
SIOCGIFFLAGS = {"freebsd": 0xC0206911, "openbsd": 0xC0206911, "netbsd": 0xC0906911}
SIOCSIFFLAGS = {"freebsd": 0x80206910, "openbsd": 0x80206910, "netbsd": 0x80906910}
FIODGNAME = 0x80106678
SIOCSIFNAME = 0x80206928
TAPGIFNAME = 0x40906500
O_CLOEXEC = {"freebsd": 0x100000, "openbsd": 0x10000, "netbsd": 0x400000}


def config(layer: Layer = Layer.L3, **kw: Any) -> DeviceConfig:
    base = (
        DeviceBuilder()
        .layer(layer)
        .ipv4("10.0.0.1", 24)
        .ipv6("fd00::1", 64)
        .mtu(1400)
        .route("192.0.2.0/24")
        .config()
    )
    return attrs.evolve(base, **kw)


def ioctl_trace(fake: FakeSyscalls) -> list[object]:
    return [step for step in trace(fake) if step[0] in ("ioctl", "open", "run")]


# -- creation sequences ------------------------------------------------------------------------


def test_freebsd_clone_sequence(make_fake: Fake) -> None:
    fake = make_fake("freebsd")
    iface, queue = freebsd.open_device(config(), syscalls=fake)
    assert iface.name() == "tun0"
    assert ioctl_trace(fake)[:3] == [
        ("open", "/dev/tun"),  # the cloning device
        ("ioctl", FIODGNAME),  # which unit did it make?
        ("ioctl", TUNSIFHEAD["freebsd"]),  # multi-family mode: every packet behind its family
    ]
    assert fake.named("open")[0].args[1] == 0x2 | O_CLOEXEC["freebsd"]
    # sys/filio.h struct fiodgname_arg {int len; void *buf;}: a 64-byte buffer's address
    length, address = struct.unpack("<i4xQ", fake.ioctls(FIODGNAME)[0].args[2])
    assert length == 64 and address != 0
    assert fake.ioctls(TUNSIFHEAD["freebsd"])[0].args[2] == struct.pack("<i", 1)
    queue.close()
    iface.close()
    assert [c.args[2][:16] for c in fake.ioctls(SIOCIFDESTROY["freebsd"])] == [
        b"tun0".ljust(16, b"\0")
    ]
    assert set(fake.interfaces) == {"lo0"} and fake.open_fds() == set()


def test_freebsd_named_unit_and_rename(make_fake: Fake) -> None:
    fake = make_fake("freebsd")
    iface, queue = freebsd.open_device(config(name="tun4"), syscalls=fake)
    assert ioctl_trace(fake)[:2] == [("open", "/dev/tun4"), ("ioctl", TUNSIFHEAD["freebsd"])]
    queue.close()
    iface.close()

    fake = make_fake("freebsd")
    iface, queue = freebsd.open_device(config(name="wg0"), syscalls=fake)
    assert ioctl_trace(fake)[:4] == [
        ("open", "/dev/tun"),
        ("ioctl", FIODGNAME),
        ("ioctl", TUNSIFHEAD["freebsd"]),
        ("ioctl", SIOCSIFNAME),
    ]
    rename = fake.ioctls(SIOCSIFNAME)[0].args[2]
    # sys/sockio.h SIOCSIFNAME: ifr_name is the old name, ifr_data points at the new one
    assert rename[:16] == b"tun0".ljust(16, b"\0")
    assert iface.name() == "wg0" and "wg0" in fake.interfaces
    iface.set_name("wg1")
    (_, second) = fake.ioctls(SIOCSIFNAME)
    (address,) = struct.unpack_from("<Q", second.args[2], 16)
    assert address != 0
    assert iface.name() == "wg1"
    # net/if.h IFNAMSIZ 16 with the NUL: a longer name is refused before any call
    calls = len(fake.calls)
    for long_name in ("x" * 16, "x" * 20):
        with pytest.raises(ConfigError):
            iface.set_name(long_name)
    assert len(fake.calls) == calls and iface.name() == "wg1"
    queue.close()
    iface.close()
    assert set(fake.interfaces) == {"lo0"}  # destroyed under its new name


def test_freebsd_attach_keeps_the_interface(make_fake: Fake) -> None:
    fake = make_fake("freebsd")
    fake.add_interface("tun2")
    iface, queue = freebsd.open_device(config(name="tun2", attach=True), syscalls=fake)
    queue.close()
    iface.close()
    assert "tun2" in fake.interfaces
    with pytest.raises(DeviceNotFoundError):
        freebsd.open_device(config(name="tun3", attach=True), syscalls=fake)
    with pytest.raises(ConfigError, match="tunN"):
        freebsd.open_device(config(name="wg0", attach=True), syscalls=fake)


@pytest.mark.parametrize("platform", ["openbsd", "netbsd"])
def test_openbsd_netbsd_create_then_open(make_fake: Fake, platform: str) -> None:
    fake = make_fake(platform)
    fake.add_interface("tun0")
    iface, queue = BACKENDS[platform].open_device(config(), syscalls=fake)
    assert iface.name() == "tun1"  # the first unit that is not an interface yet
    expected: list[object] = [("ioctl", SIOCIFCREATE[platform]), ("open", "/dev/tun1")]
    if platform == "netbsd":
        expected.append(("ioctl", TUNSIFHEAD["netbsd"]))
    assert ioctl_trace(fake)[: len(expected)] == expected
    assert fake.named("open")[0].args[1] == 0x2 | O_CLOEXEC[platform]
    queue.close()
    iface.close()
    assert set(fake.interfaces) == {"lo0", "tun0"}


def test_openbsd_full_build_sequence(make_fake: Fake) -> None:
    """Creation, then MTU → addresses (each with its subnet route) → up → the user's route."""
    fake = make_fake("openbsd")
    iface, queue = openbsd.open_device(config(), syscalls=fake)
    ctl = ("socket", 2, 2, 0)
    route = [("if_nametoindex", "tun0"), ("socket", 17, 3, 0), ("write",), ("close",)]
    assert trace(fake) == [
        ("if_nametoindex", "tun0"),  # the first free unit…
        ("if_nametoindex", "tun0"),  # …does not exist yet
        ctl, ("ioctl", 0x8020697A), ("close",),  # SIOCIFCREATE tun0
        ("open", "/dev/tun0"),
        ctl, ("ioctl", 0x8020697F), ("close",),  # SIOCSIFMTU
        ctl, ("ioctl", 0x8040691A), ("close",),  # SIOCAIFADDR 10.0.0.1/24
        *route,  # 10.0.0.0/24 through tun0
        ctl, ("ioctl", 0xC020697E), ("close",),  # SIOCGIFMTU: IPv6 needs 1280
        ("socket", 24, 2, 0), ("ioctl", 0x8080691A), ("close",),  # SIOCAIFADDR_IN6 on AF_INET6
        *route,  # fd00::/64 through tun0
        ctl, ("ioctl", 0xC0206911), ("close",),  # SIOCGIFFLAGS
        ctl, ("ioctl", 0x80206910), ("close",),  # SIOCSIFFLAGS: UP | RUNNING
        *route,  # 192.0.2.0/24, last: after the interface is up
    ]  # fmt: skip
    queue.close()
    iface.close()


@pytest.mark.parametrize("platform", ["openbsd", "netbsd"])
def test_missing_node_is_made_with_makedev(make_fake: Fake, platform: str) -> None:
    fake = make_fake(platform)
    fake.missing_nodes.add("/dev/tun9")
    iface, queue = BACKENDS[platform].open_device(config(name="tun9"), syscalls=fake)
    assert ioctl_trace(fake)[:4] == [
        ("ioctl", SIOCIFCREATE[platform]),
        ("open", "/dev/tun9"),
        ("run", ("sh", "MAKEDEV", "tun9")),
        ("open", "/dev/tun9"),
    ]
    assert fake.named("run")[0].kwargs == {"cwd": "/dev"}
    queue.close()
    iface.close()


@pytest.mark.parametrize("platform", ["openbsd", "netbsd"])
def test_openbsd_netbsd_cannot_rename(make_fake: Fake, platform: str) -> None:
    fake = make_fake(platform)
    with pytest.raises(ConfigError, match="tunN"):
        BACKENDS[platform].open_device(config(name="wg0"), syscalls=fake)
    assert fake.calls == []
    iface, queue = BACKENDS[platform].open_device(config(), syscalls=fake)
    with pytest.raises(UnsupportedError):
        iface.set_name("wg0")
    queue.close()


def test_netbsd_cloned_tap(make_fake: Fake) -> None:
    fake = make_fake("netbsd")
    iface, queue = netbsd.open_device(config(Layer.L2, routes=()), syscalls=fake)
    assert ioctl_trace(fake)[:2] == [("open", "/dev/tap"), ("ioctl", TAPGIFNAME)]
    assert iface.name() == "tap0"
    assert TUNSIFHEAD["netbsd"] not in fake.requests()  # TAP carries frames, no header
    queue.close()
    iface.close()
    # the cloning device took the interface with it; no SIOCIFDESTROY was needed
    assert set(fake.interfaces) == {"lo0"}
    assert fake.ioctls(SIOCIFDESTROY["netbsd"]) == []


@pytest.mark.parametrize("platform", ["freebsd", "openbsd", "netbsd"])
def test_tap_mac_address(make_fake: Fake, platform: str) -> None:
    fake = make_fake(platform)
    mac = bytes.fromhex("020000c0ffee")
    iface, queue = BACKENDS[platform].open_device(config(Layer.L2, mac=mac), syscalls=fake)
    assert iface.mac_address() == mac
    assert fake.interfaces[iface.name()].mac == mac
    queue.close()
    iface.close()


# -- configuration through the model ----------------------------------------------------------


@pytest.mark.parametrize("platform", sorted(BACKENDS))
def test_configuration_reaches_the_kernel(make_fake: Fake, platform: str) -> None:
    fake = make_fake(platform)
    iface, queue = BACKENDS[platform].open_device(config(), syscalls=fake)
    name = iface.name()
    model = fake.interfaces[name]
    assert model.mtu == 1400
    assert [a for a, _ in model.v4] == [IPv4Interface("10.0.0.1/24")]
    assert model.v6 == [IPv6Interface("fd00::1/64")]
    assert iface.addresses() == [IPv4Interface("10.0.0.1/24"), IPv6Interface("fd00::1/64")]
    assert iface.is_running()
    assert {str(r.destination) for r in iface.routes()} == {
        "10.0.0.0/24",
        "fd00::/64",
        "192.0.2.0/24",
    }
    mtu_call = fake.ioctls(SIOCSIFMTU[platform])[0]
    assert struct.unpack_from("<i", mtu_call.args[2], 16)[0] == 1400
    aifaddr = fake.ioctls(SIOCAIFADDR[platform])[0].args[2]
    assert aifaddr[16:24] == bytes([16, 2, 0, 0, 10, 0, 0, 1])
    aifaddr6 = fake.ioctls(SIOCAIFADDR_IN6[platform])[0].args[2]
    assert aifaddr6[16:18] == bytes([28, AF_INET6[platform]])
    iface.set_enabled(False)
    assert not iface.is_running()
    with pytest.raises(UnsupportedError):
        iface.tx_queue_len()
    queue.close()
    iface.close()
    assert set(fake.interfaces) == {"lo0"} and fake.routes == [] and fake.open_fds() == set()


# -- framing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", sorted(BACKENDS))
def test_tun_header_removed_and_added_on_every_path(make_fake: Fake, platform: str) -> None:
    fake = make_fake(platform)
    iface, queue = BACKENDS[platform].open_device(config(routes=()), syscalls=fake)
    fd = queue.fileno()
    af6 = AF_INET6[platform]
    p4, p6 = ipv4_packet(), ipv6_packet()
    fake.inject(fd, af_header(2) + p4)
    assert queue.recv(2000) == p4
    fake.inject(fd, af_header(af6) + p6)
    buf = bytearray(2000)
    assert queue.recv_into(memoryview(buf)) == len(p6) and bytes(buf[: len(p6)]) == p6
    fake.inject(fd, af_header(af6) + p6)
    fake.inject(fd, af_header(2) + p4)
    batch = PacketBatch()
    assert queue.recv_batch(batch, 2000) == 2
    assert batch.to_list() == [p6, p4]
    queue.send(p4)
    queue.send(p6)
    out = PacketBatch()
    out.extend([p4, p6])
    assert queue.send_batch(out) == 2
    assert fake.sent(fd) == [
        af_header(2) + p4,
        af_header(af6) + p6,
        af_header(2) + p4,
        af_header(af6) + p6,
    ]
    queue.close()
    iface.close()


@pytest.mark.parametrize("platform", sorted(BACKENDS))
def test_packet_information_keeps_the_header(make_fake: Fake, platform: str) -> None:
    fake = make_fake(platform)
    iface, queue = BACKENDS[platform].open_device(
        config(routes=(), packet_information=True), syscalls=fake
    )
    framed = af_header(AF_INET6[platform]) + ipv6_packet()
    fake.inject(queue.fileno(), framed)
    assert queue.recv(2000) == framed
    queue.send(framed)
    assert fake.sent(queue.fileno()) == [framed]
    queue.close()
    iface.close()


@pytest.mark.parametrize("platform", sorted(BACKENDS))
def test_tap_frames_have_no_header(make_fake: Fake, platform: str) -> None:
    fake = make_fake(platform)
    iface, queue = BACKENDS[platform].open_device(config(Layer.L2, routes=()), syscalls=fake)
    frame = bytes.fromhex("ffffffffffff0200000000010806") + b"x" * 46
    fake.inject(queue.fileno(), frame)
    assert queue.recv(2000) == frame
    queue.send(frame)
    assert fake.sent(queue.fileno()) == [frame]
    queue.close()
    iface.close()


@pytest.mark.parametrize("platform", sorted(BACKENDS))
def test_adopt_fd_frames_without_an_interface(make_fake: Fake, platform: str) -> None:
    fake = make_fake(platform)
    fd = fake.open("/dev/null-ish", 2)
    iface, queue = BACKENDS[platform].adopt_fd(fd, close_fd=True, syscalls=fake)
    assert iface is None
    fake.inject(fd, af_header(AF_INET6[platform]) + ipv6_packet())
    assert queue.recv(2000) == ipv6_packet()
    queue.close()
    assert fake.open_fds() == set()


@pytest.mark.parametrize("platform", sorted(BACKENDS))
def test_adopted_fd_closed_by_its_maker_first_closes_quietly(
    make_fake: Fake, platform: str
) -> None:
    # as FdQueue's own close (and Android/iOS adoption): EBADF means nothing left to close
    fake = make_fake(platform)
    fd = fake.open("/dev/null-ish", 2)
    _, queue = BACKENDS[platform].adopt_fd(fd, close_fd=True, syscalls=fake)
    fake.close(fd)  # closed by whoever made it
    queue.close()
    assert [c.error.errno for c in fake.named("close") if c.error is not None] == [errno.EBADF]


# -- clean-up and errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "layer", "name"),
    [
        ("freebsd", Layer.L3, None),
        ("freebsd", Layer.L3, "wg0"),
        ("freebsd", Layer.L2, "tap1"),
        ("openbsd", Layer.L3, None),
        ("openbsd", Layer.L2, "tap3"),
        ("netbsd", Layer.L3, "tun2"),
        ("netbsd", Layer.L2, None),
    ],
)
def test_clean_up_after_a_failure_at_every_step(
    make_fake: Fake, platform: str, layer: Layer, name: str | None
) -> None:
    mac = bytes.fromhex("020000000001") if layer is Layer.L2 else None
    cfg = config(layer, name=name, mac=mac)
    probe = make_fake(platform)
    iface, queue = BACKENDS[platform].open_device(cfg, syscalls=probe)
    steps = len(probe.calls)
    queue.close()
    iface.close()
    assert set(probe.interfaces) == {"lo0"}
    failed = 0
    for step in range(steps):
        fake = make_fake(platform)
        fake.fail_call(step, errno.EIO)
        try:
            iface, queue = BACKENDS[platform].open_device(cfg, syscalls=fake)
        except (DeviceError, OSError):
            failed += 1
        else:
            # only the "is there such an interface?" probes (an error reads as "no") and the
            # closing of control sockets (the fd is released anyway) may fail harmlessly; the
            # build then goes on and must still close cleanly
            assert probe.calls[step].name in ("if_nametoindex", "close"), (
                f"step {step} did not fail"
            )
            queue.close()
            iface.close()
        what = f"step {step} ({probe.calls[step].name})"
        assert fake.open_fds() == set(), f"{what} leaked an fd"
        assert set(fake.interfaces) == {"lo0"}, f"{what} left {set(fake.interfaces)}"
        assert fake.routes == [], f"{what} left routes"
    assert failed > steps // 2


@pytest.mark.parametrize("platform", sorted(BACKENDS))
def test_attach_failure_takes_back_what_it_added(make_fake: Fake, platform: str) -> None:
    fake = make_fake(platform)
    fake.add_interface("tun5")
    before = fake.snapshot()
    # the user's route is the last step: fail it, and the addresses added before go again
    fake.fail("write", errno.ENETUNREACH, times=None)
    cfg = config(name="tun5", attach=True, mtu=None, associate_route=False)
    with pytest.raises(DeviceError, match=r"192\.0\.2\.0/24"):
        BACKENDS[platform].open_device(cfg, syscalls=fake)
    assert fake.snapshot() == before
    assert len(fake.ioctls(SIOCAIFADDR[platform])) == 1  # it had been added…
    assert "tun5" in fake.interfaces  # …on an interface that is not ours to destroy
    assert fake.open_fds() == set()


@pytest.mark.parametrize("platform", sorted(BACKENDS))
def test_errors(make_fake: Fake, platform: str) -> None:
    backend = BACKENDS[platform]
    fake = make_fake(platform)
    fake.fail("open", errno.EACCES, times=None)
    fake.fail("ioctl", errno.EPERM, times=None)
    with pytest.raises(DevicePermissionError, match="needs root"):
        backend.open_device(config(name="tun1"), syscalls=fake)
    assert fake.open_fds() == set()
    # a device another process holds
    fake = make_fake(platform)
    fake.add_interface("tun1")
    fake.open("/dev/tun1", 2)
    with pytest.raises(DeviceBusyError, match="in use"):
        backend.open_device(config(name="tun1"), syscalls=fake)
    # the driver is not there
    fake = make_fake(platform)
    fake.missing_nodes.add("/dev/tun" if platform == "freebsd" else "/dev/tun0")
    fake.fail("run", errno.ENOENT, times=None)
    with pytest.raises((DeviceNotFoundError, DeviceError)):
        backend.open_device(config(), syscalls=fake)
    assert set(fake.interfaces) == {"lo0"}
    # Linux-only options
    fake = make_fake(platform)
    for change in ({"multi_queue": True}, {"offload": True}, {"tx_queue_len": 5}, {"group": 3}):
        with pytest.raises(UnsupportedError):
            backend.open_device(config(**change), syscalls=fake)
    assert fake.calls == []


def test_fiodgname_pointer_receives_the_name(make_fake: Fake) -> None:
    fake = make_fake("freebsd")
    fd = fake.open("/dev/tap", 2)
    assert freebsd.device_name(fake, fd) == "tap0"
    buf_addr = struct.unpack("<i4xQ", fake.ioctls(FIODGNAME)[0].args[2])[1]
    assert isinstance(buf_addr, int) and ctypes.sizeof(ctypes.c_void_p) == 8


def test_freebsd_flags_keep_ifr_flagshigh(make_fake: Fake) -> None:
    # FreeBSD net/if.h: short ifru_flags[2] — ifr_flags (low 16 bits), ifr_flagshigh (high 16);
    # net/if.c SIOCSIFFLAGS: new_flags = (ifr_flags & 0xffff) | (ifr_flagshigh << 16), so an
    # ifr_flagshigh of 0 would clear IFF_PPROMISC (0x20000), IFF_MONITOR, IFF_STATICARP…
    fake = make_fake("freebsd")
    iface, queue = freebsd.open_device(config(), syscalls=fake)
    model = fake.interfaces[iface.name()]
    model.flags |= 0x20000  # IFF_PPROMISC, set by someone else (ifconfig tun0 ppromisc)
    iface.set_enabled(False)
    iface.set_enabled(True)
    assert model.flags & 0x20000
    payload = fake.ioctls(SIOCSIFFLAGS["freebsd"])[-1].args[2]
    assert struct.unpack_from("<HH", payload, 16) == (model.flags & 0xFFFF, 0x2)
    assert iface.flags() & 0x20000
    queue.close()
    iface.close()


@pytest.mark.parametrize("platform", ["openbsd", "netbsd"])
def test_link_local_addresses_listed_without_the_kame_zone(make_fake: Fake, platform: str) -> None:
    # getifaddrs(3) on a KAME stack gives fe80:<ifindex>::… (in6_fillscopeid in ifconfig)
    from tunflow.platform import _bsd
    from tunflow.platform._syscalls import IfAddr

    fake = make_fake(platform)
    iface, queue = BACKENDS[platform].open_device(config(), syscalls=fake)
    flavor = fake.flavor
    index = fake.interfaces[iface.name()].index
    embedded = bytes([0xFE, 0x80, 0, index]) + bytes(11) + b"\x01"
    raw = _bsd.sockaddr_in6(flavor, int.from_bytes(embedded, "big"))
    mask = _bsd.sockaddr_in6(flavor, IPv6Interface("fe80::/64").netmask)
    listed = [*fake.getifaddrs(), IfAddr(iface.name(), 0, raw, mask)]
    fake.on("getifaddrs", result=listed)
    assert IPv6Interface("fe80::1/64") in iface.addresses()
    queue.close()
    iface.close()


@pytest.mark.parametrize("platform", sorted(BACKENDS))
def test_remove_address_whose_route_is_already_gone(make_fake: Fake, platform: str) -> None:
    # FreeBSD and OpenBSD drop an address's prefix route with the address, so the RTM_DELETE
    # that follows finds nothing: the routing socket answers ESRCH (route(8)'s "not in
    # table"), which is the outcome asked for, not a failure
    fake = make_fake(platform)
    iface, queue = BACKENDS[platform].open_device(config(), syscalls=fake)
    iface.remove_route(Route(ip_network("10.0.0.0/24")))
    iface.remove_address(IPv4Address("10.0.0.1"))
    assert iface.addresses() == [IPv6Interface("fd00::1/64")]
    queue.close()
    iface.close()


@pytest.mark.parametrize("platform", sorted(BACKENDS))
def test_close_after_the_interface_was_destroyed_elsewhere(make_fake: Fake, platform: str) -> None:
    # `ifconfig tun0 destroy` by someone else: SIOCIFDESTROY then answers ENXIO (FreeBSD
    # sys/net/if_clone.c if_clone_destroy: no such interface), and close has nothing to undo
    fake = make_fake(platform)
    iface, queue = BACKENDS[platform].open_device(config(), syscalls=fake)
    fake.remove_interface(iface.name())
    queue.close()
    iface.close()
    assert fake.ioctls(SIOCIFDESTROY[platform])
    assert fake.open_fds() == set()


def test_fake_refuses_an_argument_of_the_wrong_size(make_fake: Fake) -> None:
    # sys/ioccom.h: the kernel copies IOCPARM_LEN(request) bytes whatever buffer it was given,
    # so a short one (32 bytes for NetBSD's 144-byte ifreq) would be read past its end
    fake = make_fake("netbsd")
    fd = fake.open("/dev/tap", 2)
    with pytest.raises(AssertionError, match="takes 144 bytes"):
        fake.ioctl(fd, TAPGIFNAME, bytes(32))


@pytest.mark.parametrize("platform", ["openbsd", "netbsd"])
def test_interface_created_by_another_process_meanwhile(make_fake: Fake, platform: str) -> None:
    # SIOCIFCREATE answers EEXIST (net/if.c if_clone_create: the unit exists) when another
    # process made tun0 between the existence check and the create: open it, and leave it
    # in place on close as an interface this call did not create
    fake = make_fake(platform)

    def raced(*args: Any) -> None:
        fake.add_interface("tun0")
        raise OSError(errno.EEXIST, "File exists")

    fake.on("ioctl", when=lambda c: c.args[1] == SIOCIFCREATE[platform], handler=raced, times=1)
    iface, queue = BACKENDS[platform].open_device(config(name="tun0"), syscalls=fake)
    assert iface.name() == "tun0"
    queue.close()
    iface.close()
    assert "tun0" in fake.interfaces
    assert fake.ioctls(SIOCIFDESTROY[platform]) == []


@pytest.mark.parametrize("platform", sorted(BACKENDS))
def test_operations_on_a_vanished_interface_are_not_found(make_fake: Fake, platform: str) -> None:
    # ifreq ioctls on an interface that no longer exists answer ENXIO (net/if.c ifioctl:
    # ifunit() found nothing)
    fake = make_fake(platform)
    iface, queue = BACKENDS[platform].open_device(config(), syscalls=fake)
    fake.remove_interface(iface.name())
    with pytest.raises(DeviceNotFoundError, match="is gone"):
        iface.mtu()
    with pytest.raises(DeviceNotFoundError, match="is gone"):
        iface.set_enabled(True)
    queue.close()
    iface.close()
