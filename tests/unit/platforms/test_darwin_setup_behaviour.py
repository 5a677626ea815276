"""Opening macOS devices (utun; feth + BPF) through the fake system-call layer: what a build
that fails leaves behind, names, and what the kernel answers during setup."""

from __future__ import annotations

import errno
import struct

import pytest

from tunflow import DeviceBuilder, DeviceError, Layer, UnsupportedError
from tunflow.platform import darwin

from .test_darwin import (
    BIOCSBLEN,
    BIOCSETIF,
    SIOCAIFADDR_IN6,
    SIOCIFCREATE,
    Fake,
    tap_config,
    tun_config,
)


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


def test_an_unnamed_utun_refused_as_busy_does_not_name_a_unit(make_fake: Fake) -> None:
    # DeviceBusyError's "utunN exists" is for a unit asked by name; with the unit left to the
    # kernel the refusal says what was asked
    fake = make_fake("darwin")
    fake.fail("connect", errno.EBUSY)
    with pytest.raises(DeviceError) as info:
        darwin.open_device(tun_config(), syscalls=fake)
    assert info.value.errno == errno.EBUSY
    assert "None" not in str(info.value)
    assert "kernel-chosen unit" in str(info.value)
    assert fake.open_fds() == set()


def test_a_utun_cannot_be_attached_and_nothing_is_called(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    with pytest.raises(UnsupportedError, match="cannot be attached"):
        darwin.open_device(tun_config(name="utun3", attach=True), syscalls=fake)
    assert fake.calls == []


def test_an_unnamed_feth_the_kernel_says_exists_is_not_reused(make_fake: Fake) -> None:
    # only a named feth that exists is reused: "feth" is the cloner, never an interface
    fake = make_fake("darwin")
    fake.fail_ioctl(SIOCIFCREATE, errno.EEXIST)
    with pytest.raises(DeviceError) as info:
        darwin.open_device(tap_config(), syscalls=fake)
    assert info.value.errno == errno.EEXIST
    assert fake.open_fds() == set()
    assert set(fake.interfaces) == {"lo0"}


def test_bpf_reads_use_the_buffer_length_the_kernel_granted(make_fake: Fake) -> None:
    # net/bpf.h: BIOCSBLEN answers the length the kernel set (it may be less than asked), and a
    # read of a BPF device must offer exactly that length
    fake = make_fake("darwin")
    fake.on(
        "ioctl", when=lambda c: c.args[1] == BIOCSBLEN, result=struct.pack("<I", 32768), times=1
    )
    iface, queue = darwin.open_device(tap_config(), syscalls=fake)
    try:
        with pytest.raises(BlockingIOError):
            queue.recv(2000)
        assert [c.args[1] for c in fake.named("read")] == [32768]
    finally:
        queue.close()
        iface.close()


def test_adopting_a_socket_without_a_utun_name_gives_no_interface(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    fd = fake.socket(32, 2, 2)
    fake.on("getsockopt", result=bytes(16))
    iface, queue = darwin.adopt_fd(fd, close_fd=True, syscalls=fake)
    assert iface is None
    queue.close()
    assert fake.open_fds() == set()
