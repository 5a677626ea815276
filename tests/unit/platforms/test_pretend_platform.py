"""The public API on every platform, as far as a Linux machine can check it: ``import tunflow``
with another platform's stdlib, ``platform_name``, the registry, and ``DeviceBuilder`` /
``SyncDevice`` / ``AsyncDevice`` running through a fake system-call layer ("pretend platform")."""

from __future__ import annotations

import errno
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from ipaddress import IPv4Interface, IPv6Interface, ip_address

import anyio
import pytest

import tunflow
from tunflow import (
    AsyncDevice,
    DeviceBuilder,
    DeviceError,
    DevicePermissionError,
    Layer,
    PlatformNotSupportedError,
    SyncDevice,
    UnsupportedError,
)
from tunflow.platform import BACKENDS, current, current_name, platform_name
from tunflow.platform._unix import IOV_MAX
from tunflow.platform.fake import FakeSyscalls, pretend_platform

from .support import af_header, ipv4_packet, ipv6_packet

UNIX_BACKENDS = ["darwin", "freebsd", "openbsd", "netbsd"]
#: AF_INET6 each platform writes in the 4-byte header (sys/socket.h)
AF_INET6 = {"darwin": 30, "freebsd": 28, "openbsd": 24, "netbsd": 24, "ios": 30}


@pytest.mark.parametrize(
    ("sys_platform", "name"),
    [
        ("linux", "linux"),
        ("linux2", "linux"),
        ("android", "android"),
        ("darwin", "darwin"),
        ("ios", "ios"),
        ("tvos", "ios"),
        ("freebsd14", "freebsd"),
        ("openbsd7", "openbsd"),
        ("netbsd10", "netbsd"),
        ("win32", "windows"),
        ("cygwin", "windows"),
        ("sunos5", "sunos5"),
        ("aix", "aix"),
    ],
)
def test_platform_name(sys_platform: str, name: str) -> None:
    assert platform_name(sys_platform) == name


def test_current_name_follows_pretend_platform() -> None:
    # what code outside the backends branches on (routes): the pretended platform in the block
    assert current_name() == platform_name()
    with pretend_platform("openbsd"):
        assert current_name() == "openbsd"
        with pretend_platform("windows"):
            assert current_name() == "windows"
        assert current_name() == "openbsd"
    assert current_name() == platform_name()


def test_registry_covers_the_issue() -> None:
    assert set(BACKENDS) == {
        "linux", "darwin", "freebsd", "openbsd", "netbsd", "windows", "android", "ios",
    }  # fmt: skip
    assert BACKENDS["android"] == BACKENDS["ios"] == "tunflow.platform.fd"


def test_unknown_platform_gets_a_helpful_error() -> None:
    with pretend_platform("sunos5"):
        with pytest.raises(PlatformNotSupportedError) as info:
            current()
        message = str(info.value)
        assert "'sunos5'" in message
        for name in ("darwin", "freebsd", "windows", "linux"):
            assert name in message
        assert "from_fd" in message
        with pytest.raises(PlatformNotSupportedError):
            DeviceBuilder().build_sync()
    assert isinstance(info.value, UnsupportedError)


_IMPORT_AS = textwrap.dedent(
    """
    import errno, select, sys
    plat = sys.argv[1]
    if not plat.startswith("linux"):
        # macOS, the BSDs and Windows have no EBADFD; Windows has no select.poll nor fcntl
        if hasattr(errno, "EBADFD"):
            del errno.EBADFD
    if plat == "win32":
        for name in ("poll", "POLLIN", "POLLOUT", "POLLERR", "POLLHUP", "POLLNVAL"):
            if hasattr(select, name):
                delattr(select, name)
        sys.modules["fcntl"] = None
        sys.modules["termios"] = None
    sys.platform = plat
    import tunflow
    from tunflow import platform
    loaded = sorted(m for m in sys.modules if m.startswith("tunflow.platform."))
    assert loaded == ["tunflow.platform._base", "tunflow.platform._unix"], loaded
    backend = platform.current()
    print(platform.platform_name(), backend.__name__, tunflow.DeviceBuilder.__name__)
    """
)


