"""A build with persist() that fails after TUNSETPERSIST leaves persist as it found it."""

from __future__ import annotations

import pytest

from tests.helpers import tun_info
from tunflow import DeviceBuilder, testing
from tunflow.platform.linux.tun import LinuxInterface

pytestmark = pytest.mark.needs_root


class _Interrupted(BaseException):
    pass


def _interrupted(self: LinuxInterface, fd: int, **kw: object) -> None:
    raise _Interrupted


def _links(netns: testing.Netns) -> set[str]:
    return {link["ifname"] for link in netns.ip_json("link", "show")}


def test_a_device_the_failed_build_made_does_not_stay(
    netns: testing.Netns, monkeypatch: pytest.MonkeyPatch
) -> None:
    # persist was set, then the build failed (a KeyboardInterrupt, say): the fd was closed
    # but the device stayed, persistent, although nothing had been handed to the caller.
    name = testing.unique_name("p")
    monkeypatch.setattr(LinuxInterface, "wrap_queue", _interrupted)
    with pytest.raises(_Interrupted):
        DeviceBuilder().name(name).persist().build_sync()
    assert name not in _links(netns)


def test_an_attached_device_keeps_the_persist_it_had(
    netns: testing.Netns, monkeypatch: pytest.MonkeyPatch
) -> None:
    persistent = testing.unique_name("p")
    netns.run("ip", "tuntap", "add", "dev", persistent, "mode", "tun")
    with DeviceBuilder().name(testing.unique_name("q")).multi_queue(True).build_sync() as held:
        monkeypatch.setattr(LinuxInterface, "wrap_queue", _interrupted)
        for name in (persistent, held.name()):
            was = tun_info(netns, name)["persist"]
            with pytest.raises(_Interrupted):
                DeviceBuilder().attach(name).multi_queue(name != persistent).persist().build_sync()
            assert tun_info(netns, name)["persist"] is was
