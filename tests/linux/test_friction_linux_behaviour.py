"""What a new user met in the first hour, on the real kernel: addresses written with their
prefix at run time, a name taken by an interface that is not a TUN (to the library and to
``tunflow up``)."""

from __future__ import annotations

import sys
from ipaddress import IPv4Interface, IPv6Interface
from pathlib import Path

import pytest

from tunflow import ConfigError, DeviceBuilder, DeviceBusyError, testing
from tunflow.wireguard import genkey, pubkey

pytestmark = pytest.mark.needs_root


def _addrs(ns: testing.Netns, name: str) -> set[str]:
    (link,) = ns.ip_json("addr", "show", "dev", name)
    return {
        f"{a['local']}/{a['prefixlen']}"
        for a in link["addr_info"]
        if not a["local"].startswith("fe80")
    }


def test_sync_addresses_with_their_prefix(netns: testing.Netns) -> None:
    with DeviceBuilder().ipv4("10.40.0.1/24").ipv6("fd40::1/64").build_sync() as dev:
        name = dev.name()
        dev.add_address_v4("10.41.0.1/16")
        dev.add_address_v4(IPv4Interface("10.42.0.1/24"), destination="10.42.0.9")
        dev.add_address_v6("fd41::1/48")
        dev.add_address_v6(IPv6Interface("fd42::1/64"))
        dev.add_address_v4("10.43.0.1", 24)  # (the tun-rs form, as before)
        assert _addrs(netns, name) == {
            "10.40.0.1/24",
            "10.41.0.1/16",
            "10.42.0.1/24",
            "10.43.0.1/24",
            "fd40::1/64",
            "fd41::1/48",
            "fd42::1/64",
        }
        with pytest.raises(ConfigError, match="already has a prefix"):
            dev.add_address_v4("10.44.0.1/24", 24)
        with pytest.raises(ConfigError, match="needs a prefix"):
            dev.add_address_v6("fd44::1")
        dev.set_network_address("10.45.0.1/24")
        assert {a for a in _addrs(netns, name) if "." in a} == {"10.45.0.1/24"}


@pytest.mark.anyio
async def test_async_addresses_with_their_prefix(netns: testing.Netns) -> None:
    async with DeviceBuilder().build_async() as dev:
        name = await dev.name()
        await dev.add_address_v4("10.50.0.1/24")
        await dev.add_address_v6("fd50::1/64")
        assert _addrs(netns, name) == {"10.50.0.1/24", "fd50::1/64"}
        await dev.remove_address("10.50.0.1/24")
        assert _addrs(netns, name) == {"fd50::1/64"}


def test_a_name_taken_by_a_veth_says_so(netns: testing.Netns) -> None:
    name = testing.unique_name("v")
    netns.run("ip", "link", "add", name, "type", "veth", "peer", "name", name + "p")
    for builder in (DeviceBuilder().name(name), DeviceBuilder().name(name).layer("tap")):
        with pytest.raises(DeviceBusyError) as refused:
            builder.build_sync()
        assert (
            f"an interface named {name} exists and is not a TUN/TAP device (it is a veth)"
            in str(refused.value)
        )
        assert "other flags" not in str(refused.value)
    with pytest.raises(DeviceBusyError, match=r"named lo exists and is not a TUN/TAP device$"):
        DeviceBuilder().name("lo").build_sync()  # (a link without a kind)
    # a TUN/TAP mismatch is still one
    tun = testing.unique_name("t")
    with DeviceBuilder().name(tun).build_sync(), pytest.raises(DeviceBusyError, match="flags"):
        DeviceBuilder().name(tun).layer("tap").build_sync()


def test_up_over_a_veth_does_not_suggest_tunflow_down(netns: testing.Netns, tmp_path: Path) -> None:
    # it said "take that one down first (tunflow down NAME …)", which refuses a veth
    name = testing.unique_name("u")
    netns.run("ip", "link", "add", name, "type", "veth", "peer", "name", name + "p")
    conf = tmp_path / f"{name}.conf"
    conf.write_text(
        f"[Interface]\nPrivateKey = {genkey()}\nAddress = 10.96.0.1/24\n\n"
        f"[Peer]\nPublicKey = {pubkey(genkey())}\nAllowedIPs = 10.96.0.2/32\n"
    )
    refused = netns.run(sys.executable, "-m", "tunflow.cli", "up", str(conf), check=False)
    assert refused.returncode == 2, refused.stderr
    assert f"{name} exists already and is a veth, not a WireGuard interface" in refused.stderr
    assert f"tunflow down {name}" not in refused.stderr
    down = netns.run(sys.executable, "-m", "tunflow.cli", "down", name, check=False)
    assert down.returncode == 1 and "not a WireGuard interface" in down.stderr


def test_name_of_a_persistent_tun_attaches_and_close_leaves_its_configuration(
    netns: testing.Netns,
) -> None:
    # what docs/devices.md says: .name() of an existing persistent TUN attaches to it (as the
    # kernel and tun-rs do), and close() leaves its addresses and link state as they are
    name = testing.unique_name("p")
    netns.run("ip", "tuntap", "add", "dev", name, "mode", "tun")
    with DeviceBuilder().name(name).ipv4("10.60.0.1/24").mtu(1300).build_sync() as dev:
        assert dev.name() == name
    (link,) = netns.ip_json("link", "show", "dev", name)
    assert "UP" in link["flags"] and link["mtu"] == 1300
    assert _addrs(netns, name) == {"10.60.0.1/24"}
