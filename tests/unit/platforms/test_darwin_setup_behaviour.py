"""Opening macOS devices (utun; feth + BPF) through the fake system-call layer: what a build
that fails leaves behind, names, and what the kernel answers during setup."""

from __future__ import annotations

import errno

import pytest

from tunflow import DeviceError
from tunflow.platform import darwin

from .test_darwin import BIOCSETIF, Fake, tap_config


def test_a_failed_persistent_feth_build_removes_the_pair_it_created(make_fake: Fake) -> None:
    # docs/devices.md: a build that fails half-way removes what it created (persist only
    # applies to a device that was built)
    fake = make_fake("darwin")
    fake.fail_ioctl(BIOCSETIF, errno.EIO)
    with pytest.raises(DeviceError):
        darwin.open_device(tap_config(persist=True, name="feth5", peer_feth="feth6"), syscalls=fake)
    assert fake.open_fds() == set()
    assert set(fake.interfaces) == {"lo0"}
