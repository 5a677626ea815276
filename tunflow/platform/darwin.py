"""macOS: TUN through ``utun`` kernel-control sockets, TAP through a ``feth`` pair with BPF.

**TUN (utun).** ``socket(PF_SYSTEM, SOCK_DGRAM, SYSPROTO_CONTROL)``, ``CTLIOCGINFO`` for the id of
``com.apple.net.utun_control``, ``connect`` with ``sc_unit`` = N+1 for ``utunN`` (0: the kernel
picks), and the name read back with ``getsockopt(UTUN_OPT_IFNAME)``. Every packet carries a 4-byte
big-endian address family (``AF_INET`` 2, ``AF_INET6`` 30) that the queue removes on read and adds
on write unless ``packet_information(True)``. The interface lives as long as the socket: closing
the queue destroys it, with its addresses and routes.

**TAP (feth).** As tun-rs (and ZeroTier's MacEthernetTapAgent) do: two ``feth`` interfaces made
with ``SIOCIFCREATE`` on an ``AF_NDRV`` socket, paired with ``ifconfig <peer> peer <dev>``; frames
are read with BPF bound to the peer and written through the ``AF_NDRV`` socket bound to it. The
device the user configures is the first one; both are destroyed on close (unless ``persist``).

Addresses use ``SIOCAIFADDR``/``SIOCAIFADDR_IN6``; utun gets no subnet route from the kernel, so
with ``associate_route`` (the default) the route of each address is added through ``PF_ROUTE``.
Creating either needs root.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import re
import struct
from collections.abc import Callable
from typing import Any, Final

from ..errors import (
    ConfigError,
    DeviceBusyError,
    DeviceError,
    DeviceNotFoundError,
    PacketTooLargeError,
    UnsupportedError,
)
from ..netconfig.device import DeviceConfig, Layer
from ..netconfig.ioctl import BSD
from ..packet import HEADROOM, PacketBatch
from . import _bsd
from ._base import Buffer, OffloadInfo, read_too_large
from ._bsd import DARWIN, IFNAMSIZ, BsdInterface
from ._build import Additions
from ._syscalls import Syscalls, current_syscalls, oserror_to_device_error
from ._unix import FdQueue, PipeWaker, map_io_error, poll_wait

__all__ = [
    "open_device",
    "adopt_fd",
    "open_utun",
    "DarwinInterface",
    "FethQueue",
    "CTLIOCGINFO",
    "UTUN_CONTROL_NAME",
]

FLAVOR: Final = DARWIN

#: sys/socket.h: AF_SYSTEM (= PF_SYSTEM), AF_NDRV
AF_SYSTEM: Final = 32
AF_NDRV: Final = 27
#: sys/sys_domain.h: SYSPROTO_CONTROL, AF_SYS_CONTROL
SYSPROTO_CONTROL: Final = 2
AF_SYS_CONTROL: Final = 2
#: net/if_utun.h: UTUN_CONTROL_NAME, UTUN_OPT_IFNAME
UTUN_CONTROL_NAME: Final = "com.apple.net.utun_control"
UTUN_OPT_IFNAME: Final = 2
#: sys/kern_control.h: MAX_KCTL_NAME; struct ctl_info {u_int32_t ctl_id; char ctl_name[96];}
MAX_KCTL_NAME: Final = 96
_CTL_INFO = struct.Struct(f"=I{MAX_KCTL_NAME}s")
#: sys/kern_control.h: CTLIOCGINFO = _IOWR('N', 3, struct ctl_info)
CTLIOCGINFO: Final = BSD.iowr(ord("N"), 3, _CTL_INFO.size)
#: sys/kern_control.h: struct sockaddr_ctl {sc_len, sc_family, ss_sysaddr, sc_id, sc_unit,
#: sc_reserved[5]} — 32 bytes
_SOCKADDR_CTL = struct.Struct("=BBHII20x")
#: net/ndrv.h: struct sockaddr_ndrv {snd_len, snd_family, snd_name[IFNAMSIZ]} — 18 bytes
_SOCKADDR_NDRV = struct.Struct(f"=BB{IFNAMSIZ}s")

#: net/bpf.h (Darwin): the ioctls tun-rs sets on the BPF device of a feth TAP
_B = ord("B")
BIOCSBLEN: Final = BSD.iowr(_B, 102, 4)
BIOCPROMISC: Final = BSD.io(_B, 105)
BIOCSETIF: Final = BSD.iow(_B, 108, DARWIN.ifreq_size)
BIOCIMMEDIATE: Final = BSD.iow(_B, 112, 4)
BIOCSHDRCMPLT: Final = BSD.iow(_B, 117, 4)
BIOCSSEESENT: Final = BSD.iow(_B, 119, 4)
#: net/bpf.h: struct bpf_hdr {struct timeval32 bh_tstamp; u_int32 bh_caplen; u_int32 bh_datalen;
#: u_short bh_hdrlen;} — caplen at 8, hdrlen at 16; records are BPF_WORDALIGN'ed to 4 bytes
_BPF_HDR = struct.Struct("=8xII H")
BPF_ALIGNMENT: Final = 4
#: the BPF buffer tun-rs asks for (BUFFER_LEN)
BPF_BUFFER_LEN: Final = 131072
#: sys/fcntl.h (Darwin): F_SETFD / FD_CLOEXEC
F_SETFD: Final = 2
FD_CLOEXEC: Final = 1

_UTUN_NAME = re.compile(r"^utun(\d+)$")
_FETH_NAME = re.compile(r"^feth(\d+)?$")


def _error(exc: OSError, what: str) -> DeviceError:
    return oserror_to_device_error(exc, what, privilege="root")


# -- utun ---------------------------------------------------------------------------------------


def ctl_info(name: str = UTUN_CONTROL_NAME) -> bytes:
    """``struct ctl_info`` asking for ``name``'s control id."""
    return _CTL_INFO.pack(0, name.encode())


