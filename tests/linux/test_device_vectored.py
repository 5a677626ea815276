"""tun-rs parity on the real kernel: vectored reads and writes, and the broadcast address."""

from __future__ import annotations

import errno
import itertools
import socket
import threading
import time
from ipaddress import IPv4Address

import anyio
import pytest

from tests.helpers import ipv4_udp, ipv6_udp, udp_payload, udp_send
from tunflow import (
    AsyncDevice,
    ClosedDeviceError,
    ConfigError,
    DeviceBuilder,
    DeviceError,
    InterruptedCallError,
    InterruptEvent,
    Layer,
    MalformedPacketError,
    PacketTooLargeError,
    SyncDevice,
    TruncatedPacketError,
    testing,
)
from tunflow.platform._unix import IOV_MAX

pytestmark = pytest.mark.needs_root


def _split(packet: bytes, *cuts: int) -> list[bytes]:
    edges = [0, *cuts, len(packet)]
    return [packet[a:b] for a, b in itertools.pairwise(edges)]


def _recv_udp_vectored(
    dev: SyncDevice, port: int, sizes: list[int]
) -> tuple[bytes, list[bytearray]]:
    """The first UDP packet to ``port``, read with ``recv_vectored`` into buffers of ``sizes``."""
    deadline = time.monotonic() + 10
    while True:
        bufs = [bytearray(n) for n in sizes]
        n = dev.recv_vectored(bufs, timeout=5)
        packet = b"".join(bufs)[:n]
        parsed = udp_payload(packet)
        if parsed and parsed[1] == port:
            return packet, bufs
        assert time.monotonic() < deadline


def test_recv_and_send_vectored_carry_one_packet_across_buffers(netns: testing.Netns) -> None:
    with DeviceBuilder().ipv4("10.160.0.1", 24).ipv6("fd60::1", 64).build_sync() as dev:
        udp_send("10.160.0.2", 5000, b"scattered v4")
        packet, bufs = _recv_udp_vectored(dev, 5000, [20, 3, dev.max_size])
        assert bufs[0][0] == 0x45 and udp_payload(packet)[2] == b"scattered v4"  # type: ignore[index]
        assert bytes(bufs[1]) == packet[20:23]  # each filled before the next
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4,
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6,
        ):
            s4.bind(("10.160.0.1", 6000))
            s6.bind(("fd60::1", 6000))
            s4.settimeout(5)
            s6.settimeout(5)
            p4 = ipv4_udp("10.160.0.2", "10.160.0.1", 7000, 6000, b"gathered v4")
            # the header cut short in the first buffer is still checked, and written whole
            assert dev.send_vectored(_split(p4, 1, 7, 30)) == len(p4)
            assert s4.recv(100) == b"gathered v4"
            p6 = ipv6_udp("fd60::2", "fd60::1", 7000, 6000, b"gathered v6")
            assert dev.send_vectored([b"", memoryview(p6)[:50], bytearray(p6[50:])]) == len(p6)
            assert s6.recv(100) == b"gathered v6"
        stats = dev.statistics()
        assert stats.tx_packets == 2 and stats.tx_bytes == len(p4) + len(p6)
        assert stats.rx_packets >= 1


def test_vectored_calls_check_as_recv_into_and_send_do(netns: testing.Netns) -> None:
    with DeviceBuilder().ipv4("10.161.0.1", 24).mtu(1400).build_sync() as dev:
        good = ipv4_udp("10.161.0.2", "10.161.0.1", 1, 9, b"x")
        with pytest.raises(ValueError, match="max_size=1400"):
            dev.recv_vectored([bytearray(700), bytearray(699)], timeout=0)
        with pytest.raises(ConfigError, match="IOV_MAX"):
            dev.recv_vectored([bytearray(2)] * (IOV_MAX + 1), timeout=0)
        with pytest.raises(ConfigError, match="IOV_MAX"):
            dev.send_vectored([good] + [b""] * IOV_MAX)
        with pytest.raises(TypeError, match="sequence of buffers"):
            dev.send_vectored(good)
        with pytest.raises(TypeError, match="sequence of buffers"):
            dev.recv_vectored(bytearray(2000))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="writable"):
            dev.recv_vectored([bytes(2000)], timeout=0)  # type: ignore[list-item]
        with pytest.raises(TypeError):
            dev.send_vectored([good, 5])  # type: ignore[list-item]
        with pytest.raises(MalformedPacketError, match="version nibble"):
            dev.send_vectored([b"\x00\x01", b"\x02\x03"])
        with pytest.raises(MalformedPacketError):
            dev.send_vectored([good, b"trailing"])
        with pytest.raises(TruncatedPacketError):
            dev.send_vectored([good[:10], good[10:19]])
        with pytest.raises(TruncatedPacketError):
            dev.send_vectored([])
        big = ipv4_udp("10.161.0.2", "10.161.0.1", 1, 9, bytes(2000))
        with pytest.raises(PacketTooLargeError):
            dev.send_vectored([big[:1000], big[1000:]])
        # exactly IOV_MAX buffers: one more than writev takes beside the header, still one packet
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("10.161.0.1", 9))
            s.settimeout(5)
            many = [good[i : i + 1] for i in range(len(good))]
            many += [b""] * (IOV_MAX - len(many))
            assert dev.send_vectored(many) == len(good)
            assert s.recv(100) == b"x"
        udp_send("10.161.0.2", 5000, b"into many")
        packet, _ = _recv_udp_vectored(dev, 5000, [dev.max_size] + [1] * (IOV_MAX - 1))
        assert udp_payload(packet)[2] == b"into many"  # type: ignore[index]
        # nothing waiting: the built-in TimeoutError, as recv_into
        deadline = time.monotonic() + 30
        while True:
            try:
                dev.recv_vectored([bytearray(dev.max_size)], timeout=0.1)
            except TimeoutError:
                break
            assert time.monotonic() < deadline  # (the kernel's own chatter first)


