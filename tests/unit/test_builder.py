"""DeviceBuilder validation: every bad value is refused before any system call."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv6Interface, ip_network
from typing import Any

import pytest

from tunflow import ConfigError, DeviceBuilder, Layer
from tunflow.netconfig.device import DeviceConfig


def test_every_ipv4_call_adds_an_address() -> None:
    config = (
        DeviceBuilder()
        .ipv4("10.0.0.1", 24)
        .ipv4("10.1.0.1", "255.255.0.0", "10.1.0.2")
        .ipv6("fd00::1", 64)
        .ipv6("fd01::1", "ffff:ffff:ffff:ffff::")
        .route("192.0.2.0/24")
        .route("2001:db8::/32")
        .config()
    )
    assert [s.interface for s in config.ipv4] == [
        IPv4Interface("10.0.0.1/24"),
        IPv4Interface("10.1.0.1/16"),
    ]
    assert str(config.ipv4[1].destination) == "10.1.0.2"
    assert config.ipv6 == (IPv6Interface("fd00::1/64"), IPv6Interface("fd01::1/64"))
    assert config.routes == (ip_network("192.0.2.0/24"), ip_network("2001:db8::/32"))


def test_defaults_match_tun_rs() -> None:
    config = DeviceBuilder().config()
    assert config.layer is Layer.L3
    assert config.enabled is True
    assert not config.offload and not config.multi_queue and not config.packet_information


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DeviceBuilder().name("a" * 16), "16 bytes; the limit is 15"),
        (lambda: DeviceBuilder().name(""), "empty"),
        (lambda: DeviceBuilder().name("bad/name"), "'/'"),
        (lambda: DeviceBuilder().name("bad name"), "whitespace"),
        (lambda: DeviceBuilder().name("tf%d%d"), "one '%d'"),
        (lambda: DeviceBuilder().name("tf%s"), "one '%d'"),
        (lambda: DeviceBuilder().name("tf%"), "one '%d'"),
        (lambda: DeviceBuilder().name("tf%%d"), "one '%d'"),
        (lambda: DeviceBuilder().ipv4("10.0.0.300", 24), "not an IPv4 address"),
        (lambda: DeviceBuilder().ipv4("fd00::1", 24), "not an IPv4 address"),
        (lambda: DeviceBuilder().ipv4("10.0.0.1", 33), "outside 0..32"),
        (lambda: DeviceBuilder().ipv4("10.0.0.1", "255.0.255.0"), "not contiguous"),
        (lambda: DeviceBuilder().ipv4("10.0.0.1", "banana"), "neither"),
        (lambda: DeviceBuilder().ipv4("10.0.0.1", "\u00b2"), "neither"),  # "²".isdigit()
        (lambda: DeviceBuilder().ipv6("fd00::1", "\u00b2"), "neither"),
        (lambda: DeviceBuilder().ipv6_tuple([("fd00::1",)]), "pairs"),  # type: ignore[list-item]
        (lambda: DeviceBuilder().ipv4("224.0.0.1", 24), "multicast"),
        (lambda: DeviceBuilder().ipv4("0.0.0.0", 24), "unspecified"),
        (lambda: DeviceBuilder().ipv4("10.0.0.1", 24, "fd00::2"), "not an IPv4 address"),
        (lambda: DeviceBuilder().ipv6("10.0.0.1", 64), "not an IPv6 address"),
        (lambda: DeviceBuilder().ipv6("fd00::1", 129), "outside 0..128"),
        (lambda: DeviceBuilder().ipv6("ff02::1", 64), "multicast"),
        # (the scope was dropped without a word: the device is the address's scope)
        (lambda: DeviceBuilder().ipv6("fe80::1%eth0", 64), "an interface address takes no scope"),
        (lambda: DeviceBuilder().route("fe80::%eth0/64"), "a route takes no scope"),
        (lambda: DeviceBuilder().route("10.0.0.1/24"), "host bits set; did you mean 10.0.0.0/24"),
        (lambda: DeviceBuilder().route("nonsense"), "not a CIDR network"),
        (lambda: DeviceBuilder().mtu(67), "outside 68..65535"),
        (lambda: DeviceBuilder().mtu(70000), "outside 68..65535"),
        (lambda: DeviceBuilder().mtu("1500"), "must be an int"),  # type: ignore[arg-type]
        (lambda: DeviceBuilder().mac_addr("01:00:5e:00:00:01"), "multicast MAC"),
        (lambda: DeviceBuilder().mac_addr("00:00:00:00:00:00"), "not a usable MAC"),
        (lambda: DeviceBuilder().mac_addr("02:00:00:00:00"), "not a MAC address"),
        (lambda: DeviceBuilder().mac_addr(b"\x02\x00"), "6 bytes"),
        # (bytes(123) is 123 zero bytes: "a MAC address has 6 bytes, not 123")
        (lambda: DeviceBuilder().mac_addr(123), "123 is not a MAC address"),  # type: ignore[arg-type]
        (lambda: DeviceBuilder().layer("l4"), "layer must be"),
        (lambda: DeviceBuilder().tx_queue_len(-1), "outside"),
        (lambda: DeviceBuilder().owner(-5), "outside"),
        (lambda: DeviceBuilder().ring_capacity(10), "outside"),
        # (a NUL was os.open()'s ValueError at the build; ".." the directory /run)
        (lambda: DeviceBuilder().netns("ns\0"), "netns must be a namespace name or path"),
        (lambda: DeviceBuilder().netns(".."), "netns must be a namespace name or path"),
        # a flag is a bool: "false" was taken for its truth (enable("false") brought it up)
        (lambda: DeviceBuilder().enable("false"), "must be True or False"),  # type: ignore[arg-type]
        (lambda: DeviceBuilder().offload(0), "must be True or False"),  # type: ignore[arg-type]
        (lambda: DeviceBuilder().multi_queue("no"), "must be True or False"),  # type: ignore[arg-type]
        (lambda: DeviceBuilder().persist(None), "must be True or False"),  # type: ignore[arg-type]
        (lambda: DeviceBuilder().packet_information(1), "must be True or False"),  # type: ignore[arg-type]
        (lambda: DeviceBuilder().associate_route("y"), "must be True or False"),  # type: ignore[arg-type]
        # one address, not a list of them: it was read a character at a time ("'1' is not an
        # IP address"); None or a number escaped as a TypeError
        (lambda: DeviceBuilder().dns_servers("10.0.0.53"), "a list of addresses"),
        (lambda: DeviceBuilder().dns_servers(None), "a list of addresses"),  # type: ignore[arg-type]
        (lambda: DeviceBuilder().dns_servers(53), "a list of addresses"),  # type: ignore[arg-type]
        (lambda: DeviceBuilder().dns_servers(["10.0.0.53", "x"]), "'x' is not an IP address"),
        (lambda: DeviceBuilder().dns_servers(["0.0.0.0"]), "cannot be a DNS server"),
        (lambda: DeviceBuilder().dns_servers(["ff02::1"]), "cannot be a DNS server"),
    ],
)
def test_setters_refuse_bad_values_at_once(make: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("builder", "message"),
    [
        (DeviceBuilder().mtu(1000).ipv6("fd00::1", 64), "at least 1280"),
        (DeviceBuilder().ipv6("fd00::1", 64).mtu(1279), "at least 1280"),
        (DeviceBuilder().mac_addr("02:00:00:00:00:01"), "needs a layer-2"),
        (DeviceBuilder().persist(), "persist needs a fixed name"),
        (DeviceBuilder().name("tun%d").persist(), "persist needs a fixed name"),
        (DeviceBuilder().ipv4("10.0.0.1", 24).ipv4("10.0.0.1", 16), "configured twice"),
        (DeviceBuilder().route("10.0.0.0/8").route("10.0.0.0/8"), "route is configured twice"),
        (DeviceBuilder().offload().packet_information(), "cannot be combined"),
        (DeviceBuilder().route("10.0.0.0/8").enable(False), "routes need the link up"),
        (DeviceBuilder().layer("tap").offload(), "TUN \\(layer 3\\) devices only"),
    ],
)
def test_build_refuses_bad_combinations(builder: DeviceBuilder, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        builder.config()
    with pytest.raises(ConfigError, match=message):
        builder.build_sync()  # refused before any system call: no root needed here


def test_a_name_may_hold_one_percent_d() -> None:
    assert DeviceBuilder().name("tf%d").config().name == "tf%d"
    assert DeviceBuilder().name("%dtf").config().name == "%dtf"


@pytest.mark.parametrize(("name", "message"), [(5, "not a str"), ("\ud800x", "UTF-8")])
def test_a_name_that_is_no_text_is_a_config_error(name: object, message: str) -> None:
    # (set_name validates through DeviceConfig: an int was an AttributeError there, a lone
    # surrogate a UnicodeEncodeError in both)
    with pytest.raises(ConfigError, match=message):
        DeviceConfig(name=name).validate()  # type: ignore[arg-type]
    if isinstance(name, str):
        with pytest.raises(ConfigError, match=message):
            DeviceBuilder().name(name)


def test_a_name_in_bytes_that_are_not_utf8_is_those_bytes() -> None:
    # what name() reports for a link renamed outside tunflow to b"t\xff0"
    assert DeviceBuilder().name("t\udcff0").config().name == "t\udcff0"
    with pytest.raises(ConfigError, match="16 bytes"):
        DeviceBuilder().name("\udcff" * 16)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="limit is 15"):
        DeviceBuilder().name("x" * 20)


def test_offload_env_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNFLOW_OFFLOAD", "0")
    assert DeviceBuilder().offload().config().offload is False
    monkeypatch.setenv("TUNFLOW_OFFLOAD", "1")
    assert DeviceBuilder().offload().config().offload is True


def test_from_fd_refuses_a_number_no_fd_can_have() -> None:
    # (beyond a C int: an OverflowError from the system call's argument)
    from tunflow import SyncDevice

    with pytest.raises(ConfigError, match="not a file descriptor"):
        SyncDevice.from_fd(2**40)


@pytest.mark.parametrize(
    "setting",
    [
        lambda b: b.ipv4("10.0.0.1", 24, "10.0.0.2/24"),
        lambda b: b.dns_servers(["192.0.2.53/32"]),
        lambda b: b.dns_servers(["2001:db8::53/128"]),
        # an ip_interface() object is an IPv4Address/IPv6Address subclass, prefix and all
        lambda b: b.ipv4("10.0.0.1", 24, IPv4Interface("10.0.0.2/24")),
        lambda b: b.dns_servers([IPv6Interface("2001:db8::53/64")]),
    ],
)
def test_one_address_given_with_a_prefix_is_refused(setting: Any) -> None:
    # (the prefix used to be cut off silently: a point-to-point peer "10.0.0.2/24" became
    # 10.0.0.2, a /24 that was never made)
    with pytest.raises(ConfigError, match="takes no prefix"):
        setting(DeviceBuilder())
