"""macOS backend through the fake system-call layer: utun (TUN) and feth + BPF (TAP)."""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, ip_network

import pytest

from tunflow import (
    ConfigError,
    DeviceBuilder,
    DeviceBusyError,
    DeviceError,
    DevicePermissionError,
    Layer,
    UnsupportedError,
)
from tunflow.netconfig.device import DeviceConfig
from tunflow.packet import PacketBatch
from tunflow.platform import _bsd, darwin
from tunflow.platform._base import Route
from tunflow.platform.fake import FakeSyscalls

from .support import af_header, ipv4_packet, ipv6_packet, trace

Fake = Callable[[str], FakeSyscalls]

# zerrors_darwin_amd64.go values (see test_header_values.py)
CTLIOCGINFO = 0xC0644E03
SIOCSIFMTU = 0x80206934
SIOCGIFFLAGS = 0xC0206911
SIOCSIFFLAGS = 0x80206910
SIOCAIFADDR = 0x8040691A
SIOCAIFADDR_IN6 = 0x8080691A
SIOCDIFADDR = 0x80206919
SIOCDIFADDR_IN6 = 0x81206919
SIOCIFCREATE = 0xC0206978
SIOCIFDESTROY = 0x80206979
SIOCSIFLLADDR = 0x8020693C
BIOCSBLEN, BIOCIMMEDIATE, BIOCSSEESENT = 0xC0044266, 0x80044270, 0x80044277
BIOCSETIF, BIOCSHDRCMPLT, BIOCPROMISC = 0x8020426C, 0x80044275, 0x20004269
AF_SYSTEM, AF_NDRV, PF_ROUTE, AF_INET6 = 32, 27, 17, 30


def tun_config(**kw: object) -> DeviceConfig:
    builder = DeviceBuilder().ipv4("10.0.0.1", 24).mtu(1400).route("192.0.2.0/24")
    config = builder.config()
    import attrs

    return attrs.evolve(config, **kw)  # type: ignore[arg-type]


def name16(name: str) -> bytes:
    return name.encode().ljust(16, b"\0")


# -- utun: creation --------------------------------------------------------------------------


