"""Opening macOS devices (utun; feth + BPF) through the fake system-call layer: what a build
that fails leaves behind, names, and what the kernel answers during setup."""

from __future__ import annotations

import errno

import pytest

from tunflow import DeviceBuilder, DeviceError, Layer
from tunflow.platform import darwin

from .test_darwin import BIOCSETIF, SIOCAIFADDR_IN6, Fake, tap_config


def test_a_failed_persistent_feth_build_removes_the_pair_it_created(make_fake: Fake) -> None:
    # docs/devices.md: a build that fails half-way removes what it created (persist only
    # applies to a device that was built)
    fake = make_fake("darwin")
    fake.fail_ioctl(BIOCSETIF, errno.EIO)
    with pytest.raises(DeviceError):
        darwin.open_device(tap_config(persist=True, name="feth5", peer_feth="feth6"), syscalls=fake)
    assert fake.open_fds() == set()
    assert set(fake.interfaces) == {"lo0"}


def test_a_failed_build_on_a_reused_feth_takes_back_the_addresses_it_added(
    make_fake: Fake,
) -> None:
    # docs/devices.md: a build that fails half-way on a device it did not create (attached; here
    # a named feth that exists and is reused) gives back the addresses and routes it had added
    fake = make_fake("darwin")
    fake.add_interface("feth8", kind="feth")
    config = DeviceBuilder().layer(Layer.L2).name("feth8").mtu(1400)
    config = config.ipv4("10.1.0.1", 24).ipv6("fd00::1", 64).config()
    fake.fail_ioctl(SIOCAIFADDR_IN6, errno.EIO)
    with pytest.raises(DeviceError):
        darwin.open_device(config, syscalls=fake)
    assert set(fake.interfaces) == {"lo0", "feth8"}  # not ours: left in place, the peer is gone
    assert (fake.interfaces["feth8"].v4, fake.interfaces["feth8"].v6) == ([], [])
    assert fake.open_fds() == set()