@pytest.mark.parametrize(
    ("sys_platform", "module"),
    [
        ("darwin", "tunflow.platform.darwin"),
        ("freebsd14", "tunflow.platform.freebsd"),
        ("openbsd7", "tunflow.platform.openbsd"),
        ("netbsd10", "tunflow.platform.netbsd"),
        ("win32", "tunflow.platform.windows"),
        ("ios", "tunflow.platform.fd"),
    ],
)
def test_import_tunflow_with_another_platforms_stdlib(sys_platform: str, module: str) -> None:
    """``import tunflow`` loads no backend, and works where errno/select/fcntl differ."""
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_AS, sys_platform],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [platform_name(sys_platform), module, "DeviceBuilder"]


# -- SyncDevice / AsyncDevice through each backend --------------------------------------------


def _builder(layer: Layer = Layer.L3) -> DeviceBuilder:
    return DeviceBuilder().layer(layer).ipv4("10.0.0.1", 24).ipv6("fd00::1", 64).mtu(1400)


@pytest.mark.parametrize("platform", UNIX_BACKENDS)
def test_build_sync_and_use(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with _builder().route("192.0.2.0/24").build_sync() as dev:
            name = dev.name()
            assert dev.mtu() == 1400
            assert dev.addresses() == [IPv4Interface("10.0.0.1/24"), IPv6Interface("fd00::1/64")]
            assert dev.if_index() == fake.interfaces[name].index
            assert dev.is_running()
            fd = dev.fileno()
            p4, p6 = ipv4_packet(), ipv6_packet()
            af6 = AF_INET6[platform]
            # every face path: the header comes off on the way in and goes on on the way out
            fake.inject(fd, af_header(2) + p4)
            assert dev.recv(timeout=1) == p4
            fake.inject(fd, af_header(af6) + p6)
            buf = bytearray(2000)
            assert dev.recv_into(buf, timeout=1) == len(p6)
            fake.inject(fd, af_header(af6) + p6)
            fake.inject(fd, af_header(2) + p4)
            assert dev.recv_many(8, timeout=1) == [p6, p4]
            dev.send(p6)
            dev.send_many([p4])
            batch = dev.new_batch()
            batch.extend([p4, p6])
            assert dev.send_batch(batch) == 2
            assert fake.sent(fd) == [
                af_header(af6) + p6,
                af_header(2) + p4,
                af_header(2) + p4,
                af_header(af6) + p6,
            ]
            with pytest.raises(TimeoutError):
                dev.recv(timeout=0.01)
            dev.set_mtu(1500)
            dev.add_address_v4("10.9.0.1", 16)
            dev.remove_address("10.9.0.1")
            dev.add_address_v4("10.9.0.1", 16)
            with pytest.raises(DeviceError) as absent:
                dev.remove_address("10.9.0.1/24")  # with a prefix: exactly that address
            assert absent.value.errno == errno.EADDRNOTAVAIL
            dev.remove_address("10.9.0.1/16")
            assert all(a.ip != ip_address("10.9.0.1") for a in dev.addresses())
            with pytest.raises(UnsupportedError):
                dev.set_tx_queue_len(10)
            with pytest.raises(UnsupportedError, match="Windows only"):
                dev.version()
            with pytest.raises(UnsupportedError, match="DNS servers are Windows only"):
                dev.set_dns_servers(["10.0.0.53"])
            with pytest.raises(UnsupportedError, match="DNS servers are Windows only"):
                dev.clear_dns_servers(4)
        assert fake.open_fds() == set()
        assert set(fake.interfaces) == {"lo0"}
        fake.close_all()


@pytest.mark.parametrize("platform", UNIX_BACKENDS)
def test_build_sync_tap(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        dev = _builder(Layer.L2).build_sync()
        frame = bytes.fromhex("ffffffffffff0200000000010806") + b"x" * 46
        if platform != "darwin":  # the feth TAP reads BPF records; see test_darwin.py
            fake.inject(dev.fileno(), frame)
            assert dev.recv(timeout=1) == frame
        dev.send(frame)
        dev.close()
        assert set(fake.interfaces) == {"lo0"}
        fake.close_all()


@pytest.mark.anyio
@pytest.mark.parametrize("platform", UNIX_BACKENDS)
async def test_build_async_and_use(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        dev = _builder().build_async()
        assert isinstance(dev, AsyncDevice)
        async with dev:
            fd = dev.fileno()
            p4, p6 = ipv4_packet(), ipv6_packet()

            async def later() -> None:
                await anyio.sleep(0.02)
                fake.inject(fd, af_header(AF_INET6[platform]) + p6)

            async with anyio.create_task_group() as tg:
                tg.start_soon(later)
                with anyio.fail_after(5):
                    assert await dev.receive() == p6
            await dev.send(p4)
            assert fake.sent(fd) == [af_header(2) + p4]
            assert await dev.mtu() == 1400
            assert await dev.name() in fake.interfaces
        assert fake.open_fds() == set()
        assert set(fake.interfaces) == {"lo0"}
        fake.close_all()


@pytest.mark.parametrize("platform", ["freebsd", "openbsd", "netbsd", "ios", "android"])
def test_from_fd(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        fd = fake.open("/fake/tun", 2)
        with SyncDevice.from_fd(fd) as dev:
            framed = ipv6_packet()
            if platform != "android":
                framed = af_header(AF_INET6[platform]) + framed
            fake.inject(fd, framed)
            assert dev.recv(timeout=1) == ipv6_packet()
            with pytest.raises(UnsupportedError):
                dev.mtu()
        assert fake.open_fds() == set()
        fake.close_all()


def test_from_fd_on_macos_learns_the_utun() -> None:
    from tunflow.platform import darwin

    with pretend_platform("darwin") as fake:
        assert isinstance(fake, FakeSyscalls)
        fd, name = darwin.open_utun(fake, "utun4")
        with SyncDevice.from_fd(fd) as dev:
            assert dev.name() == name == "utun4"
            dev.add_address_v4("10.4.0.1", 24)
            assert dev.addresses() == [IPv4Interface("10.4.0.1/24")]
        assert "utun4" not in fake.interfaces
        fake.close_all()


def test_from_fd_on_windows_is_unsupported() -> None:
    with pretend_platform("windows"), pytest.raises(UnsupportedError, match="file descriptors"):
        SyncDevice.from_fd(3)


@pytest.mark.parametrize("platform", UNIX_BACKENDS)
def test_permission_errors_name_root(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        fake.fail("open", errno.EACCES, times=None)
        fake.fail("socket", errno.EPERM, times=None)
        with pytest.raises(DevicePermissionError, match="root") as info:
            DeviceBuilder().build_sync()
        assert isinstance(info.value, PermissionError)
        assert "CAP_NET_ADMIN" not in str(info.value)
        fake.close_all()


def test_pretend_platform_restores_everything() -> None:
    from tunflow import platform
    from tunflow.platform._syscalls import current_syscalls

    before = current_syscalls()
    with pretend_platform("netbsd") as fake:
        assert current_syscalls() is fake
        assert current().__name__ == "tunflow.platform.netbsd"
    assert current_syscalls() is before
    assert platform._override is None
    assert tunflow.DeviceBuilder is DeviceBuilder


def test_from_fd_works_on_a_unix_without_a_backend() -> None:
    """A Unix tunflow has no backend for can still adopt a TUN fd made elsewhere."""
    import os

    from tunflow import SyncDevice, UnsupportedError
    from tunflow.platform import fake

    r, w = os.pipe()
    try:
        with fake.pretend_platform("haiku", fake.FakeSyscalls()):
            dev = SyncDevice.borrow_fd(r)
            try:
                with pytest.raises(UnsupportedError):
                    dev.mtu()
                os.write(w, b"\x45" + bytes(19))
                assert len(dev.recv(timeout=5)) == 20
            finally:
                dev.close()
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("platform", UNIX_BACKENDS)
def test_vectored_io_gives_and_takes_the_bare_packet(platform: str) -> None:
    # the family header comes off a readv and goes on a writev as on recv/send; the version
    # that picks it is in the first byte of the first buffer that is not empty
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with _builder().build_sync() as dev:
            fd = dev.fileno()
            p4, p6 = ipv4_packet(), ipv6_packet()
            af6 = AF_INET6[platform]
            fake.inject(fd, af_header(af6) + p6)
            bufs = [bytearray(7), bytearray(dev.max_size)]
            assert dev.recv_vectored(bufs, timeout=1) == len(p6)
            assert bytes(bufs[0]) + bytes(bufs[1][: len(p6) - 7]) == p6
            fake.inject(fd, af_header(2) + p4)
            bufs = [bytearray(dev.max_size) for _ in range(IOV_MAX)]  # past what readv takes
            assert dev.recv_vectored(bufs, timeout=1) == len(p4)
            assert bytes(bufs[0][: len(p4)]) == p4
            assert dev.send_vectored([b"", p6[:1], p6[1:]]) == len(p6)
            assert dev.send_vectored([p4[:3], p4[3:]]) == len(p4)
            assert dev.send_vectored([p4[i : i + 1] for i in range(len(p4))]) == len(p4)
            assert fake.sent(fd) == [af_header(af6) + p6] + [af_header(2) + p4] * 2
            with pytest.raises(TimeoutError):
                dev.recv_vectored([bytearray(dev.max_size)], timeout=0.01)
            with pytest.raises(UnsupportedError, match="Linux only"):
                dev.broadcast()
            with pytest.raises(UnsupportedError, match="Linux only"):
                dev.set_broadcast("10.0.0.255")
        fake.close_all()


def test_vectored_io_lets_an_iterables_own_typeerror_through() -> None:
    # the TypeError a generator raises is the caller's bug: it is not reworded as "not a
    # sequence of buffers" and its traceback kept
    def broken() -> Iterator[bytes]:
        yield ipv4_packet()[:10]
        raise TypeError("the caller's own")

    with pretend_platform("darwin") as fake:
        with _builder().build_sync() as dev:
            with pytest.raises(TypeError, match="the caller's own"):
                dev.send_vectored(broken())
            with pytest.raises(TypeError, match="sequence of buffers, not 5"):
                dev.send_vectored(5)  # type: ignore[arg-type]
        fake.close_all()


def test_vectored_io_on_a_macos_feth_tap() -> None:
    # BPF reads and NDRV writes take one buffer: copied across, and joined
    with pretend_platform("darwin") as fake:
        assert isinstance(fake, FakeSyscalls)
        with _builder(Layer.L2).build_sync() as dev:
            frame = bytes.fromhex("ffffffffffff0200000000010806") + b"x" * 46
            record = struct.pack("<8xIIH", len(frame), len(frame), 18) + frame
            fake.inject(dev.fileno(), record + b"\0" * (-len(record) % 4))
            bufs = [bytearray(14), bytearray(dev.max_size)]
            assert dev.recv_vectored(bufs, timeout=1) == len(frame)
            assert bytes(bufs[0]) + bytes(bufs[1][: len(frame) - 14]) == frame
            assert dev.send_vectored([frame[:14], frame[14:]]) == len(frame)
            assert fake.sent(dev._queue._ndrv) == [frame]  # type: ignore[attr-defined]
        fake.close_all()


def test_vectored_io_on_windows() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        w = fake.windows
        with DeviceBuilder().name("wg9").ipv4("10.0.0.1", 24).build_sync() as dev:
            p4 = ipv4_packet()
            w.inject(p4)
            bufs = [bytearray(20), bytearray(dev.max_size)]
            assert dev.recv_vectored(bufs, timeout=5) == len(p4)
            assert bytes(bufs[0]) + bytes(bufs[1][: len(p4) - 20]) == p4
            assert dev.send_vectored([p4[:5], p4[5:]]) == len(p4)
            with pytest.raises(UnsupportedError, match="Linux only"):
                dev.broadcast()
        fake.close_all()


@pytest.mark.anyio
@pytest.mark.parametrize("platform", ["darwin", "openbsd"])
async def test_async_vectored_io_through_a_unix_backend(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        async with _builder().build_async() as dev:
            fd = dev.fileno()
            p4, p6 = ipv4_packet(), ipv6_packet()

            async def later() -> None:
                await anyio.sleep(0.02)
                fake.inject(fd, af_header(AF_INET6[platform]) + p6)

            bufs = [bytearray(40), bytearray(dev.max_size)]
            async with anyio.create_task_group() as tg:
                tg.start_soon(later)
                with anyio.fail_after(5):
                    assert await dev.recv_vectored(bufs) == len(p6)
            assert bytes(bufs[0]) + bytes(bufs[1][: len(p6) - 40]) == p6
            assert await dev.send_vectored([p4[:1], p4[1:]]) == len(p4)
            assert fake.sent(fd) == [af_header(2) + p4]
            with pytest.raises(UnsupportedError):
                await dev.broadcast()
        fake.close_all()


@pytest.mark.anyio
async def test_recv_into_given_no_buffer_leaves_the_device_free_to_receive() -> None:
    with pretend_platform("freebsd") as fake:
        assert isinstance(fake, FakeSyscalls)
        async with _builder().build_async() as dev:
            with pytest.raises(TypeError):
                await dev.recv_into("not a buffer")  # type: ignore[arg-type]
            fake.inject(dev.fileno(), af_header(2) + ipv4_packet())
            with anyio.fail_after(5):
                assert await dev.receive() == ipv4_packet()  # not BusyResourceError
        fake.close_all()