def sockaddr_ctl(ctl_id: int, unit: int) -> bytes:
    """``struct sockaddr_ctl`` for ``connect``."""
    return _SOCKADDR_CTL.pack(_SOCKADDR_CTL.size, AF_SYSTEM, AF_SYS_CONTROL, ctl_id, unit)


def utun_unit(name: str | None) -> int:
    """``sc_unit`` for a requested name: 0 lets the kernel pick, ``utunN`` is N+1."""
    if name is None:
        return 0
    match = _UTUN_NAME.match(name)
    if match is None:
        raise ConfigError(
            f"a macOS TUN device must be named utunN (N a number) or left to the kernel, "
            f"not {name!r}"
        )
    return int(match.group(1)) + 1


def utun_ctl_id(syscalls: Syscalls, fd: int) -> int:
    """The control id of ``com.apple.net.utun_control`` (``CTLIOCGINFO`` on ``fd``)."""
    out = syscalls.ioctl(fd, CTLIOCGINFO, ctl_info())
    assert isinstance(out, bytes)
    return int(_CTL_INFO.unpack(out)[0])


def open_utun(syscalls: Syscalls, name: str | None) -> tuple[int, str]:
    """Open a utun control socket for ``name`` (``None``: any); return the fd and its name.

    Raises:
        ConfigError: ``name`` is not ``utunN``.
        DevicePermissionError: not root.
        DeviceBusyError: ``utunN`` exists (another process owns it).
        DeviceError: any other refusal.
    """
    unit = utun_unit(name)
    try:
        fd = syscalls.socket(AF_SYSTEM, _bsd.SOCK_DGRAM, SYSPROTO_CONTROL)
    except OSError as exc:
        raise _error(exc, "socket(PF_SYSTEM, SOCK_DGRAM, SYSPROTO_CONTROL)") from exc
    try:
        ctl_id = utun_ctl_id(syscalls, fd)
        try:
            syscalls.connect(fd, sockaddr_ctl(ctl_id, unit))
        except OSError as exc:
            if exc.errno == errno.EBUSY and name is not None:
                raise DeviceBusyError(
                    exc.errno, f"{name} exists already: another process owns it"
                ) from exc
            raise
        raw = syscalls.getsockopt(fd, SYSPROTO_CONTROL, UTUN_OPT_IFNAME, IFNAMSIZ)
        got = raw.split(b"\0", 1)[0].decode()
        syscalls.fcntl(fd, F_SETFD, FD_CLOEXEC)
    except BaseException as exc:
        _bsd.close_quietly(syscalls, fd)
        if isinstance(exc, OSError) and not isinstance(exc, DeviceError):
            raise _error(exc, f"open utun ({name or 'kernel-chosen unit'})") from exc
        raise
    return fd, got


