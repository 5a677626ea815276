"""``from_fd`` / ``borrow_fd`` of a Linux tun fd in a process that may not open an rtnetlink
socket (systemd's ``RestrictAddressFamilies=`` without ``AF_NETLINK``, a seccomp or SELinux
policy): the fd is adopted and carries packets; only configuration is unsupported, as for
an fd whose interface is not found."""

from __future__ import annotations

import errno
import fcntl
import os
import struct

import pytest

from tests.helpers import adopt_and_close, udp_payload, udp_send
from tunflow import SyncDevice, UnsupportedError, testing
from tunflow.platform.linux import netlink

pytestmark = pytest.mark.needs_root

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def _raw_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("refusal", [errno.EAFNOSUPPORT, errno.EACCES, errno.EPERM])
@pytest.mark.parametrize("adopt", ["from_fd", "borrow_fd"])
def test_an_fd_is_adopted_where_rtnetlink_is_refused(
    netns: testing.Netns, monkeypatch: pytest.MonkeyPatch, adopt: str, refusal: int
) -> None:
    # was: DeviceError "adopt fd N: Address family not supported by protocol": the fd,
    # which needs no rtnetlink to carry packets, was not adopted
    name = testing.unique_name("nl")
    fd = _raw_tun(name)
    owned = False  # (by the device: from_fd's, once it is made)
    try:
        netns.run("ip", "addr", "add", "10.64.0.1/24", "dev", name)
        netns.run("ip", "link", "set", name, "up")

        def refused(self: object) -> None:
            raise OSError(refusal, os.strerror(refusal))

        monkeypatch.setattr(netlink.RtNetlink, "__init__", refused)
        before = _fds()
        with getattr(SyncDevice, adopt)(fd) as dev:
            owned = adopt == "from_fd"
            with pytest.raises(UnsupportedError, match="rtnetlink"):
                dev.name()
            udp_send("10.64.0.2", 5000, b"sandboxed")
            for _ in range(20):
                parsed = udp_payload(dev.recv(timeout=5))
                if parsed and parsed[1] == 5000:
                    break
            assert parsed is not None and parsed[2] == b"sandboxed"
        assert _fds() == before - (adopt == "from_fd")
    finally:
        if not owned:
            os.close(fd)


def test_running_out_of_fds_is_still_an_error(
    netns: testing.Netns, monkeypatch: pytest.MonkeyPatch
) -> None:
    fd = _raw_tun(testing.unique_name("nl"))

    def exhausted(self: object) -> None:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(netlink.RtNetlink, "__init__", exhausted)
    owned = False  # (by a from_fd device made after all)
    try:
        with pytest.raises(OSError) as info:
            owned = adopt_and_close(SyncDevice.from_fd, fd)
        assert info.value.errno == errno.EMFILE
    finally:
        if not owned:
            os.close(fd)