def test_utun_build_sequence(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    iface, queue = darwin.open_device(tun_config(), syscalls=fake)
    assert iface.name() == "utun0"
    assert trace(fake) == [
        ("socket", AF_SYSTEM, 2, 2),  # socket(PF_SYSTEM, SOCK_DGRAM, SYSPROTO_CONTROL)
        ("ioctl", CTLIOCGINFO),
        ("connect",),
        ("getsockopt",),
        ("fcntl",),
        # MTU
        ("socket", 2, 2, 0),
        ("ioctl", SIOCSIFMTU),
        ("close",),
        # the address, then its subnet route (associate_route)
        ("socket", 2, 2, 0),
        ("ioctl", SIOCAIFADDR),
        ("close",),
        ("if_nametoindex", "utun0"),
        ("socket", PF_ROUTE, 3, 0),
        ("write",),
        ("close",),
        # up: read the flags, set UP|RUNNING
        ("socket", 2, 2, 0),
        ("ioctl", SIOCGIFFLAGS),
        ("close",),
        ("socket", 2, 2, 0),
        ("ioctl", SIOCSIFFLAGS),
        ("close",),
        # the route the user asked for, last
        ("if_nametoindex", "utun0"),
        ("socket", PF_ROUTE, 3, 0),
        ("write",),
        ("close",),
    ]
    fd = fake.calls[0].result
    # sys/kern_control.h struct ctl_info {u_int32_t ctl_id; char ctl_name[96];}
    assert fake.calls[1].args == (
        fd,
        CTLIOCGINFO,
        b"\0" * 4 + b"com.apple.net.utun_control".ljust(96, b"\0"),
    )
    # struct sockaddr_ctl {sc_len 32, sc_family AF_SYSTEM, ss_sysaddr AF_SYS_CONTROL, sc_id,
    # sc_unit 0 (the kernel picks), sc_reserved[5]}
    assert fake.calls[2].args == (fd, bytes([32, 32, 2, 0]) + struct.pack("<II", 7, 0) + b"\0" * 20)
    assert fake.calls[3].args == (fd, 2, 2, 16)  # SYSPROTO_CONTROL, UTUN_OPT_IFNAME
    assert fake.calls[4].args == (fd, 2, 1)  # F_SETFD, FD_CLOEXEC
    assert fake.calls[6].args[2] == name16("utun0") + struct.pack("<i", 1400) + b"\0" * 12
    assert fake.calls[16].result[16:18] == struct.pack(
        "<H", 0x8010
    )  # flags as the kernel gave them
    assert fake.calls[19].args[2][16:18] == struct.pack("<H", 0x8010 | 0x1 | 0x40)
    # the model: address, MTU, routes through utun0
    assert fake.interfaces["utun0"].v4 == [
        (IPv4Interface("10.0.0.1/24"), ip_network("10.0.0.0/24").broadcast_address)
    ]
    assert fake.interfaces["utun0"].mtu == 1400
    assert {str(r[0]) for r in fake.routes} == {"10.0.0.0/24", "192.0.2.0/24"}
    queue.close()
    iface.close()
    # closing the control socket destroys the utun and every route through it
    assert fake.open_fds() == set()
    assert set(fake.interfaces) == {"lo0"}
    assert fake.routes == []


def test_utun_named_unit(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    iface, queue = darwin.open_device(tun_config(name="utun7", routes=()), syscalls=fake)
    connect = fake.named("connect")[0]
    assert struct.unpack_from("<I", connect.args[1], 8)[0] == 8  # sc_unit = N + 1
    assert iface.name() == "utun7"
    queue.close()


@pytest.mark.parametrize("name", ["tun0", "utun", "utunX", "en0"])
def test_utun_name_must_be_utun_n_and_nothing_is_called(make_fake: Fake, name: str) -> None:
    fake = make_fake("darwin")
    with pytest.raises(ConfigError, match="utunN"):
        darwin.open_device(tun_config(name=name), syscalls=fake)
    assert fake.calls == []


def test_utun_busy_unit(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    fake.add_interface("utun3", kind="utun")
    with pytest.raises(DeviceBusyError, match="utun3 exists"):
        darwin.open_device(tun_config(name="utun3"), syscalls=fake)
    assert fake.open_fds() == set()


def test_utun_needs_root(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    fake.fail("socket", errno.EPERM)
    with pytest.raises(DevicePermissionError, match="needs root") as info:
        darwin.open_device(tun_config(), syscalls=fake)
    assert info.value.errno == errno.EPERM
    assert "CAP_NET_ADMIN" not in str(info.value)


def test_linux_only_options_refused_before_any_call(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    for change in (
        {"multi_queue": True},
        {"offload": True},
        {"tx_queue_len": 10},
        {"owner": 1},
        {"netns": "blue"},
        {"metric": 5},
        {"dns_servers": (IPv4Address("198.51.100.53"),)},
    ):
        with pytest.raises(UnsupportedError):
            darwin.open_device(tun_config(**change), syscalls=fake)
    # the Windows options that change nothing here are ignored (one builder chain for all)
    _iface, queue = darwin.open_device(
        tun_config(description="x", ring_capacity=0x20000, wintun_file="w.dll"), syscalls=fake
    )
    queue.close()
    fake.calls.clear()
    with pytest.raises(UnsupportedError, match="persist"):
        darwin.open_device(tun_config(persist=True, name="utun1"), syscalls=fake)
    assert fake.calls == []


def test_utun_clean_up_after_a_failure_at_every_step(make_fake: Fake) -> None:
    config = tun_config(ipv6=(IPv6Interface("fd00::1/64"),))
    probe = make_fake("darwin")
    iface, queue = darwin.open_device(config, syscalls=probe)
    steps = len(probe.calls)
    queue.close()
    for step in range(steps):
        fake = make_fake("darwin")
        fake.fail_call(step, errno.EIO)
        try:
            iface, queue = darwin.open_device(config, syscalls=fake)
        except (DeviceError, OSError):
            pass
        else:
            # only closing a control socket may fail harmlessly (the fd is released anyway)
            assert probe.calls[step].name == "close", f"step {step} did not fail"
            queue.close()
            iface.close()
        assert fake.open_fds() == set(), f"step {step} ({probe.calls[step].name}) leaked an fd"
        assert set(fake.interfaces) == {"lo0"}, f"step {step} left {set(fake.interfaces)}"
        assert fake.routes == [], f"step {step} left routes"


# -- utun: framing -----------------------------------------------------------------------------


def test_utun_header_removed_and_added_on_every_path(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    _iface, queue = darwin.open_device(tun_config(routes=()), syscalls=fake)
    fd = queue.fileno()
    p4, p6 = ipv4_packet(), ipv6_packet()
    # recv / recv_into, v4 and v6: AF_INET 2, AF_INET6 30, big-endian
    fake.inject(fd, af_header(2) + p4)
    assert queue.recv(2000) == p4
    fake.inject(fd, af_header(AF_INET6) + p6)
    buf = bytearray(2000)
    assert queue.recv_into(memoryview(buf)) == len(p6)
    assert bytes(buf[: len(p6)]) == p6
    # recv_batch
    fake.inject(fd, af_header(2) + p4)
    fake.inject(fd, af_header(AF_INET6) + p6)
    batch = PacketBatch()
    assert queue.recv_batch(batch, 2000) == 2
    assert batch.to_list() == [p4, p6]
    with pytest.raises(BlockingIOError):
        queue.recv(2000)
    # send / send_batch
    assert queue.send(p4) == len(p4)
    assert queue.send(p6) == len(p6)
    out = PacketBatch()
    out.extend([p6, p4])
    assert queue.send_batch(out) == 2
    assert fake.sent(fd) == [
        af_header(2) + p4,
        af_header(AF_INET6) + p6,
        af_header(AF_INET6) + p6,
        af_header(2) + p4,
    ]
    queue.close()


def test_utun_packet_information_keeps_the_header(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    _, queue = darwin.open_device(tun_config(routes=(), packet_information=True), syscalls=fake)
    fd = queue.fileno()
    framed = af_header(AF_INET6) + ipv6_packet()
    fake.inject(fd, framed)
    assert queue.recv(2000) == framed
    queue.send(framed)
    assert fake.sent(fd) == [framed]
    queue.close()


def test_adopted_utun_fd_is_configurable(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    fd, name = darwin.open_utun(fake, None)
    iface, queue = darwin.adopt_fd(fd, close_fd=True, syscalls=fake)
    assert iface is not None and iface.name() == name
    fake.inject(fd, af_header(2) + ipv4_packet())
    assert queue.recv(2000) == ipv4_packet()
    queue.close()
    assert fake.open_fds() == set()


# -- configuration -----------------------------------------------------------------------------


def test_remove_address_takes_its_route(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    config = tun_config(routes=(), ipv6=(IPv6Interface("fd00::1/64"),))
    iface, queue = darwin.open_device(config, syscalls=fake)
    assert iface.addresses() == [IPv4Interface("10.0.0.1/24"), IPv6Interface("fd00::1/64")]
    iface.remove_address(IPv6Interface("fd00::1/64").ip)
    delete = fake.ioctls(SIOCDIFADDR_IN6)[0]
    assert delete.args[2][:16] == name16("utun0") and len(delete.args[2]) == 288
    iface.remove_address(IPv4Interface("10.0.0.1/24").ip)
    assert (
        fake.ioctls(SIOCDIFADDR)[0].args[2]
        == name16("utun0") + bytes([16, 2, 0, 0, 10, 0, 0, 1]) + b"\0" * 8
    )
    assert iface.addresses() == []
    assert fake.routes == []
    queue.close()


def test_routes_listed_from_the_dump(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    iface, queue = darwin.open_device(tun_config(associate_route=False), syscalls=fake)
    assert iface.routes() == [Route(ip_network("192.0.2.0/24"))]
    iface.add_route(Route(ip_network("198.51.100.0/24"), ip_network("10.0.0.2/32").network_address))
    with pytest.raises(DeviceError, match="already exists"):
        iface.add_route(Route(ip_network("192.0.2.0/24")))
    iface.remove_route(Route(ip_network("192.0.2.0/24")))
    with pytest.raises(DeviceError, match="no route"):
        iface.remove_route(Route(ip_network("192.0.2.0/24")))
    queue.close()


def test_ipv6_needs_mtu_1280(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    iface, queue = darwin.open_device(tun_config(mtu=1200, routes=()), syscalls=fake)
    with pytest.raises(ConfigError, match="1280"):
        iface.add_address(IPv6Interface("fd00::1/64"))
    assert fake.ioctls(SIOCAIFADDR_IN6) == []
    queue.close()


def test_tun_has_no_mac_and_no_rename(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    iface, queue = darwin.open_device(tun_config(routes=()), syscalls=fake)
    with pytest.raises(UnsupportedError):
        iface.mac_address()
    with pytest.raises(UnsupportedError):
        iface.set_name("utun9")
    with pytest.raises(UnsupportedError):
        iface.open_queue()
    queue.close()


# -- feth TAP ----------------------------------------------------------------------------------


def tap_config(**kw: object) -> DeviceConfig:
    import attrs

    config = DeviceBuilder().layer(Layer.L2).ipv4("10.1.0.1", 24).mtu(1400).config()
    return attrs.evolve(config, **kw)  # type: ignore[arg-type]


def test_feth_build_sequence(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    fake.busy_bpf.add(0)
    mac = bytes.fromhex("020000aabbcc")
    iface, queue = darwin.open_device(tap_config(mac=mac), syscalls=fake)
    assert (iface.name(), iface.peer) == ("feth0", "feth1")
    assert trace(fake)[:16] == [
        ("socket", AF_NDRV, 3, 0),
        ("fcntl",),
        ("ioctl", SIOCIFCREATE),
        ("ioctl", SIOCIFCREATE),
        ("run", ("ifconfig", "feth1", "peer", "feth0")),
        ("bind",),
        ("connect",),
        ("open", "/dev/bpf0"),  # busy: skipped
        ("open", "/dev/bpf1"),
        ("ioctl", BIOCSBLEN),
        ("ioctl", BIOCIMMEDIATE),
        ("ioctl", BIOCSSEESENT),
        ("ioctl", BIOCSETIF),
        ("ioctl", BIOCSHDRCMPLT),
        ("ioctl", BIOCPROMISC),
        ("socket", 2, 2, 0),
    ]
    ndrv = fake.calls[0].result
    # sys/fcntl.h (Darwin): F_SETFD 2, FD_CLOEXEC 1 — no SOCK_CLOEXEC on Darwin
    assert fake.calls[1].args == (ndrv, 2, 1)
    assert fake.calls[2].args == (ndrv, SIOCIFCREATE, name16("feth") + b"\0" * 16)
    # net/ndrv.h sockaddr_ndrv {snd_len 18, snd_family AF_NDRV, snd_name}
    assert fake.calls[5].args == (ndrv, bytes([18, AF_NDRV]) + name16("feth1"))
    assert fake.calls[8].args[1] == 0x2 | 0x1000000  # O_RDWR | O_CLOEXEC (Darwin)
    assert fake.calls[9].args[2] == struct.pack("<I", 131072)
    assert fake.calls[10].args[2] == struct.pack("<I", 1)
    assert fake.calls[11].args[2] == struct.pack("<I", 0)
    assert fake.calls[12].args[2] == name16("feth1") + b"\0" * 16
    assert fake.calls[14].args[2] == 0
    # the peer is brought up for I/O, MTU on both ends, MAC on the device (sa_len 6, AF_LINK)
    assert fake.interfaces["feth1"].flags & 0x41 == 0x41
    assert fake.interfaces["feth0"].mtu == fake.interfaces["feth1"].mtu == 1400
    lladdr = fake.ioctls(SIOCSIFLLADDR)[0].args[2]
    assert lladdr == name16("feth0") + bytes([6, 18]) + mac + b"\0" * 8
    assert iface.mac_address() == mac
    assert fake.interfaces["feth0"].peer == "feth1"
    assert not any(r for r in fake.routes)  # associate_route is off for TAP
    queue.close()
    iface.close()
    assert fake.open_fds() == set()
    assert set(fake.interfaces) == {"lo0"}
    destroyed = [c.args[2][:16] for c in fake.ioctls(SIOCIFDESTROY)]
    assert destroyed == [name16("feth1"), name16("feth0")]


def test_feth_persist_keeps_the_pair(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    iface, queue = darwin.open_device(
        tap_config(persist=True, name="feth5", peer_feth="feth6"), syscalls=fake
    )
    queue.close()
    iface.close()
    assert {"feth5", "feth6"} <= set(fake.interfaces)


def test_feth_reuses_an_existing_named_pair(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    fake.add_interface("feth8", kind="feth")
    iface, queue = darwin.open_device(tap_config(name="feth8"), syscalls=fake)
    queue.close()
    iface.close()
    assert "feth8" in fake.interfaces  # not ours: left in place


def test_feth_bpf_records_and_ndrv_writes(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    iface, queue = darwin.open_device(tap_config(), syscalls=fake)
    frame_a = bytes.fromhex("ffffffffffff020000000001 0806".replace(" ", "")) + b"a" * 46
    frame_b = bytes.fromhex("020000000001020000000002 0800".replace(" ", "")) + b"b" * 47

    def record(frame: bytes) -> bytes:
        # net/bpf.h: bpf_hdr {timeval32 bh_tstamp; u_int32 bh_caplen; u_int32 bh_datalen;
        # u_short bh_hdrlen} — hdrlen 18; the next record at BPF_WORDALIGN(18 + caplen)
        raw = struct.pack("<8xIIH", len(frame), len(frame), 18) + frame
        return raw + b"\0" * (-len(raw) % 4)

    fake.inject(queue.fileno(), record(frame_a) + record(frame_b))
    assert queue.recv(2000) == frame_a
    assert queue.recv(2000) == frame_b  # from the same read
    with pytest.raises(BlockingIOError):
        queue.recv(2000)
    fake.inject(queue.fileno(), record(frame_b))
    batch = PacketBatch()
    assert queue.recv_batch(batch, 2000) == 1
    assert batch.to_list() == [frame_b]
    assert isinstance(queue, darwin.FethQueue)
    ndrv = queue._ndrv
    queue.send(frame_a)
    out = PacketBatch()
    out.extend([frame_b, frame_a])
    assert queue.send_batch(out) == 2
    assert fake.sent(ndrv) == [frame_a, frame_b, frame_a]
    queue.close()
    iface.close()


def test_feth_clean_up_after_a_failure_at_every_step(make_fake: Fake) -> None:
    config = tap_config(mac=bytes.fromhex("020000aabbcc"))
    probe = make_fake("darwin")
    iface, queue = darwin.open_device(config, syscalls=probe)
    steps = len(probe.calls)
    queue.close()
    iface.close()
    for step in range(steps):
        fake = make_fake("darwin")
        fake.fail_call(step, errno.EIO)
        try:
            iface, queue = darwin.open_device(config, syscalls=fake)
        except (DeviceError, OSError):
            pass
        else:
            # only closing a control socket may fail harmlessly (the fd is released anyway)
            assert probe.calls[step].name == "close", f"step {step} did not fail"
            queue.close()
            iface.close()
        assert fake.open_fds() == set(), f"step {step} ({probe.calls[step].name}) leaked an fd"
        assert set(fake.interfaces) == {"lo0"}, f"step {step} left {set(fake.interfaces)}"


def test_feth_names(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    with pytest.raises(ConfigError, match="fethN"):
        darwin.open_device(tap_config(name="tap0"), syscalls=fake)
    with pytest.raises(ConfigError, match="peer"):
        darwin.open_device(tap_config(peer_feth="en1"), syscalls=fake)
    assert fake.calls == []


def test_feth_needs_root(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    fake.fail_ioctl(SIOCIFCREATE, errno.EPERM)
    with pytest.raises(DevicePermissionError, match="root"):
        darwin.open_device(tap_config(), syscalls=fake)
    assert fake.open_fds() == set()


def test_flavor_is_darwin() -> None:
    assert darwin.FLAVOR is _bsd.DARWIN


def test_bpf_records_are_aligned_to_four_bytes() -> None:
    # net/bpf.h: BPF_ALIGNMENT sizeof(int32_t), BPF_WORDALIGN(x) rounds up to it: a 64-byte
    # frame behind the 18-byte header ends at 82, so the next record starts at 84 (not 88)
    first, second = b"\x01" * 64, b"\x02" * 60
    raw = struct.pack("<8xIIH", 64, 64, 18) + first + b"\0" * 2
    raw += struct.pack("<8xIIH", 60, 60, 18) + second + b"\0" * 2
    assert darwin.parse_bpf_records(raw) == [first, second]
