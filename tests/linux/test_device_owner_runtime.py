"""owner() and group() at run time (tun-rs's ``user(uid)`` / ``group(gid)``, Linux
``TUNSETOWNER`` / ``TUNSETGROUP``) on both faces."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import ROOT, run_without_caps, tun_info
from tunflow import (
    ClosedDeviceError,
    ConfigError,
    DeviceBuilder,
    DeviceNotFoundError,
    testing,
)

pytestmark = pytest.mark.needs_root


def _attach_without_cap_net_admin(ns: testing.Netns, name: str) -> subprocess.CompletedProcess[str]:
    """Attach to ``name`` as root (uid and gid 0) without CAP_NET_ADMIN; print the outcome."""
    code = (
        "from tunflow import DeviceBuilder, DevicePermissionError\n"
        "try:\n"
        f"    DeviceBuilder().attach({name!r}).inherit_enable_state().build_sync().close()\n"
        "except DevicePermissionError as e:\n"
        "    print('refused', e.errno)\n"
        "else:\n"
        "    print('attached')\n"
    )
    return run_without_caps(ns, code, cwd=ROOT)


def test_owner_and_group_reach_the_kernel(netns: testing.Netns) -> None:
    name = testing.unique_name("o")
    with DeviceBuilder().name(name).build_sync() as dev:
        info = tun_info(netns, name)
        assert "user" not in info and "group" not in info
        dev.owner(1234)
        dev.group(2345)
        info = tun_info(netns, name)
        assert (info["user"], info["group"]) == (1234, 2345)
        # ids up to 0xFFFFFFFE are valid (user namespaces map such ranges)
        dev.owner(0x80000000)
        dev.group(0xFFFFFFFE)
        info = tun_info(netns, name)
        assert (info["user"], info["group"]) == (0x80000000, 0xFFFFFFFE)


@pytest.mark.parametrize("which", ["owner", "group"])
def test_a_new_owner_or_group_may_attach_without_cap_net_admin(
    netns: testing.Netns, which: str
) -> None:
    # the kernel lets a process without CAP_NET_ADMIN attach when it is the device's owner
    # (euid) and in its group (egid); the device starts owned by someone else
    name = testing.unique_name("o")
    with getattr(DeviceBuilder().name(name).persist(), which)(1234).build_sync():
        pass
    try:
        refused = _attach_without_cap_net_admin(netns, name)
        assert refused.returncode == 0, refused.stderr
        assert refused.stdout.split() == ["refused", "1"]  # EPERM
        with DeviceBuilder().attach(name).build_sync() as dev:
            getattr(dev, which)(0)
        assert tun_info(netns, name)["user" if which == "owner" else "group"] in (
            0,
            "root",
        )  # (ip names a known id)
        allowed = _attach_without_cap_net_admin(netns, name)
        assert allowed.returncode == 0, allowed.stderr
        assert allowed.stdout.split() == ["attached"]
    finally:
        netns.run("ip", "tuntap", "del", "dev", name, "mode", "tun")


def test_owner_errors_are_typed(netns: testing.Netns) -> None:
    name = testing.unique_name("o")
    dev = DeviceBuilder().name(name).build_sync()
    for bad in (-1, 0xFFFFFFFF, 1 << 40, True, "1000", 1.0):
        with pytest.raises(ConfigError):
            dev.owner(bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            dev.group(bad)  # type: ignore[arg-type]
    assert "user" not in tun_info(netns, name)
    dev.shutdown()  # the fd stays open: configuration still works
    dev.owner(0)
    netns.run("ip", "link", "del", name)
    with pytest.raises(DeviceNotFoundError, match="is gone"):
        dev.group(0)
    dev.close()
    with pytest.raises(ClosedDeviceError):
        dev.owner(0)


@pytest.mark.anyio
async def test_async_owner_and_group(netns: testing.Netns) -> None:
    name = testing.unique_name("o")
    async with DeviceBuilder().name(name).build_async() as dev:
        await dev.owner(4321)
        await dev.group(5432)
        info = tun_info(netns, name)
        assert (info["user"], info["group"]) == (4321, 5432)
        with pytest.raises(ConfigError):
            await dev.owner(-1)
    with pytest.raises(ClosedDeviceError):
        await dev.group(0)