class DarwinInterface(BsdInterface):
    """A utun or feth interface. For feth the MTU is set on the I/O peer too (it is brought up
    once at creation and stays up)."""

    def __init__(self, *, peer: str | None = None, **kwargs: Any) -> None:
        super().__init__(flavor=FLAVOR, **kwargs)
        self.peer = peer

    def set_mtu(self, mtu: int) -> None:
        super().set_mtu(mtu)
        if self.peer is not None:
            with self.op(f"set MTU {mtu} on the feth peer {self.peer}"):
                self.ioctl_ifreq(FLAVOR.SIOCSIFMTU, struct.pack("=i", mtu), name=self.peer)


def _make_queue(
    syscalls: Syscalls,
    fd: int,
    *,
    close_fd: bool,
    packet_information: bool,
    opened: bool = False,
) -> FdQueue:
    return _bsd.make_fd_queue(
        syscalls,
        FLAVOR,
        fd,
        af_header=not packet_information,
        framed=True,
        close_fd=close_fd,
        opened=opened,
    )


def _open_tun(config: DeviceConfig, syscalls: Syscalls) -> tuple[DarwinInterface, FdQueue]:
    if config.attach:
        raise UnsupportedError(
            "a utun belongs to the process that opened it; it cannot be attached"
        )
    if config.persist:
        raise UnsupportedError("a utun disappears with its socket; persist is not possible")
    fd, name = open_utun(syscalls, config.name)
    iface = DarwinInterface(
        syscalls=syscalls, name=name, layer=Layer.L3, associate_route=config.associate_route
    )
    iface.destroy = None  # (the utun goes with its control socket)
    try:
        _bsd.configure(iface, config, Additions())
        queue = _make_queue(
            syscalls, fd, close_fd=True, packet_information=config.packet_information, opened=True
        )
    except BaseException:
        # Closing the control socket destroys the utun with every address and route on it.
        _bsd.close_quietly(syscalls, fd)
        raise
    return iface, queue


# -- feth + BPF ---------------------------------------------------------------------------------


def sockaddr_ndrv(name: str) -> bytes:
    """``struct sockaddr_ndrv`` naming interface ``name``."""
    return _SOCKADDR_NDRV.pack(_SOCKADDR_NDRV.size, AF_NDRV, name.encode())


def parse_bpf_records(buf: bytes | memoryview) -> list[bytes]:
    """The captured frames of one BPF read: ``bpf_hdr``, ``bh_caplen`` bytes at ``bh_hdrlen``,
    the next record ``BPF_WORDALIGN(bh_hdrlen + bh_caplen)`` further on."""
    frames: list[bytes] = []
    pos = 0
    end = len(buf)
    while pos + _BPF_HDR.size <= end:
        caplen, _datalen, hdrlen = _BPF_HDR.unpack_from(buf, pos)
        if hdrlen == 0:
            break
        start = pos + hdrlen
        if caplen and start + caplen <= end:
            frames.append(bytes(buf[start : start + caplen]))
        pos += (hdrlen + caplen + BPF_ALIGNMENT - 1) & ~(BPF_ALIGNMENT - 1)
    return frames