def test_vectored_calls_wake_on_shutdown_and_interrupt(netns: testing.Netns) -> None:
    with (
        DeviceBuilder().ipv4("10.162.0.1", 24).build_sync() as dev,
        InterruptEvent() as stop,
    ):
        outcomes: dict[str, BaseException] = {}
        p = ipv4_udp("10.162.0.2", "10.162.0.1", 1, 2, b"x")

        def read() -> None:
            try:
                while True:  # (the kernel's own chatter may be read first)
                    dev.recv_vectored(bufs, timeout=30, interrupt=stop)
            except BaseException as exc:
                outcomes["recv_vectored"] = exc

        bufs = [bytearray(20), bytearray(dev.max_size)]
        for wake in (stop.trigger, dev.shutdown):
            outcomes.clear()
            reader = threading.Thread(target=read)
            reader.start()
            time.sleep(0.3)
            assert not outcomes
            wake()
            reader.join(10)
            assert not reader.is_alive()
            if wake == stop.trigger:
                assert isinstance(outcomes["recv_vectored"], InterruptedCallError)
                with pytest.raises(InterruptedCallError):  # triggered: nothing is written
                    dev.send_vectored([p[:20], p[20:]], interrupt=stop)
                stop.reset()
            else:
                assert isinstance(outcomes["recv_vectored"], ClosedDeviceError)
        with pytest.raises(ClosedDeviceError):
            dev.send_vectored([p])
    with pytest.raises(ClosedDeviceError):
        dev.recv_vectored(bufs, timeout=0)


def test_vectored_calls_on_offload_tap_and_packet_information_devices(
    netns: testing.Netns,
) -> None:
    # each gives what recv gives, and writes what send writes
    with (
        DeviceBuilder().ipv4("10.164.0.1", 24).offload().build_sync() as off,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,
    ):
        assert off.offload_info.vnet_hdr
        udp_send("10.164.0.2", 5000, bytes(3000))  # one datagram, two fragments
        packet, _ = _recv_udp_vectored(off, 5000, [20, off.max_size])
        assert packet[:1] == b"\x45"
        s.bind(("10.164.0.1", 6000))
        s.settimeout(5)
        p = ipv4_udp("10.164.0.2", "10.164.0.1", 1, 6000, b"behind a zero virtio header")
        assert off.send_vectored(_split(p, 10, 20)) == len(p)
        assert s.recv(100) == b"behind a zero virtio header"
    with (
        DeviceBuilder().ipv4("10.165.0.1", 24).packet_information().build_sync() as pi,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,
    ):
        udp_send("10.165.0.2", 5000, b"pi")
        deadline = time.monotonic() + 10
        while True:
            bufs = [bytearray(4), bytearray(pi.max_size)]
            n = pi.recv_vectored(bufs, timeout=5)
            if bytes(bufs[0][2:4]) == b"\x08\x00" and udp_payload(bytes(bufs[1][: n - 4])):
                break
            assert time.monotonic() < deadline
        assert udp_payload(bytes(bufs[1][: n - 4]))[2] == b"pi"  # type: ignore[index]
        s.bind(("10.165.0.1", 6000))
        s.settimeout(5)
        p = ipv4_udp("10.165.0.2", "10.165.0.1", 1, 6000, b"past the header")
        with pytest.raises(MalformedPacketError, match="version"):
            pi.send_vectored([b"\x00\x00\x08\x00", b"\x99" + bytes(30)])
        with pytest.raises(TruncatedPacketError):
            pi.send_vectored([b"\x00\x00", b"\x08"])
        assert pi.send_vectored([b"\x00\x00", b"\x08\x00" + p[:30], p[30:]]) == 4 + len(p)
        assert s.recv(100) == b"past the header"
    name = testing.unique_name("tv")
    with DeviceBuilder().name(name).layer(Layer.L2).build_sync() as tap:
        frame = bytes.fromhex("ffffffffffff020000000001") + b"\x08\x06" + bytes(46)
        with pytest.raises(PacketTooLargeError):
            tap.send_vectored([frame, bytes(tap.max_size)])
        assert tap.send_vectored([frame[:6], frame[6:]]) == len(frame)


