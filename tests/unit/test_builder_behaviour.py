"""DeviceBuilder's value checks and the shared build steps (:mod:`tunflow.platform._build`):
the documented behaviour a mutation of the checks would change."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from typing import Any

import pytest

from tunflow import ConfigError, DeviceBuilder, UnsupportedError
from tunflow.device.builder import OFFLOAD_ENV
from tunflow.platform._base import Route
from tunflow.platform._build import Additions, reject_windows_only


@pytest.mark.parametrize(
    "setter",
    [
        lambda b: b.tx_queue_len(True),
        lambda b: b.owner(True),
        lambda b: b.group(False),
        lambda b: b.metric(True),
        lambda b: b.mtu(True),
    ],
)
def test_int_setters_refuse_a_bool(setter: Any) -> None:
    # True is an int to Python; as a txqueuelen, uid or gid it is a mistake, not 1
    with pytest.raises(ConfigError, match="must be an int"):
        setter(DeviceBuilder())


@pytest.mark.parametrize("setter", ["owner", "group"])
def test_owner_and_group_refuse_the_no_id_value(setter: str) -> None:
    # (uid_t)-1 is "no user" to the kernel: TUNSETOWNER/TUNSETGROUP would refuse it at the
    # build; the setter refuses it at once, and takes the largest real id
    with pytest.raises(ConfigError, match=r"outside 0\.\.4294967294"):
        getattr(DeviceBuilder(), setter)(0xFFFFFFFF)
    config = getattr(DeviceBuilder(), setter)(0xFFFFFFFE).config()
    assert getattr(config, setter) == 0xFFFFFFFE


def test_tx_queue_len_takes_the_whole_u32_range() -> None:
    assert DeviceBuilder().tx_queue_len(0xFFFFFFFF).config().tx_queue_len == 0xFFFFFFFF
    assert DeviceBuilder().tx_queue_len(0).config().tx_queue_len == 0
    with pytest.raises(ConfigError, match="outside"):
        DeviceBuilder().tx_queue_len(0x1_0000_0000)


@pytest.mark.parametrize("value", ["0", "off", "false", "no", " OFF ", "No"])
def test_every_documented_offload_env_value_turns_it_off(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(OFFLOAD_ENV, value)
    assert DeviceBuilder().offload().config().offload is False


@pytest.mark.parametrize("value", ["1", "on", "yes", ""])
def test_other_offload_env_values_leave_it_as_asked(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(OFFLOAD_ENV, value)
    assert DeviceBuilder().offload().config().offload is True
    assert DeviceBuilder().offload(False).config().offload is False


def test_a_zero_metric_is_refused_off_windows_too() -> None:
    # metric(0) is a metric: ignoring it would leave traffic where the program does not expect
    with pytest.raises(UnsupportedError, match="metric is Windows only"):
        reject_windows_only(DeviceBuilder().metric(0).config(), "Linux")
    reject_windows_only(DeviceBuilder().config(), "Linux")


class _Recorder:
    """A backend with exact undo methods that records what it is asked to take back."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object, object]] = []

    def add_address(self, iface: Any, peer: Any = None) -> None:
        raise AssertionError("not called by undo")

    def remove_address(self, address: Any) -> None:
        self.calls.append(("remove_address", address, None))

    def undo_address(self, iface: Any, peer: Any = None) -> None:
        self.calls.append(("address", iface, peer))

    def add_route(self, route: Route) -> None:
        raise AssertionError("not called by undo")

    def remove_route(self, route: Route) -> None:
        self.calls.append(("remove_route", route.destination, None))

    def undo_route(self, route: Route) -> None:
        self.calls.append(("route", route.destination, None))


def test_undo_takes_back_newest_first_with_the_peer_it_added() -> None:
    added = Additions()
    a4 = IPv4Interface("10.0.0.1/32")
    a6 = IPv6Interface("fd00::1/64")
    added.address(a4, IPv4Address("10.0.0.2"))
    added.address(a6)
    added.route(IPv4Network("192.0.2.0/24"))
    added.route(IPv6Network("2001:db8::/32"))
    backend = _Recorder()
    added.undo(backend)
    assert backend.calls == [
        ("route", IPv6Network("2001:db8::/32"), None),
        ("route", IPv4Network("192.0.2.0/24"), None),
        ("address", a6, None),
        ("address", a4, IPv4Address("10.0.0.2")),
    ]
    assert len(added) == 0


def test_undo_goes_on_past_a_failing_removal() -> None:
    added = Additions()
    added.address(IPv4Interface("10.0.0.1/24"))
    added.route(IPv4Network("192.0.2.0/24"))
    backend = _Recorder()

    def refuse(route: Route) -> None:
        raise OSError(3, "no such route")

    backend.undo_route = refuse  # type: ignore[method-assign]
    added.undo(backend)
    assert backend.calls == [("address", IPv4Interface("10.0.0.1/24"), None)]


def test_offload_falls_back_to_tso_without_uso(monkeypatch: pytest.MonkeyPatch) -> None:
    # a kernel before 6.2 refuses the USO bits: TSO alone is taken, and USO is not claimed
    from tunflow.platform.linux import tun

    asked: list[int] = []

    def ioctl(fd: int, request: int, arg: Any) -> int:
        asked.append(arg)
        if arg & (tun.TUN_F_USO4 | tun.TUN_F_USO6):
            raise OSError(22, "Invalid argument")
        return 0

    monkeypatch.setattr(tun, "_ioctl", ioctl)
    info = tun._negotiate_offload(-1)
    assert asked == [tun.OFFLOAD_TSO_USO, tun.OFFLOAD_TSO]
    assert (info.vnet_hdr, info.tso, info.uso, info.flags) == (True, True, False, tun.OFFLOAD_TSO)


def test_offload_refused_entirely_claims_neither(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunflow.platform.linux import tun

    def ioctl(fd: int, request: int, arg: Any) -> int:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(tun, "_ioctl", ioctl)
    info = tun._negotiate_offload(-1)
    assert (info.tso, info.uso, info.flags) == (False, False, 0)