class FethQueue:
    """The queue of a feth TAP: frames read from BPF, written to the ``AF_NDRV`` socket.

    :meth:`fileno` is the BPF fd (readable when frames wait). One BPF read may return several
    frames; the extra ones are kept and handed out before the next read.
    """

    def __init__(
        self,
        syscalls: Syscalls,
        bpf_fd: int,
        ndrv_fd: int,
        *,
        buffer_len: int,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        import os

        self._sys = syscalls
        self._bpf = bpf_fd
        self._ndrv = ndrv_fd
        self._buffer_len = buffer_len
        self._frames: collections.deque[bytes] = collections.deque()
        self._on_close = on_close
        #: frames larger than the room a read offered (the MTU raised outside tunflow): dropped
        self.rx_truncated = 0
        self.offload = OffloadInfo()
        for fd in (bpf_fd, ndrv_fd):
            os.set_blocking(fd, False)

    def __repr__(self) -> str:
        return f"<FethQueue bpf={self._bpf} ndrv={self._ndrv}>"

    def fileno(self) -> int:
        return self._bpf

    def wait_handle(self) -> int | None:
        return None

    def _check(self) -> None:
        if self._bpf < 0:
            from ..errors import ClosedDeviceError

            raise ClosedDeviceError("the device is closed")

    def wait(
        self,
        writable: bool,
        timeout: float | None,
        waker: PipeWaker | None,
        interrupt: PipeWaker | None = None,
    ) -> bool:
        """Block until a frame can be read (or written); ``False`` on timeout or wake."""
        import select

        self._check()
        if not writable and self._frames:
            return True
        fd = self._ndrv if writable else self._bpf
        events = select.POLLOUT if writable else select.POLLIN
        return poll_wait(fd, events, timeout, waker, None, interrupt)

    def _fill(self) -> None:
        try:
            data = self._sys.read(self._bpf, self._buffer_len)
        except BlockingIOError:
            raise
        except OSError as exc:
            raise map_io_error(exc, "read") from exc
        self._frames.extend(parse_bpf_records(data))
        if not self._frames:
            raise BlockingIOError(errno.EAGAIN, "no frame waiting")

    def recv(self, max_size: int) -> bytes:
        """The next frame; one larger than ``max_size`` (the MTU raised outside tunflow) is
        dropped, counted in :attr:`rx_truncated` and raised as :class:`PacketTooLargeError`, as
        :class:`FdQueue` does with a packet the kernel cut short — never handed out cut."""
        self._check()
        if not self._frames:
            self._fill()
        frame = self._frames.popleft()
        if len(frame) > max_size:
            self.rx_truncated += 1
            raise read_too_large(len(frame), max_size, "frame")
        return frame

    def recv_into(self, buf: memoryview) -> int:
        frame = self.recv(len(buf))
        buf[: len(frame)] = frame
        return len(frame)

    def recv_batch(self, batch: PacketBatch, max_size: int) -> int:
        self._check()
        count = 0
        while len(batch.offsets) < batch.max_packets and batch.room() >= max_size:
            if not self._frames:
                try:
                    self._fill()
                except BlockingIOError:
                    break
                except Exception:
                    if count:
                        return count
                    raise
            frame = self._frames.popleft()
            if len(frame) > batch.room():  # (as FdQueue: whole when it fits, else dropped)
                self.rx_truncated += 1
                continue
            off = batch.end + HEADROOM
            batch.buffer[off : off + len(frame)] = frame
            batch.commit(off, len(frame))
            count += 1
        return count

    def send(self, packet: Buffer) -> int:
        self._check()
        try:
            return self._sys.write(self._ndrv, packet)
        except BlockingIOError:
            raise
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                raise BlockingIOError(errno.EAGAIN, "the feth send queue is full") from exc
            if exc.errno == errno.EMSGSIZE:
                raise PacketTooLargeError("the frame is larger than the feth MTU") from exc
            raise map_io_error(exc, "write") from exc

    def send_batch(self, batch: PacketBatch, start: int = 0) -> int:
        """Write frames from ``start``; return the index after the last one written. Raises as
        :meth:`FdQueue.send_batch`: :class:`BlockingIOError` when not even frame ``start``
        could be written, the raw :class:`OSError` when the kernel refused frame ``start``
        itself (``EINVAL``, ``EMSGSIZE``: for the caller to skip and count); a failure after
        some frames were written returns their progress and shows again on the next call."""
        self._check()
        write = self._sys.write
        ndrv = self._ndrv
        i = start
        total = len(batch)
        try:
            while i < total:
                write(ndrv, batch.packet(i))
                i += 1
        except OSError as exc:
            if i > start:
                return i
            if isinstance(exc, BlockingIOError) or exc.errno == errno.ENOBUFS:
                raise BlockingIOError(errno.EAGAIN, "the feth send queue is full") from exc
            if exc.errno in (errno.EINVAL, errno.EMSGSIZE):
                raise
            raise map_io_error(exc, "write") from exc
        return i

    def close(self) -> None:
        bpf, ndrv = self._bpf, self._ndrv
        if bpf < 0:
            return
        self._bpf = self._ndrv = -1
        self._frames.clear()
        try:
            self._sys.close(bpf)
        finally:
            try:
                self._sys.close(ndrv)
            finally:
                if self._on_close is not None:
                    self._on_close()


def _open_bpf(syscalls: Syscalls) -> int:
    """The first free ``/dev/bpfN`` (busy ones answer ``EBUSY``)."""
    for unit in range(256):
        try:
            return syscalls.open(f"/dev/bpf{unit}", _bsd.O_RDWR | FLAVOR.cloexec)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                continue
            raise
    raise DeviceNotFoundError(errno.ENOENT, "no free /dev/bpf device")


def _feth_name(name: str | None, what: str) -> str:
    if name is None:
        return "feth"
    if not _FETH_NAME.match(name):
        raise ConfigError(f"a macOS TAP {what} must be named fethN, not {name!r}")
    return name


def _open_tap(config: DeviceConfig, syscalls: Syscalls) -> tuple[DarwinInterface, FethQueue]:
    dev_request = _feth_name(config.name, "device")
    peer_request = _feth_name(config.peer_feth, "peer (peer_feth)")
    created: list[str] = []
    fds: list[int] = []
    steps: list[str] = []

    def cleanup() -> None:
        for fd in reversed(fds):
            with contextlib.suppress(OSError):
                syscalls.close(fd)
        fds.clear()
        # (persist keeps a pair that was built, not one a failed build leaves half-made)
        for name in reversed(created):
            with contextlib.suppress(OSError):
                _bsd.destroy_interface(syscalls, FLAVOR, name)
        created.clear()

    iface: DarwinInterface | None = None
    added = Additions()
    reused: list[_bsd.LinkState] = []
    try:
        steps.append("socket(AF_NDRV)")
        ndrv = syscalls.socket(AF_NDRV, _bsd.SOCK_RAW, 0)
        fds.append(ndrv)
        # Darwin has no SOCK_CLOEXEC: as for the utun socket (the BPF node is opened with
        # O_CLOEXEC), a program this process runs must not inherit the frame socket.
        syscalls.fcntl(ndrv, F_SETFD, FD_CLOEXEC)
        names: list[str] = []
        for request in (dev_request, peer_request):
            steps.append(f"SIOCIFCREATE {request}")
            try:
                got = _bsd.create_interface(syscalls, FLAVOR, request, fd=ndrv)
                created.append(got)
            except OSError as exc:
                # A named feth that exists is reused (and left in place on close), as tun-rs's
                # reuse_dev does by default.
                if exc.errno != errno.EEXIST or request == "feth":
                    raise
                got = request
            names.append(got)
        dev, peer = names
        steps.append(f"ifconfig {peer} peer {dev}")
        syscalls.run(["ifconfig", peer, "peer", dev])
        steps.append("bind/connect AF_NDRV")
        address = sockaddr_ndrv(peer)
        syscalls.bind(ndrv, address)
        syscalls.connect(ndrv, address)
        steps.append("open /dev/bpf")
        bpf = _open_bpf(syscalls)
        fds.append(bpf)
        steps.append("BPF setup")
        out = syscalls.ioctl(bpf, BIOCSBLEN, struct.pack("=I", BPF_BUFFER_LEN))
        buffer_len = struct.unpack("=I", out)[0] if isinstance(out, bytes) else BPF_BUFFER_LEN
        syscalls.ioctl(bpf, BIOCIMMEDIATE, struct.pack("=I", 1))
        syscalls.ioctl(bpf, BIOCSSEESENT, struct.pack("=I", 0))
        syscalls.ioctl(bpf, BIOCSETIF, _bsd.ifreq(FLAVOR, peer))
        syscalls.ioctl(bpf, BIOCSHDRCMPLT, struct.pack("=I", 1))
        syscalls.ioctl(bpf, BIOCPROMISC, 0)
        iface = DarwinInterface(
            syscalls=syscalls, name=dev, layer=Layer.L2, associate_route=False, peer=peer
        )
        steps.append("read the settings of a reused feth")
        if dev not in created:
            reused.append(_bsd.snapshot_for(iface, config))
        if peer not in created:
            reused.append(
                iface.snapshot(mtu=config.link_mtu is not None, mac=False, up=True, name=peer)
            )
        steps.append("bring the peer up")
        with iface.op(f"bring the feth peer {peer} up"):
            iface.set_up(True, name=peer)
        _bsd.configure(iface, config, added)
        queue = FethQueue(syscalls, bpf, ndrv, buffer_len=buffer_len or BPF_BUFFER_LEN)
    except BaseException as exc:
        if iface is not None:
            if iface.name() not in created:
                added.undo(iface, iface.name())  # a reused feth gets back what this build added…
            for state in reused:
                iface.restore(state)  # …and its MTU, MAC and up/down state
        cleanup()
        if isinstance(exc, OSError) and not isinstance(exc, DeviceError):
            raise _error(exc, f"create the feth TAP ({steps[-1] if steps else 'start'})") from exc
        raise
    # From here the queue owns the fds; the interface owns the pair.
    fds.clear()
    # close() destroys the ends this build created unless persist; of a pair it reused,
    # both ends if persist(False) asks for it at run time
    iface.destroy = [
        lambda name=name: _bsd.destroy_interface(syscalls, FLAVOR, name)  # type: ignore[misc]
        for name in (created or [dev, peer])
    ]
    iface.keep = config.persist if created else True
    return iface, queue


# -- backend entry points -----------------------------------------------------------------------


def open_device(
    config: DeviceConfig, *, syscalls: Syscalls | None = None
) -> tuple[DarwinInterface, FdQueue | FethQueue]:
    """Create a utun (TUN) or feth pair (TAP) and configure it.

    Raises:
        ConfigError: a name macOS does not accept (``utunN``, ``fethN``).
        UnsupportedError: a Linux-only option (multi-queue, offload, txqueuelen, owner).
        DevicePermissionError: not root.
        DeviceBusyError: the utun unit is taken.
        DeviceError: any other refusal, with errno.
    """
    _bsd.reject_linux_only(config, "macOS")
    _bsd.check_lp64("macOS")
    sys_ = syscalls or current_syscalls()
    if config.layer is Layer.L2:
        return _open_tap(config, sys_)
    return _open_tun(config, sys_)


def adopt_fd(
    fd: int,
    *,
    close_fd: bool,
    packet_information: bool = False,
    layer: Layer = Layer.L3,
    syscalls: Syscalls | None = None,
) -> tuple[DarwinInterface | None, FdQueue]:
    """Wrap a utun fd made elsewhere. If it is a utun control socket its interface is learnt
    (``UTUN_OPT_IFNAME``) and can be configured; the 4-byte header is removed unless
    ``packet_information``. Another fd adopted with ``layer=Layer.L2`` (a tap character
    device) carries bare Ethernet frames; a feth TAP has no single fd to adopt.

    Raises:
        UnsupportedError: ``packet_information`` for an fd adopted as ``Layer.L2`` that is not
            a utun (a tap has no header); the fd is left open.
    """
    sys_ = syscalls or current_syscalls()
    iface: DarwinInterface | None = None
    try:
        raw = sys_.getsockopt(fd, SYSPROTO_CONTROL, UTUN_OPT_IFNAME, IFNAMSIZ)
        name = raw.split(b"\0", 1)[0].decode()
        if name:
            iface = DarwinInterface(syscalls=sys_, name=name, layer=Layer.L3)
            iface.destroy = None  # (the utun goes with its control socket)
    except OSError:
        iface = None
    if iface is None and layer is Layer.L2:
        if packet_information:
            raise UnsupportedError(_bsd.tap_fd_has_no_header("macOS"))
        return None, _bsd.make_fd_queue(sys_, FLAVOR, fd, af_header=False, close_fd=close_fd)
    queue = _make_queue(sys_, fd, close_fd=close_fd, packet_information=packet_information)
    return iface, queue
