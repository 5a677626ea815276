"""A failed build on an attached device puts back the owner and group it had set."""

from __future__ import annotations

import logging

import pytest

from tests.helpers import tun_info
from tunflow import DeviceBuilder, DeviceExistsError, testing

pytestmark = pytest.mark.needs_root


def test_a_failed_attach_puts_the_owner_and_group_back(netns: testing.Netns) -> None:
    # TUNSETOWNER/TUNSETGROUP were applied and never undone: the owner's device was left
    # owned by the build's uid and gid after the build failed.
    name = testing.unique_name("a")
    netns.run("ip", "tuntap", "add", "dev", name, "mode", "tun", "user", "4321", "group", "5432")
    netns.run("ip", "addr", "add", "10.56.1.1/24", "dev", name)
    with pytest.raises(DeviceExistsError):
        DeviceBuilder().attach(name).owner(1234).group(2345).ipv4("10.56.1.1", 24).build_sync()
    info = tun_info(netns, name)
    assert (info["user"], info["group"]) == (4321, 5432)


def test_an_owner_the_kernel_cannot_unset_is_logged(
    netns: testing.Netns, caplog: pytest.LogCaptureFixture
) -> None:
    name = testing.unique_name("a")
    netns.run("ip", "tuntap", "add", "dev", name, "mode", "tun")
    netns.run("ip", "addr", "add", "10.56.1.1/24", "dev", name)
    with (
        caplog.at_level(logging.WARNING, logger="tunflow.platform"),
        pytest.raises(DeviceExistsError),
    ):
        DeviceBuilder().attach(name).owner(1234).ipv4("10.56.1.1", 24).build_sync()
    messages = [r.getMessage() for r in caplog.records if r.name == "tunflow.platform"]
    assert any(name in m and "owner" in m and "1234" in m for m in messages), messages
    assert "group" not in tun_info(netns, name)