def test_set_broadcast_changes_it_and_keeps_routes_and_secondaries(netns: testing.Netns) -> None:
    name = testing.unique_name("bc")
    with DeviceBuilder().name(name).ipv4("10.166.0.1", 24).build_sync() as dev:
        assert dev.broadcast() == IPv4Address("10.166.0.255")  # what the build set
        netns.run("ip", "addr", "add", "10.166.0.2/24", "dev", name)  # a secondary
        dev.add_route("192.0.2.0/24")
        dev.add_route("198.51.100.0/24", "10.166.0.9")
        routes = set(dev.routes())
        dev.set_broadcast("10.166.0.127")
        assert dev.broadcast() == IPv4Address("10.166.0.127")
        shown = netns.ip_json("-4", "addr", "show", "dev", name)[0]["addr_info"]
        assert (shown[0]["local"], shown[0].get("broadcast")) == ("10.166.0.1", "10.166.0.127")
        assert {a["local"] for a in shown} == {"10.166.0.1", "10.166.0.2"}
        assert set(dev.routes()) == routes  # the kernel dropped them; they are back
        dev.set_broadcast(IPv4Address("0.0.0.0"))
        assert dev.broadcast() is None
        for bad in ("fd00::1", "not an address", 5, None):
            with pytest.raises(ConfigError):
                dev.set_broadcast(bad)  # type: ignore[arg-type]
    with DeviceBuilder().ipv6("fd66::1", 64).build_sync() as v6only:
        assert v6only.broadcast() is None
        with pytest.raises(DeviceError, match="no IPv4 address") as info:
            v6only.set_broadcast("10.0.0.255")
        assert info.value.errno == errno.EADDRNOTAVAIL
    with DeviceBuilder().ipv4("10.167.0.1", 32, "10.167.0.2").build_sync() as ptp:
        assert ptp.broadcast() is None  # a point-to-point address has none
    with pytest.raises(ClosedDeviceError):
        ptp.broadcast()
    with pytest.raises(ClosedDeviceError):
        ptp.set_broadcast("10.167.0.255")


@pytest.mark.anyio
async def test_async_vectored_and_broadcast(netns: testing.Netns) -> None:
    async with DeviceBuilder().ipv4("10.168.0.1", 24).build_async() as dev:
        assert isinstance(dev, AsyncDevice)
        udp_send("10.168.0.2", 5000, b"async scattered")
        with anyio.fail_after(10):
            while True:
                bufs = [bytearray(20), bytearray(dev.max_size)]
                n = await dev.recv_vectored(bufs)
                parsed = udp_payload(b"".join(bufs)[:n])
                if parsed and parsed[1] == 5000:
                    break
        assert parsed[2] == b"async scattered"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("10.168.0.1", 6000))
            s.settimeout(5)
            p = ipv4_udp("10.168.0.2", "10.168.0.1", 1, 6000, b"async gathered")
            assert await dev.send_vectored(_split(p, 5, 28)) == len(p)
            assert s.recv(100) == b"async gathered"
        with pytest.raises(MalformedPacketError):
            await dev.send_vectored([b"\x00", b"\x01"])
        with pytest.raises(ValueError, match="max_size"):
            await dev.recv_vectored([bytearray(10)])
        with pytest.raises(TypeError):
            await dev.recv_vectored([b"read-only"])  # type: ignore[list-item]
        # a refused call leaves the device free to receive
        assert await dev.broadcast() == IPv4Address("10.168.0.255")
        await dev.set_broadcast("10.168.0.127")
        assert await dev.broadcast() == IPv4Address("10.168.0.127")
        with pytest.raises(ConfigError):
            await dev.set_broadcast("fd00::1")
        result: list[BaseException] = []

        async def blocked() -> None:
            try:
                while True:
                    await dev.recv_vectored([bytearray(dev.max_size)])
            except BaseException as exc:
                result.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocked)
            await anyio.sleep(0.2)
            await dev.aclose()
        assert isinstance(result[0], ClosedDeviceError)
        with pytest.raises(ClosedDeviceError):
            await dev.send_vectored([p])


def test_set_broadcast_with_promote_secondaries_keeps_the_primary(netns: testing.Netns) -> None:
    # systemd turns promote_secondaries on: the kernel's delete and re-insert of the address
    # promoted its secondary in its place, the changed address coming back as a secondary
    netns.run("sysctl", "-qw", "net.ipv4.conf.all.promote_secondaries=1")
    name = testing.unique_name("bp")
    with DeviceBuilder().name(name).ipv4("10.169.0.1", 24).build_sync() as dev:
        netns.run("ip", "addr", "add", "10.169.0.2/24", "dev", name)
        netns.run("ip", "addr", "add", "10.169.0.3/24", "dev", name)
        dev.add_route("192.0.2.0/24")
        routes = set(dev.routes())
        dev.set_broadcast("10.169.0.127")
        assert dev.broadcast() == IPv4Address("10.169.0.127")
        shown = netns.ip_json("-4", "addr", "show", "dev", name)[0]["addr_info"]
        assert [(a["local"], a.get("secondary", False)) for a in shown] == [
            ("10.169.0.1", False),
            ("10.169.0.2", True),
            ("10.169.0.3", True),
        ]
        assert set(dev.routes()) == routes
