"""Windows backend edges: partial batch writes on a full Wintun ring, the ring capacity bounds,
the writer's wait, the media status, and what belongs to this adapter only."""

from __future__ import annotations

import time
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, ip_network
from typing import Any

import pytest

from tunflow.packet import PacketBatch
from tunflow.platform import windows
from tunflow.platform._base import Route
from tunflow.platform.windows import wintun

from .support import ipv4_packet
from .test_windows import Fake, tap_config, tun_config


def test_a_full_ring_mid_batch_returns_what_was_sent(wintun_device: Any) -> None:
    fake, _iface, queue = wintun_device
    session = fake.windows.session()
    p = ipv4_packet()
    seen = [0]

    def third_and_later(_call: Any) -> bool:
        seen[0] += 1
        return seen[0] > 2

    def full(*_args: Any) -> None:
        fake.windows.last_error = 111  # ERROR_BUFFER_OVERFLOW: the ring is full
        return None

    fake.on("wintun.WintunAllocateSendPacket", when=third_and_later, handler=full)
    batch = PacketBatch()
    batch.extend([p, p, p, p])
    assert queue.send_batch(batch) == 2  # the rest stays for the caller to retry
    assert len(session.sent) == 2
    with pytest.raises(BlockingIOError):  # nothing sent at all: the ring is full
        queue.send_batch(batch, 2)


def test_a_failed_read_after_some_packets_returns_those(wintun_device: Any) -> None:
    fake, _iface, queue = wintun_device
    fake.windows.inject(ipv4_packet())
    fake.windows.inject(ipv4_packet(b"two"))
    seen = [0]

    def second(_call: Any) -> bool:
        seen[0] += 1
        return seen[0] == 2

    def fail(*_args: Any) -> None:
        fake.windows.last_error = 31  # ERROR_GEN_FAILURE
        return None

    fake.on("wintun.WintunReceivePacket", when=second, handler=fail)
    batch = PacketBatch()
    assert queue.recv_batch(batch, 2000) == 1 and batch.to_list() == [ipv4_packet()]


def test_ring_capacity_bounds_are_inclusive() -> None:
    # wintun.h: WINTUN_MIN_RING_CAPACITY 0x20000, WINTUN_MAX_RING_CAPACITY 0x4000000
    for capacity in (wintun.MIN_RING_CAPACITY, wintun.MAX_RING_CAPACITY):
        assert wintun._ring_capacity(tun_config(ring_capacity=capacity)) == capacity


def test_a_writer_waits_a_few_milliseconds_not_its_timeout(wintun_device: Any) -> None:
    # Wintun has no "ring has room" event: a writer polls every 5 ms whatever its timeout
    _fake, _iface, queue = wintun_device
    start = time.monotonic()
    assert queue.wait(True, 30.0, None) is True
    assert time.monotonic() - start < 10.0


def test_tap_windows_media_status_is_what_was_last_set(make_fake: Fake) -> None:
    fake = make_fake("windows")
    fake.windows.add_tap_adapter("tap-ovpn")
    iface, queue = windows.open_device(tap_config(), syscalls=fake)
    assert iface.is_running()
    iface.set_enabled(False)
    assert not iface.is_running()
    start = time.monotonic()
    assert queue.wait(True, 30.0, None) is True  # writes complete synchronously
    assert time.monotonic() - start < 10.0
    queue.close()
    iface.close()


def test_addresses_and_routes_of_other_interfaces_are_not_listed(wintun_device: Any) -> None:
    fake, iface, _queue = wintun_device
    w = fake.windows
    other = w.new_luid()
    w.add_interface(other, "Ethernet")
    w.addresses.append((other, IPv4Address("192.168.1.5"), 24))
    w.routes.append((other, ip_network("0.0.0.0/0"), IPv4Address("192.168.1.1"), 0))
    assert IPv4Interface("192.168.1.5/24") not in iface.addresses()
    assert all(r.destination != ip_network("0.0.0.0/0") for r in iface.routes())
    assert Route(ip_network("0.0.0.0/0")) not in iface.routes()


def test_link_local_ipv6_does_not_hold_the_mtu_up(wintun_device: Any) -> None:
    _fake, iface, _queue = wintun_device
    iface.remove_address(IPv6Interface("fd00::1/64").ip)
    iface.add_address(IPv6Interface("fe80::1/64"))
    iface.set_mtu(1200)
    assert iface.mtu() == 1200
