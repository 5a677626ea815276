"""mtu_v6() / set_mtu_v6() (tun-rs's, Windows): the IPv6 MTU of the interface on its own
(``NlMtu`` of the IPv6 interface row), the device's size limits following the larger of the
two; UnsupportedError elsewhere, before any system call."""

from __future__ import annotations

import anyio
import pytest

from tests.unit.platforms.support import UNIX_DEVICES
from tunflow import (
    ClosedDeviceError,
    ConfigError,
    DeviceBuilder,
    Layer,
    PacketTooLargeError,
    UnsupportedError,
)
from tunflow.platform.fake import FakeSyscalls, pretend_platform
from tunflow.platform.windows import iphlpapi

from .support import ipv4_packet, ipv6_packet


def _mtus(fake: FakeSyscalls) -> tuple[int, int]:
    (iface,) = fake.windows.interfaces.values()
    return iface["v4"]["mtu"], iface["v6"]["mtu"]


def test_set_mtu_v6_sets_the_ipv6_row_only() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg5").mtu(1420).build_sync() as dev:
            assert dev.mtu_v6() == 1420  # mtu() sets both families
            fake.calls.clear()
            dev.set_mtu_v6(1380)
            sets = [c.args[0]._obj for c in fake.named("iphlpapi.SetIpInterfaceEntry")]
            assert [(r.Family, r.NlMtu) for r in sets] == [(iphlpapi.AF_INET6, 1380)]
            assert _mtus(fake) == (1420, 1380)
            assert (dev.mtu(), dev.mtu_v6()) == (1420, 1380)  # mtu() is IPv4's, as tun-rs's
            dev.set_mtu(1400)
            assert (dev.mtu(), dev.mtu_v6()) == (1400, 1400)
            dev.set_mtu_v6(1280)
            dev.set_mtu_v6(65535)
            assert _mtus(fake) == (1400, 65535)
        with pytest.raises(ClosedDeviceError):
            dev.mtu_v6()
        with pytest.raises(ClosedDeviceError):
            dev.set_mtu_v6(1400)
        fake.close_all()


def test_the_limits_follow_the_larger_mtu() -> None:
    # An IPv6 MTU above IPv4's lets IPv6 packets of that size through: the face must neither
    # drop them on reading nor refuse them on sending.
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg6").mtu(1280).build_sync() as dev:
            dev.set_mtu_v6(9000)
            assert dev.max_size == 9000
            big = ipv6_packet(b"x" * (9000 - 48))
            assert len(big) == 9000
            dev.send(big)
            assert fake.windows.session().sent[-1] == big
            fake.windows.inject(big)
            assert dev.recv(timeout=1) == big
            buf = bytearray(dev.max_size)
            fake.windows.inject(big)
            assert dev.recv_into(buf, timeout=1) == 9000
            with pytest.raises(PacketTooLargeError):
                dev.send(ipv6_packet(b"x" * 9000))  # above both
            dev.set_mtu_v6(1280)  # the larger is IPv4's again
            assert dev.max_size == 1280
            with pytest.raises(PacketTooLargeError):
                dev.send(ipv4_packet(b"x" * 1300))
        fake.close_all()


def test_an_ipv6_mtu_raised_outside_tunflow_is_found() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg7").mtu(1400).build_sync() as dev:
            (iface,) = fake.windows.interfaces.values()
            iface["v6"]["mtu"] = 4000  # netsh interface ipv6 set subinterface … mtu=4000
            big = ipv6_packet(b"y" * (4000 - 48))
            dev.send(big)  # refused against 1400, then the MTUs are read again
            assert dev.max_size == 4000
            fake.windows.inject(big)
            assert dev.recv(timeout=1) == big
        fake.close_all()


@pytest.mark.parametrize("bad", [1279, 68, 65536, True, 1400.0, "1400", None])
def test_a_bad_ipv6_mtu_is_refused_before_any_call(bad: object) -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg8").build_sync() as dev:
            fake.calls.clear()
            with pytest.raises(ConfigError, match="IPv6 MTU"):
                dev.set_mtu_v6(bad)  # type: ignore[arg-type]
            assert fake.calls == []
        fake.close_all()


def test_no_ipv6_stack_is_unsupported() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        fake.windows.ipv6 = False
        with DeviceBuilder().name("wg9").build_sync() as dev:
            assert dev.max_size == 1500
            with pytest.raises(UnsupportedError, match="no IPv6 stack"):
                dev.mtu_v6()
            with pytest.raises(UnsupportedError, match="no IPv6 stack"):
                dev.set_mtu_v6(1400)
            dev.set_mtu(1400)  # IPv4's alone, as before
            assert dev.max_size == 1400
        fake.close_all()


@pytest.mark.parametrize(("platform", "layer"), UNIX_DEVICES)
def test_mtu_v6_is_refused_off_windows(platform: str, layer: Layer) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().layer(layer).ipv4("10.0.0.1", 24).build_sync() as dev:
            fake.calls.clear()
            with pytest.raises(UnsupportedError, match="Windows only"):
                dev.mtu_v6()
            with pytest.raises(UnsupportedError, match="Windows only"):
                dev.set_mtu_v6(1400)
            with pytest.raises(ConfigError):
                dev.set_mtu_v6(1000)
            assert fake.calls == []
        fake.close_all()


def test_mtu_v6_is_awaited_on_an_async_device() -> None:
    async def main() -> None:
        async with DeviceBuilder().name("wg10").build_async() as dev:
            await dev.set_mtu_v6(1300)
            assert await dev.mtu_v6() == 1300
            assert await dev.mtu() == 1500
            assert dev.max_size == 1500

    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        anyio.run(main)
        fake.close_all()
