"""persist() / persist(False) at run time on the BSDs and macOS feth: whether close destroys the
device (SIOCIFDESTROY) is read at close, so it can be decided after the build; a device whose
kernel destroys it with its fd (a utun, NetBSD's cloned tap) cannot be kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import attrs
import pytest

from tunflow import DeviceBuilder, Layer, UnsupportedError
from tunflow.netconfig.device import DeviceConfig
from tunflow.platform import darwin, freebsd, netbsd, openbsd
from tunflow.platform.fake import FakeSyscalls, pretend_platform

Fake = Callable[[str], FakeSyscalls]


def config(**kw: Any) -> DeviceConfig:
    return attrs.evolve(DeviceBuilder().ipv4("10.0.0.1", 24).config(), **kw)


BACKENDS = [
    ("freebsd", Layer.L3, "tun3"),
    ("freebsd", Layer.L2, "tap3"),
    ("openbsd", Layer.L3, "tun3"),
    ("openbsd", Layer.L2, "tap3"),
    ("netbsd", Layer.L3, "tun3"),
    ("netbsd", Layer.L2, "tap3"),
]


@pytest.mark.parametrize(("platform", "layer", "name"), BACKENDS)
def test_persist_at_run_time_keeps_the_device(platform: str, layer: Layer, name: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().layer(layer).name(name).build_sync() as dev:
            fake.calls.clear()
            dev.persist()
            assert fake.calls == []  # decided now, done (or not) at close
        assert name in fake.interfaces
        fake.close_all()


@pytest.mark.parametrize(("platform", "layer", "name"), BACKENDS)
def test_persist_false_undoes_the_builders_persist(platform: str, layer: Layer, name: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().layer(layer).name(name).persist().build_sync() as dev:
            dev.persist(False)
        assert name not in fake.interfaces
        fake.close_all()


@pytest.mark.parametrize("module", [freebsd, openbsd, netbsd])
def test_persist_false_on_an_attached_device_destroys_it(make_fake: Fake, module: Any) -> None:
    # as on Linux: a device attached to stays after close, unless persist(False)
    platform = module.__name__.rsplit(".", 1)[1]
    for keep in (True, False):
        fake = make_fake(platform)
        fake.add_interface("tun4", kind="tun")
        iface, queue = module.open_device(config(name="tun4", attach=True), syscalls=fake)
        if not keep:
            iface.set_persist(queue.fileno(), False)
        queue.close()
        iface.close()
        assert ("tun4" in fake.interfaces) is keep


def test_netbsd_cloned_tap_cannot_be_kept() -> None:
    with pretend_platform("netbsd") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().layer(Layer.L2).build_sync() as dev:
            with pytest.raises(UnsupportedError, match="with its fd"):
                dev.persist()
            dev.persist(False)  # (what it is already)
        fake.close_all()


def test_utun_cannot_be_kept() -> None:
    with pretend_platform("darwin") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().ipv4("10.0.0.1", 24).build_sync() as dev:
            fake.calls.clear()
            with pytest.raises(UnsupportedError, match="with its fd"):
                dev.persist()
            dev.persist(False)
            assert fake.calls == []
        fake.close_all()


def test_feth_persist_at_run_time(make_fake: Fake) -> None:
    tap = DeviceBuilder().layer(Layer.L2).name("feth5").peer_feth("feth6")
    for persist_at_build, persist_now, kept in (
        (False, True, True),
        (True, False, False),
        (False, False, False),
    ):
        fake = make_fake("darwin")
        cfg = attrs.evolve(tap.config(), persist=persist_at_build)
        iface, queue = darwin.open_device(cfg, syscalls=fake)
        iface.set_persist(-1, persist_now)
        queue.close()
        iface.close()
        assert ({"feth5", "feth6"} <= set(fake.interfaces)) is kept
        assert (not fake.interfaces.keys() & {"feth5", "feth6"}) is not kept


def test_feth_reused_pair_is_kept_unless_persist_false(make_fake: Fake) -> None:
    tap = DeviceBuilder().layer(Layer.L2).name("feth8").peer_feth("feth9")
    for keep in (True, False):
        fake = make_fake("darwin")
        fake.add_interface("feth8", kind="feth")
        fake.add_interface("feth9", kind="feth")
        iface, queue = darwin.open_device(tap.config(), syscalls=fake)
        if not keep:
            iface.set_persist(-1, False)
        queue.close()
        iface.close()
        assert ({"feth8", "feth9"} <= set(fake.interfaces)) is keep


def test_async_persist_on_freebsd() -> None:
    async def main() -> None:
        async with DeviceBuilder().name("tun7").build_async() as dev:
            await dev.persist()

    with pretend_platform("freebsd") as fake:
        assert isinstance(fake, FakeSyscalls)
        anyio.run(main)
        assert "tun7" in fake.interfaces
        fake.close_all()
