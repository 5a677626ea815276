"""What a failed build on an attached device cannot put back is logged, not dropped."""

from __future__ import annotations

import logging

import pytest

from tunflow import DeviceBuilder, DeviceExistsError, testing
from tunflow.platform.linux.tun import LinuxInterface

pytestmark = pytest.mark.needs_root


def test_an_address_or_link_setting_that_cannot_be_put_back_is_logged(
    netns: testing.Netns, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Both failures were suppressed without a word: the owner's device was left with the
    # build's address and MTU, and nothing said so.
    name = testing.unique_name("a")
    netns.run("ip", "tuntap", "add", "dev", name, "mode", "tun")
    netns.run("ip", "addr", "add", "10.53.1.1/24", "dev", name)

    def refuse(self: LinuxInterface, *args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(LinuxInterface, "undo_address", refuse)
    monkeypatch.setattr(LinuxInterface, "restore", refuse)
    with (
        caplog.at_level(logging.WARNING, logger="tunflow.platform"),
        pytest.raises(DeviceExistsError),  # the build's own error, not the undo's
    ):
        DeviceBuilder().attach(name).mtu(1300).ipv4("10.53.0.1/24").ipv4(
            "10.53.1.1/24"
        ).build_sync()
    messages = [r.getMessage() for r in caplog.records if r.name == "tunflow.platform"]
    assert any("10.53.0.1/24" in m and name in m for m in messages), messages
    assert any("put back" in m and name in m for m in messages), messages
