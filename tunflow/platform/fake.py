"""A fake system-call layer: run the macOS, BSD, iOS/Android and Windows backends on any machine.

:class:`FakeSyscalls` implements :class:`~tunflow.platform._syscalls.Syscalls`. It

* **records** every call with its exact arguments (:attr:`FakeSyscalls.calls`), so a test can
  check the structures and ioctl numbers a backend passes and the order of a build;
* **answers from a script** (:meth:`~FakeSyscalls.on`, :meth:`~FakeSyscalls.fail`,
  :meth:`~FakeSyscalls.fail_call`) before anything else;
* otherwise answers like a small **kernel model** of the platform it was made for: interfaces
  with MTU, flags, MAC and addresses, utun control sockets, cloning devices, ``PF_ROUTE``
  messages and a route table, BPF, ``ifconfig … peer``, ``sh MAKEDEV``; on Windows, fake
  ``kernel32``/``iphlpapi``/``wintun`` DLLs (:class:`FakeWindows`).

Every fd it hands out is one end of a real ``AF_UNIX`` datagram socketpair, so queues can
``poll``, read and write it: :meth:`~FakeSyscalls.inject` puts a packet where the backend will
read it and :meth:`~FakeSyscalls.sent` returns what it wrote. :meth:`~FakeSyscalls.open_fds`
lists the fds not closed yet — the clean-up tests assert it is empty after a failed build.

:func:`pretend_platform` makes ``tunflow.platform.current()`` pick a backend and the backends
use a given fake, so ``DeviceBuilder(...).build_sync()`` runs "on FreeBSD" in a Linux test.

This is test support: it never touches the real network configuration.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_network,
)
from typing import Any

import attrs

from ._syscalls import CommandError, IfAddr, Syscalls, install_syscalls

__all__ = [
    "Call",
    "Rule",
    "FakeInterface",
    "FakeSyscalls",
    "FakeWindows",
    "pretend_platform",
]

_UNSET: Any = object()


@attrs.define
class Call:
    """One recorded system call."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = attrs.field(factory=dict)
    #: what it returned, or the exception it raised
    result: Any = None
    error: BaseException | None = None
    #: its position in :attr:`FakeSyscalls.calls`
    number: int = -1

    def __getitem__(self, i: int) -> Any:
        return self.args[i]


@attrs.define
class Rule:
    """A scripted answer: for calls named ``name`` that ``when`` accepts, raise ``error``, call
    ``handler(*args)`` or return ``result``; at most ``times`` times (``None``: always)."""

    name: str
    when: Callable[[Call], bool] | None = None
    result: Any = _UNSET
    error: BaseException | None = None
    handler: Callable[..., Any] | None = None
    times: int | None = None
    used: int = 0

    def matches(self, call: Call) -> bool:
        if self.name != call.name:
            return False
        if self.times is not None and self.used >= self.times:
            return False
        return self.when is None or bool(self.when(call))


@attrs.define
class FakeInterface:
    """An interface of the kernel model."""

    name: str
    index: int
    kind: str = "tun"
    mtu: int = 1500
    flags: int = 0x8010  # IFF_POINTOPOINT | IFF_MULTICAST
    mac: bytes = bytes(6)
    v4: list[tuple[IPv4Interface, IPv4Address]] = attrs.field(factory=list)
    v6: list[IPv6Interface] = attrs.field(factory=list)
    peer: str | None = None
    #: destroyed when the fd that made it closes (utun, NetBSD's cloned tap)
    dies_with_fd: bool = False


@attrs.define
class _Fd:
    fd: int
    peer: int
    kind: str  # "file" or "socket"
    path: str | None = None
    family: int | None = None
    iface: str | None = None
    unit: int | None = None
    closed: bool = False


def _errno_error(code: int, what: str = "") -> OSError:
    text = os.strerror(code)
    return OSError(code, f"{what}: {text}" if what else text)


class FakeSyscalls:
    """A :class:`~tunflow.platform._syscalls.Syscalls` that records, scripts and models.

    Args:
        platform: which kernel to model (``darwin``, ``ios``, ``freebsd``, ``openbsd``,
            ``netbsd``, ``windows``, ``android``, ``linux``); ``None`` models nothing and answers
            every call with a neutral default.
    """

    #: the control id the model gives com.apple.net.utun_control
    UTUN_CTL_ID = 7

    def __init__(self, platform: str | None = None) -> None:
        self.platform = platform
        self.calls: list[Call] = []
        self.rules: list[Rule] = []
        self._fail_at: dict[int, BaseException] = {}
        self._fds: dict[int, _Fd] = {}
        self._lock = threading.RLock()
        self.interfaces: dict[str, FakeInterface] = {}
        self._next_index = 1
        #: device nodes that do not exist (``sh MAKEDEV`` makes them)
        self.missing_nodes: set[str] = set()
        #: BPF units that answer EBUSY
        self.busy_bpf: set[int] = set()
        #: (network, gateway, interface index) of routes added through PF_ROUTE
        self.routes: list[
            tuple[IPv4Network | IPv6Network, IPv4Address | IPv6Address | None, int]
        ] = []
        #: fd -> raw sockaddr answered by getpeername (for find_utun_fd)
        self.peernames: dict[int, bytes] = {}
        self._windows: FakeWindows | None = None
        self.add_interface("lo0", kind="loopback")

    def __repr__(self) -> str:
        return f"<FakeSyscalls {self.platform} calls={len(self.calls)}>"

    # -- the model's flavour -------------------------------------------------------------------

    @property
    def flavor(self) -> Any:
        from . import _bsd

        return {
            "darwin": _bsd.DARWIN,
            "ios": _bsd.DARWIN,
            "freebsd": _bsd.FREEBSD,
            "openbsd": _bsd.OPENBSD,
            "netbsd": _bsd.NETBSD,
        }.get(self.platform or "")

    # -- scripting -----------------------------------------------------------------------------

    def on(
        self,
        name: str,
        *,
        when: Callable[[Call], bool] | None = None,
        result: Any = _UNSET,
        error: BaseException | int | None = None,
        handler: Callable[..., Any] | None = None,
        times: int | None = None,
    ) -> Rule:
        """Script the answer to calls named ``name`` (checked before the model; first rule wins).

        ``error`` may be an errno: it becomes ``OSError(errno, strerror)``.
        """
        if isinstance(error, int):
            error = _errno_error(error, name)
        rule = Rule(name, when, result, error, handler, times)
        self.rules.append(rule)
        return rule

    def fail(
        self,
        name: str,
        error: BaseException | int,
        *,
        when: Callable[[Call], bool] | None = None,
        times: int | None = 1,
    ) -> Rule:
        """Make calls named ``name`` (that ``when`` accepts) raise ``error``, ``times`` times."""
        return self.on(name, when=when, error=error, times=times)

    def fail_call(self, number: int, error: BaseException | int = errno.EIO) -> None:
        """Make the ``number``-th call (0-based, counting every call) raise ``error``."""
        if isinstance(error, int):
            error = _errno_error(error)
        self._fail_at[number] = error

    def fail_ioctl(
        self, request: int, error: BaseException | int, *, times: int | None = 1
    ) -> Rule:
        """Make ``ioctl(…, request, …)`` raise ``error``."""
        return self.fail("ioctl", error, when=lambda c: c.args[1] == request, times=times)

    # -- inspection ----------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The names of the calls made, in order."""
        return [c.name for c in self.calls]

    def named(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    def ioctls(self, request: int | None = None) -> list[Call]:
        """Recorded ``ioctl`` calls (only those with ``request`` if given)."""
        return [
            c for c in self.calls if c.name == "ioctl" and (request is None or c.args[1] == request)
        ]

    def requests(self) -> list[int]:
        """The ioctl request numbers, in order."""
        return [c.args[1] for c in self.calls if c.name == "ioctl"]

    def open_fds(self) -> set[int]:
        """Fds handed out and not closed through :meth:`close`."""
        with self._lock:
            return {fd for fd, info in self._fds.items() if not info.closed}

    def fd_info(self, fd: int) -> _Fd:
        return self._fds[fd]

    def device_fd(self, name: str) -> int:
        """The open fd of interface ``name``'s device (tun/tap node or utun socket)."""
        for fd, info in self._fds.items():
            if info.iface == name and not info.closed and info.kind in ("file", "socket"):
                return fd
        raise KeyError(name)

    def inject(self, fd: int, data: bytes) -> None:
        """Make ``data`` the next datagram a read of ``fd`` returns."""
        os.write(self._fds[fd].peer, data)

    def sent(self, fd: int) -> list[bytes]:
        """Every datagram written to ``fd`` since the last call."""
        peer = self._fds[fd].peer
        out: list[bytes] = []
        while True:
            try:
                out.append(os.read(peer, 1 << 17))
            except (BlockingIOError, OSError):
                return out

    def close_all(self) -> None:
        """Close every real fd this fake still holds (test teardown)."""
        with self._lock:
            for info in self._fds.values():
                for fd in (info.fd, info.peer):
                    with contextlib.suppress(OSError):
                        os.close(fd)
                info.closed = True
        if self._windows is not None:
            self._windows.kernel32.close_all()

    # -- the model's state ---------------------------------------------------------------------

    def add_interface(self, name: str, **kwargs: Any) -> FakeInterface:
        with self._lock:
            iface = FakeInterface(name=name, index=self._next_index, **kwargs)
            self._next_index += 1
            self.interfaces[name] = iface
            return iface

    def remove_interface(self, name: str) -> None:
        with self._lock:
            iface = self.interfaces.pop(name)
            self.routes = [r for r in self.routes if r[2] != iface.index]

    def snapshot(self) -> dict[str, Any]:
        """The model's interfaces (with addresses) and routes, for before/after comparisons."""
        return {
            "interfaces": {
                n: (i.mtu, tuple(i.v4), tuple(i.v6), i.mac) for n, i in self.interfaces.items()
            },
            "routes": sorted(str(r) for r in self.routes),
        }

    def _iface(self, name: str) -> FakeInterface:
        iface = self.interfaces.get(name)
        if iface is None:
            raise _errno_error(errno.ENXIO, name)
        return iface

    def _next_unit(self, prefix: str) -> str:
        n = 0
        while f"{prefix}{n}" in self.interfaces:
            n += 1
        return f"{prefix}{n}"

    # -- dispatch ------------------------------------------------------------------------------

    def _call(
        self, name: str, args: tuple[Any, ...], model: Callable[[], Any], **kwargs: Any
    ) -> Any:
        with self._lock:
            number = len(self.calls)
            call = Call(name, args, kwargs, number=number)
            self.calls.append(call)
            rule = next((r for r in self.rules if r.matches(call)), None)
            if rule is not None:
                rule.used += 1
        try:
            scripted = self._fail_at.get(number)
            if scripted is None and rule is not None:
                scripted = rule.error
            if scripted is not None:
                if name == "close":
                    # close(2) releases the fd even when it reports an error (EINTR, EIO).
                    with contextlib.suppress(OSError):
                        model()
                raise scripted
            if rule is not None:
                if rule.handler is not None:
                    call.result = rule.handler(*args, **kwargs)
                    return call.result
                if rule.result is not _UNSET:
                    call.result = rule.result
                    return call.result
            call.result = model()
            return call.result
        except BaseException as exc:
            call.error = exc
            raise

    def _new_fd(self, kind: str, **info: Any) -> int:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        fd, peer = a.detach(), b.detach()
        os.set_blocking(peer, False)
        with self._lock:
            self._fds[fd] = _Fd(fd=fd, peer=peer, kind=kind, **info)
        return fd

    def _fd(self, fd: int) -> _Fd:
        info = self._fds.get(fd)
        if info is None or info.closed:
            raise _errno_error(errno.EBADF)
        return info

    # -- files -----------------------------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        return int(self._call("open", (path, flags), lambda: self._open(path)))

    def _open(self, path: str) -> int:
        if path in self.missing_nodes:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        node = path.rsplit("/", 1)[-1]
        match = re.fullmatch(r"(tun|tap|bpf)(\d*)", node)
        if not path.startswith("/dev/") or match is None or self.flavor is None:
            return self._new_fd("file", path=path)
        prefix, unit = match.groups()
        if prefix == "bpf":
            if unit and int(unit) in self.busy_bpf:
                raise _errno_error(errno.EBUSY, path)
            return self._new_fd("file", path=path)
        if not unit:  # a cloning device: FreeBSD /dev/tun, /dev/tap; NetBSD /dev/tap
            name = self._next_unit(prefix)
            self.add_interface(name, kind=prefix, dies_with_fd=self.platform == "netbsd")
        else:
            name = node
            if name in self.interfaces:
                if any(i.iface == name and not i.closed for i in self._fds.values()):
                    raise _errno_error(errno.EBUSY, path)
            else:
                self.add_interface(name, kind=prefix)
        return self._new_fd("file", path=path, iface=name)

    def close(self, fd: int) -> None:
        self._call("close", (fd,), lambda: self._close(fd))

    def _close(self, fd: int) -> None:
        with self._lock:
            info = self._fd(fd)
            info.closed = True
            iface = self.interfaces.get(info.iface or "")
            if iface is not None and iface.dies_with_fd:
                self.remove_interface(iface.name)
        for real in (info.fd, info.peer):
            with contextlib.suppress(OSError):
                os.close(real)

    def read(self, fd: int, size: int) -> bytes:
        return bytes(self._call("read", (fd, size), lambda: os.read(self._fd(fd).fd, size)))

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        payload = bytes(data)
        return int(self._call("write", (fd, payload), lambda: self._write(fd, payload)))

    def _write(self, fd: int, data: bytes) -> int:
        info = self._fd(fd)
        if info.family == 17 and self.flavor is not None:  # PF_ROUTE
            self._route_message(data)
            return len(data)
        return os.write(info.fd, data)

    def readv(self, fd: int, buffers: Sequence[bytearray | memoryview]) -> int:
        return int(self._call("readv", (fd, buffers), lambda: os.readv(self._fd(fd).fd, buffers)))

    def writev(self, fd: int, buffers: Sequence[bytes | bytearray | memoryview]) -> int:
        data = tuple(bytes(b) for b in buffers)
        return int(self._call("writev", (fd, data), lambda: os.writev(self._fd(fd).fd, data)))

    def fcntl(self, fd: int, cmd: int, arg: int = 0) -> int:
        return int(self._call("fcntl", (fd, cmd, arg), lambda: (self._fd(fd), 0)[1]))

    # -- sockets -------------------------------------------------------------------------------

    def socket(self, family: int, type_: int, proto: int) -> int:
        return int(
            self._call(
                "socket",
                (family, type_, proto),
                lambda: self._new_fd("socket", family=family),
            )
        )

    def connect(self, fd: int, address: bytes) -> None:
        self._call("connect", (fd, bytes(address)), lambda: self._connect(fd, bytes(address)))

    def _connect(self, fd: int, address: bytes) -> None:
        info = self._fd(fd)
        if info.family == 32 and self.flavor is not None:  # AF_SYSTEM: a utun
            _len, _fam, _sys, ctl_id, unit = struct.unpack_from("=BBHII", address)
            if ctl_id != self.UTUN_CTL_ID:
                raise _errno_error(errno.ENOENT, "connect")
            name = self._next_unit("utun") if unit == 0 else f"utun{unit - 1}"
            if name in self.interfaces:
                raise _errno_error(errno.EBUSY, "connect")
            self.add_interface(name, kind="utun", dies_with_fd=True)
            info.iface = name
            info.unit = int(name[4:]) + 1
        elif info.family == 27:  # AF_NDRV
            self._iface(address[2:18].split(b"\0", 1)[0].decode())

    def bind(self, fd: int, address: bytes) -> None:
        self._call("bind", (fd, bytes(address)), lambda: self._bind(fd, bytes(address)))

    def _bind(self, fd: int, address: bytes) -> None:
        info = self._fd(fd)
        if info.family == 27:
            info.iface = self._iface(address[2:18].split(b"\0", 1)[0].decode()).name

    def getpeername(self, fd: int) -> bytes:
        return bytes(self._call("getpeername", (fd,), lambda: self._getpeername(fd)))

    def _getpeername(self, fd: int) -> bytes:
        if fd in self.peernames:
            return self.peernames[fd]
        info = self._fds.get(fd)
        if info is None or info.closed:
            raise _errno_error(errno.EBADF)
        if info.kind != "socket":
            raise _errno_error(errno.ENOTSOCK)
        if info.family == 32 and info.unit is not None:
            return struct.pack("=BBHII20x", 32, 32, 2, self.UTUN_CTL_ID, info.unit)
        raise _errno_error(errno.ENOTCONN)

    def getsockopt(self, fd: int, level: int, option: int, size: int) -> bytes:
        return bytes(
            self._call(
                "getsockopt",
                (fd, level, option, size),
                lambda: self._getsockopt(fd, level, option, size),
            )
        )

    def _getsockopt(self, fd: int, level: int, option: int, size: int) -> bytes:
        info = self._fd(fd)
        if info.family == 32 and (level, option) == (2, 2):  # UTUN_OPT_IFNAME
            if info.iface is None:
                raise _errno_error(errno.ENOTCONN)
            return (info.iface.encode() + b"\0")[:size]
        if info.family == 32 or self.flavor is None:
            return bytes(size)
        raise _errno_error(errno.ENOPROTOOPT)

    def setsockopt(self, fd: int, level: int, option: int, value: bytes) -> None:
        self._call("setsockopt", (fd, level, option, bytes(value)), lambda: (self._fd(fd), None)[1])

    # -- ioctl ---------------------------------------------------------------------------------

    def ioctl(self, fd: int, request: int, arg: bytes | int = 0) -> bytes | int:
        frozen = bytes(arg) if isinstance(arg, bytes | bytearray) else arg
        result: bytes | int = self._call(
            "ioctl", (fd, request, frozen), lambda: self._ioctl(fd, request, frozen)
        )
        return result

    def _ioctl(self, fd: int, request: int, arg: bytes | int) -> bytes | int:
        info = self._fd(fd)
        flavor = self.flavor
        if flavor is None or isinstance(arg, int):
            return arg
        size = request >> 16 & 0x1FFF  # sys/ioccom.h: IOCPARM_LEN
        if size and len(arg) != size:
            # the kernel copies exactly IOCPARM_LEN bytes in and out, whatever was passed
            raise AssertionError(
                f"ioctl {request:#x} takes {size} bytes (IOCPARM_LEN), was given {len(arg)}"
            )
        from . import _bsd

        name = arg[:16].split(b"\0", 1)[0].decode(errors="replace")

        def reply(payload: bytes = b"", as_name: str | None = None) -> bytes:
            return _bsd.ifreq(flavor, as_name or name, payload)

        if flavor.name == "darwin":
            from . import darwin

            if request == darwin.CTLIOCGINFO:
                wanted = arg[4:].split(b"\0", 1)[0].decode()
                if wanted != darwin.UTUN_CONTROL_NAME:
                    raise _errno_error(errno.ENOENT, "CTLIOCGINFO")
                return struct.pack("=I", self.UTUN_CTL_ID) + arg[4:]
            if request == darwin.BIOCSETIF:
                self._iface(name)
                info.iface = None
                return arg
        if flavor.name == "freebsd":
            from . import freebsd

            if request == freebsd.FIODGNAME:
                size, address = struct.unpack("=i4xQ", arg)
                raw = (info.iface or "").encode() + b"\0"
                ctypes.memmove(address, raw, min(len(raw), size))
                return arg
            if request == freebsd.SIOCSIFNAME:
                (address,) = struct.unpack_from("=Q", arg, 16)
                new = ctypes.string_at(address).decode()
                iface = self._iface(name)
                if new in self.interfaces:
                    raise _errno_error(errno.EEXIST, "SIOCSIFNAME")
                del self.interfaces[name]
                iface.name = new
                self.interfaces[new] = iface
                for other in self._fds.values():
                    if other.iface == name:
                        other.iface = new
                return arg
            if request == freebsd.TUNSIFHEAD:
                return arg
        if flavor.name == "netbsd":
            from . import netbsd

            if request == netbsd.TAPGIFNAME:
                return reply(as_name=info.iface or "")
            if request == netbsd.TUNSIFHEAD:
                return arg
            if request == netbsd.SIOCALIFADDR:
                self._add_link_address(info, self._iface(name), arg)
                return arg
            if request == netbsd.SIOCDLIFADDR:
                # link_control: the active address cannot be deleted (EBUSY); inactive ones are
                # not modelled, so any other is taken as there
                sdl = arg[24:152]
                if sdl[8 + sdl[5] : 8 + sdl[5] + sdl[6]] == self._iface(name).mac:
                    raise _errno_error(errno.EBUSY, "SIOCDLIFADDR")
                return arg
        if request == flavor.SIOCGIFMTU:
            return reply(struct.pack("=i", self._iface(name).mtu))
        if request == flavor.SIOCSIFMTU:
            self._iface(name).mtu = struct.unpack_from("=i", arg, 16)[0]
            return arg
        if request == flavor.SIOCGIFFLAGS:
            # FreeBSD's net/if.h: short ifru_flags[2] — ifr_flags (low 16 bits), ifr_flagshigh
            flags = self._iface(name).flags
            high = flags >> 16 if flavor.flagshigh else 0
            return reply(struct.pack("=HH", flags & 0xFFFF, high))
        if request == flavor.SIOCSIFFLAGS:
            low, high = struct.unpack_from("=HH", arg, 16)
            self._iface(name).flags = low | (high << 16 if flavor.flagshigh else 0)
            return arg
        if request == flavor.SIOCAIFADDR:
            iface = self._iface(name)
            ip = IPv4Address(arg[20:24])
            dst = IPv4Address(arg[36:40])
            mask = IPv4Address(arg[52:56])
            entry = (IPv4Interface(f"{ip}/{mask}"), dst)
            iface.v4 = [e for e in iface.v4 if e[0].ip != ip] + [entry]
            return arg
        if request == flavor.SIOCDIFADDR:
            iface = self._iface(name)
            ip = IPv4Address(arg[20:24])
            if not any(e[0].ip == ip for e in iface.v4):
                raise _errno_error(errno.EADDRNOTAVAIL, "SIOCDIFADDR")
            iface.v4 = [e for e in iface.v4 if e[0].ip != ip]
            return arg
        if request == flavor.SIOCAIFADDR_IN6:
            iface = self._iface(name)
            ip6 = IPv6Address(arg[24:40])
            mask6 = IPv6Address(arg[16 + 56 + 8 : 16 + 56 + 24])
            plen = bin(int(mask6)).count("1")
            iface.v6 = [a for a in iface.v6 if a.ip != ip6] + [IPv6Interface((ip6, plen))]
            return arg
        if request == flavor.SIOCDIFADDR_IN6:
            iface = self._iface(name)
            ip6 = IPv6Address(arg[24:40])
            if not any(a.ip == ip6 for a in iface.v6):
                raise _errno_error(errno.EADDRNOTAVAIL, "SIOCDIFADDR_IN6")
            iface.v6 = [a for a in iface.v6 if a.ip != ip6]
            return arg
        if request == flavor.SIOCIFCREATE:
            if re.fullmatch(r"[a-z]+", name):  # a cloner name: the next free unit
                name = self._next_unit(name)
            elif name in self.interfaces:
                raise _errno_error(errno.EEXIST, "SIOCIFCREATE")
            kind = re.sub(r"\d+$", "", name)
            self.add_interface(name, kind=kind)
            return reply()
        if request == flavor.SIOCIFDESTROY:
            self._iface(name)
            self.remove_interface(name)
            return arg
        if flavor.SIOCSIFLLADDR is not None and request == flavor.SIOCSIFLLADDR:
            self._iface(name).mac = arg[18:24]
            return arg
        return arg

    def _add_link_address(self, info: _Fd, iface: FakeInterface, arg: bytes) -> None:
        """NetBSD's ``SIOCALIFADDR``: ether_ioctl refuses a multicast or all-zero address, the
        link domain's link_control (a ``PF_LINK`` socket only) one whose ``sdl_alen`` is not the
        interface's address length (6 for a tap, 0 for a tun); ``IFLR_ACTIVE`` makes it the
        interface's address. Inactive addresses are not modelled."""
        from . import _bsd, netbsd

        flags, prefixlen = struct.unpack_from("=II", arg, 16)
        sdl = arg[24:152]
        nlen, alen = sdl[5], sdl[6]
        mac = sdl[8 + nlen : 8 + nlen + alen]
        addrlen = 6 if iface.kind == "tap" else 0
        if addrlen and sdl[1] == _bsd.AF_LINK and mac and (mac[0] & 1 or not any(mac)):
            raise _errno_error(errno.EINVAL, "SIOCALIFADDR")
        if info.family != _bsd.AF_LINK or sdl[1] != _bsd.AF_LINK or alen != addrlen:
            raise _errno_error(errno.EINVAL, "SIOCALIFADDR")
        if flags & 0x8000 and prefixlen != 8 * addrlen:  # IFLR_PREFIX
            raise _errno_error(errno.EINVAL, "SIOCALIFADDR")
        if flags & netbsd.IFLR_ACTIVE:
            iface.mac = mac

    # -- interfaces, routes --------------------------------------------------------------------

    def if_nametoindex(self, name: str) -> int:
        return int(self._call("if_nametoindex", (name,), lambda: self._iface(name).index))

    def getifaddrs(self) -> list[IfAddr]:
        return list(self._call("getifaddrs", (), self._getifaddrs))

    def _getifaddrs(self) -> list[IfAddr]:
        flavor = self.flavor
        if flavor is None:
            return []
        from . import _bsd

        out: list[IfAddr] = []
        for iface in list(self.interfaces.values()):
            raw_name = iface.name.encode()
            sdl = struct.pack(
                "=BBHBBBB", 8 + len(raw_name) + 6, _bsd.AF_LINK, iface.index, 0,
                len(raw_name), 6, 0,
            ) + raw_name + iface.mac  # fmt: skip
            out.append(IfAddr(iface.name, iface.flags, sdl))
            for v4, dst in iface.v4:
                out.append(
                    IfAddr(
                        iface.name,
                        iface.flags,
                        _bsd.sockaddr_in(v4.ip),
                        _bsd.sockaddr_in(v4.netmask),
                        _bsd.sockaddr_in(dst),
                    )
                )
            for v6 in iface.v6:
                out.append(
                    IfAddr(
                        iface.name,
                        iface.flags,
                        _bsd.sockaddr_in6(flavor, v6.ip),
                        _bsd.sockaddr_in6(flavor, v6.netmask),
                    )
                )
        return out

    def _route_message(self, data: bytes) -> None:
        from . import _bsd

        flavor = self.flavor
        header = _bsd._header_fields(flavor, data)
        rtm_type, addrs = header[2], header[5]
        entries = _bsd.parse_route_messages(flavor, data)
        if not entries:
            raise _errno_error(errno.EINVAL, "PF_ROUTE message")
        entry = entries[0]
        index = 0
        if not addrs & _bsd.RTA_GATEWAY or entry.gateway is None:
            # an interface route: the sockaddr_dl after the destination names the interface
            pos = flavor.rt_header_size + _bsd._roundup(
                data[flavor.rt_header_size], flavor.sa_align
            )
            index = struct.unpack_from("=H", data, pos + 2)[0]
            if index not in {i.index for i in self.interfaces.values()}:
                raise _errno_error(errno.ENETUNREACH, "PF_ROUTE")
        key = (entry.destination, entry.gateway)
        existing = [r for r in self.routes if (r[0], r[1]) == key]
        if rtm_type == _bsd.RTM_ADD:
            if existing:
                raise _errno_error(errno.EEXIST, "RTM_ADD")
            if entry.gateway is not None:
                index = next((i.index for i in self.interfaces.values() if i.name != "lo0"), 0)
            self.routes.append((entry.destination, entry.gateway, index))
        elif rtm_type == _bsd.RTM_DELETE:
            if not existing:
                raise _errno_error(errno.ESRCH, "RTM_DELETE")
            self.routes.remove(existing[0])

    def sysctl(self, mib: Sequence[int]) -> bytes:
        return bytes(self._call("sysctl", (tuple(mib),), lambda: self._sysctl(tuple(mib))))

    def _sysctl(self, mib: tuple[int, ...]) -> bytes:
        from . import _base, _bsd

        flavor = self.flavor
        if flavor is None or mib[:2] != (_bsd.CTL_NET, _bsd.PF_ROUTE):
            raise _errno_error(errno.ENOENT, "sysctl")
        out = bytearray()
        index_at = 6 if flavor.name == "openbsd" else 4
        for network, gateway, index in self.routes:
            message = bytearray(
                _bsd.route_message(
                    flavor, _bsd.RTM_GET, _base.Route(network, gateway), if_index=index, seq=0
                )
            )
            struct.pack_into("=H", message, index_at, index)
            out += message
        return bytes(out)

    # -- helper programs -----------------------------------------------------------------------

    def run(self, argv: Sequence[str], *, cwd: str | None = None) -> str:
        return str(self._call("run", (tuple(argv),), lambda: self._run(tuple(argv), cwd), cwd=cwd))

    def _run(self, argv: tuple[str, ...], cwd: str | None) -> str:
        if argv[:1] == ("ifconfig",) and len(argv) == 4 and argv[2] == "peer":
            a, b = self.interfaces.get(argv[1]), self.interfaces.get(argv[3])
            if a is None or b is None:
                raise CommandError(errno.EIO, f"ifconfig: interface {argv[1]} does not exist")
            a.peer, b.peer = b.name, a.name
        elif argv[:2] == ("sh", "MAKEDEV") and cwd == "/dev":
            self.missing_nodes.discard(f"/dev/{argv[2]}")
        return ""

    # -- Windows -------------------------------------------------------------------------------

    @property
    def windows(self) -> FakeWindows:
        """The fake Windows DLLs (made on first use)."""
        if self._windows is None:
            self._windows = FakeWindows(self)
        return self._windows

    def load_library(self, path: str) -> Any:
        return self._call("load_library", (path,), lambda: self.windows.load(path))

    def last_error(self) -> int:
        return self.windows.last_error if self._windows is not None else 0


# -- Windows ------------------------------------------------------------------------------------


class _FakeFunction:
    """A DLL export: records the call (``dll.Function``) and runs the model's implementation."""

    def __init__(self, owner: FakeSyscalls, dll: str, name: str, impl: Callable[..., Any]) -> None:
        self._owner = owner
        self._dll = dll
        self.__name__ = name
        self._impl = impl
        self.argtypes: list[Any] = []
        self.restype: Any = None

    def __call__(self, *args: Any) -> Any:
        self._convert(args)
        return self._owner._call(f"{self._dll}.{self.__name__}", args, lambda: self._impl(*args))

    def _convert(self, args: tuple[Any, ...]) -> None:
        """Refuse what real ctypes refuses before the call: the wrong number of arguments, or
        one its ``argtypes`` entry's ``from_param`` does not take (``ctypes.ArgumentError``)."""
        if len(args) != len(self.argtypes):
            raise TypeError(
                f"{self.__name__} takes {len(self.argtypes)} arguments ({len(args)} given)"
            )
        for n, (kind, arg) in enumerate(zip(self.argtypes, args, strict=True), start=1):
            try:
                kind.from_param(arg)
            except Exception as exc:
                raise ctypes.ArgumentError(f"argument {n}: {type(exc).__name__}: {exc}") from None


class _FakeDll:
    def __init__(self, owner: FakeSyscalls, name: str, model: Any) -> None:
        self._owner = owner
        self._name = name
        self._model = model

    def __getattr__(self, name: str) -> _FakeFunction:
        impl = getattr(self._model, name, None)
        if impl is None or name.startswith("_"):
            raise AttributeError(f"function '{name}' not found in {self._name}")
        return _FakeFunction(self._owner, self._name, name, impl)


def _obj(ref: Any) -> Any:
    """The ctypes object behind ``ctypes.byref(x)`` (or ``x`` itself)."""
    return getattr(ref, "_obj", ref)


class _FakeKernel32:
    """Events and waits that really block (so the async faces can be tested), overlapped files."""

    def __init__(self, windows: FakeWindows) -> None:
        self._w = windows
        self._cond = threading.Condition()
        self.events: dict[int, list[bool]] = {}  # handle -> [signalled, manual_reset]
        self.closed_while_waited: list[int] = []
        self._waiting: dict[int, int] = {}
        self._next = 0x100
        self.files: dict[int, _FakeTapFile] = {}

    def _handle(self) -> int:
        self._next += 4
        return self._next

    def close_all(self) -> None:
        with self._cond:
            self.events.clear()
            self._cond.notify_all()

    # events

    def CreateEventW(self, sa: Any, manual: int, initial: int, name: Any) -> int:
        with self._cond:
            h = self._handle()
            self.events[h] = [bool(initial), bool(manual)]
            return h

    def SetEvent(self, h: int) -> int:
        with self._cond:
            if h not in self.events:
                self._w.last_error = 6
                return 0
            self.events[h][0] = True
            self._cond.notify_all()
            return 1

    def ResetEvent(self, h: int) -> int:
        with self._cond:
            if h in self.events:
                self.events[h][0] = False
            return 1

    def CloseHandle(self, h: int) -> int:
        with self._cond:
            if self._waiting.get(h):
                self.closed_while_waited.append(h)
            if h in self.events:
                del self.events[h]
                self._cond.notify_all()
                return 1
            if h in self.files:
                self.files.pop(h).closed = True
                return 1
            self._w.last_error = 6
            return 0

    def WaitForMultipleObjects(self, count: int, array: Any, wait_all: int, ms: int) -> int:
        handles = [int(array[i] or 0) for i in range(count)]
        timeout = None if ms == 0xFFFFFFFF else ms / 1000.0
        found: list[int] = []

        def ready() -> bool:
            for i, h in enumerate(handles):
                state = self.events.get(h)
                if state is None:  # an invalid (or closed) handle fails the wait
                    found.append(-1)
                    return True
                if state[0]:
                    if not state[1]:
                        state[0] = False  # an auto-reset event wakes one waiter
                    found.append(i)
                    return True
            return False

        with self._cond:
            for h in handles:
                self._waiting[h] = self._waiting.get(h, 0) + 1
            try:
                if not self._cond.wait_for(ready, timeout=timeout):
                    return 0x102  # WAIT_TIMEOUT
            finally:
                for h in handles:
                    self._waiting[h] -= 1
        if found[-1] < 0:
            self._w.last_error = 6  # ERROR_INVALID_HANDLE
            return 0xFFFFFFFF  # WAIT_FAILED
        return found[-1]

    # overlapped files (tap-windows6)

    def CreateFileW(
        self, path: str, access: int, share: int, sa: Any, disp: int, flags: int, tmpl: Any
    ) -> int:
        tap = self._w.tap_devices.get(path)
        if tap is None:
            self._w.last_error = 2
            return (1 << 64) - 1
        h = self._handle()
        tap.closed = False
        self.files[h] = tap
        return h

    def DeviceIoControl(
        self,
        h: int,
        code: int,
        inbuf: Any,
        insize: int,
        outbuf: Any,
        outsize: int,
        returned: Any,
        ov: Any,
    ) -> int:
        tap = self.files.get(h)
        if tap is None:
            self._w.last_error = 6
            return 0
        data = bytes(_obj(inbuf).raw[:insize]) if inbuf is not None else b""
        reply = tap.ioctl(code, data)
        if outbuf is not None and reply:
            ctypes.memmove(ctypes.addressof(_obj(outbuf)), reply, min(len(reply), outsize))
        _obj(returned).value = min(len(reply), outsize)
        return 1

    def ReadFile(self, h: int, buf: Any, size: int, done: Any, ov: Any) -> int:
        tap = self.files.get(h)
        if tap is None:
            self._w.last_error = 6
            return 0
        return tap.read(self, _obj(buf), size, _obj(done), _obj(ov))

    def WriteFile(self, h: int, buf: Any, size: int, done: Any, ov: Any) -> int:
        tap = self.files.get(h)
        if tap is None:
            self._w.last_error = 6
            return 0
        return tap.write(self, _obj(buf), size, _obj(done), _obj(ov))

    def GetOverlappedResult(self, h: int, ov: Any, done: Any, wait: int) -> int:
        tap = self.files.get(h)
        if tap is None:
            self._w.last_error = 6
            return 0
        return tap.result(self, _obj(ov), _obj(done), bool(wait))

    def CancelIoEx(self, h: int, ov: Any) -> int:
        tap = self.files.get(h)
        if tap is not None:
            tap.cancel(self)
        return 1


@attrs.define
class _FakeTapFile:
    """A tap-windows6 device: frames to read (inject), frames written."""

    windows: Any
    mac: bytes = b"\x00\xff\x12\x34\x56\x78"
    version: tuple[int, int, int] = (9, 24, 0)
    frames: list[bytes] = attrs.field(factory=list)
    written: list[bytes] = attrs.field(factory=list)
    media: int | None = None
    closed: bool = False
    pending: tuple[Any, int, Any] | None = None
    cancelled: bool = False
    completed: int | None = None
    #: > 0: writes go pending (ERROR_IO_PENDING) and complete this many seconds later
    write_delay: float = 0.0
    #: writes started on an OVERLAPPED another write still had in flight (must stay 0)
    overlapped_reused: int = 0
    _writes_in_flight: dict[int, Any] = attrs.field(factory=dict)
    _write_keys: set[int] = attrs.field(factory=set)

    def ioctl(self, code: int, data: bytes) -> bytes:
        from .windows import tap

        if code == tap.TAP_WIN_IOCTL_GET_VERSION:
            return struct.pack("<III", *self.version)
        if code == tap.TAP_WIN_IOCTL_GET_MAC:
            return self.mac
        if code == tap.TAP_WIN_IOCTL_GET_MTU:
            return struct.pack("<I", 1500)
        if code == tap.TAP_WIN_IOCTL_SET_MEDIA_STATUS:
            self.media = struct.unpack("<I", data)[0]
            return b""
        return b""

    def read(self, k32: _FakeKernel32, buf: Any, size: int, done: Any, ov: Any) -> int:
        if self.frames:
            frame = self.frames.pop(0)[:size]
            ctypes.memmove(ctypes.addressof(buf), frame, len(frame))
            done.value = len(frame)
            ov.InternalHigh = len(frame)
            k32.SetEvent(int(ov.hEvent))
            return 1
        self.pending = (buf, size, ov)
        self.windows.last_error = 997  # ERROR_IO_PENDING
        return 0

    def write(self, k32: _FakeKernel32, buf: Any, size: int, done: Any, ov: Any) -> int:
        data = bytes(buf.raw[:size])
        if self.write_delay <= 0:
            self.written.append(data)
            done.value = size
            return 1
        key = ctypes.addressof(ov)
        with k32._cond:
            if key in self._writes_in_flight:
                self.overlapped_reused += 1
            self._writes_in_flight[key] = ov
            self._write_keys.add(key)

        def complete() -> None:
            with k32._cond:
                self.written.append(data)
                ov.InternalHigh = len(data)
                self._writes_in_flight.pop(key, None)
            k32.SetEvent(int(ov.hEvent or 0))

        threading.Timer(self.write_delay, complete).start()
        self.windows.last_error = 997  # ERROR_IO_PENDING
        return 0

    def inject(self, k32: _FakeKernel32, frame: bytes) -> None:
        if self.pending is not None:
            buf, size, ov = self.pending
            frame = frame[:size]
            ctypes.memmove(ctypes.addressof(buf), frame, len(frame))
            ov.InternalHigh = len(frame)
            ov.Internal = 0
            self.pending = None
            self.completed = len(frame)
            k32.SetEvent(int(ov.hEvent))
        else:
            self.frames.append(frame)

    def result(self, k32: _FakeKernel32, ov: Any, done: Any, wait: bool) -> int:
        key = ctypes.addressof(ov)
        if key in self._write_keys:
            with k32._cond:
                if wait:
                    k32._cond.wait_for(lambda: key not in self._writes_in_flight)
                elif key in self._writes_in_flight:
                    self.windows.last_error = 996  # ERROR_IO_INCOMPLETE
                    return 0
            done.value = int(ov.InternalHigh)
            return 1
        if self.pending is not None and not self.cancelled:
            self.windows.last_error = 996  # ERROR_IO_INCOMPLETE
            return 0
        if self.cancelled:
            self.cancelled = False
            self.pending = None
            self.windows.last_error = 995  # ERROR_OPERATION_ABORTED
            return 0
        done.value = int(ov.InternalHigh)
        return 1

    def cancel(self, k32: _FakeKernel32) -> None:
        if self.pending is not None:
            self.cancelled = True


@attrs.define
class _FakeAdapter:
    name: str
    luid: int
    handle: int
    created: bool
    orphaned: bool = False
    sessions: list[int] = attrs.field(factory=list)


@attrs.define
class _FakeSession:
    handle: int
    adapter: _FakeAdapter
    capacity: int
    read_event: int
    inbox: list[bytes] = attrs.field(factory=list)
    sent: list[bytes] = attrs.field(factory=list)
    held: dict[int, Any] = attrs.field(factory=dict)
    ended: bool = False
    ring_full: bool = False


class _FakeWintun:
    def __init__(self, windows: FakeWindows) -> None:
        self._w = windows

    def WintunOpenAdapter(self, name: str) -> int | None:
        adapter = self._w.adapters.get(name)
        if adapter is None:
            self._w.last_error = 1168  # ERROR_NOT_FOUND (wintun api/adapter.c)
            return None
        return adapter.handle

    def WintunCreateAdapter(self, name: str, tunnel_type: str, guid: Any) -> int | None:
        if self._w.deny_create:
            self._w.last_error = 5
            return None
        adapter = _FakeAdapter(name, self._w.new_luid(), self._w.new_handle(), True)
        if guid is not None:
            self._w.guids[adapter.luid] = bytes(_obj(guid))
        self._w.adapters[name] = adapter
        self._w.tunnel_types[name] = tunnel_type
        self._w.add_interface(adapter.luid, name)
        return adapter.handle

    def _adapter(self, handle: int) -> _FakeAdapter:
        for adapter in self._w.adapters.values():
            if adapter.handle == handle:
                return adapter
        raise KeyError(handle)

    def WintunCloseAdapter(self, handle: int) -> None:
        adapter = self._adapter(handle)
        if adapter.created:
            del self._w.adapters[adapter.name]
            self._w.interfaces.pop(adapter.luid, None)
            self._w.addresses = [a for a in self._w.addresses if a[0] != adapter.luid]
            self._w.routes = [r for r in self._w.routes if r[0] != adapter.luid]

    def WintunGetAdapterLUID(self, handle: int, luid: Any) -> None:
        _obj(luid).Value = self._adapter(handle).luid

    def WintunSetLogger(self, callback: Any) -> None:
        self._w.logger = callback if callback else None  # a NULL function pointer resets it

    def WintunDeleteDriver(self) -> int:
        if self._adapters_in_use():
            self._w.last_error = 0xE000023D  # ERROR_IN_USE_BY_DEVICES (SetupUninstallOEMInfW)
            return 0
        self._w.driver_deleted = True
        return 1

    def _adapters_in_use(self) -> bool:
        return any(not a.orphaned for a in self._w.adapters.values())

    def WintunGetRunningDriverVersion(self) -> int:
        return 0x000E0000

    def WintunStartSession(self, handle: int, capacity: int) -> int | None:
        adapter = self._adapter(handle)
        event = self._w.kernel32.CreateEventW(None, 0, 0, None)
        session = _FakeSession(self._w.new_handle(), adapter, capacity, event)
        self._w.sessions[session.handle] = session
        return session.handle

    def WintunEndSession(self, handle: int) -> None:
        session = self._w.sessions.pop(handle)
        session.ended = True
        self._w.kernel32.CloseHandle(session.read_event)

    def WintunGetReadWaitEvent(self, handle: int) -> int:
        return self._w.sessions[handle].read_event

    def WintunReceivePacket(self, handle: int, size: Any) -> int | None:
        session = self._w.sessions[handle]
        if not session.inbox:
            self._w.last_error = 259  # ERROR_NO_MORE_ITEMS
            return None
        packet = session.inbox.pop(0)
        buf = ctypes.create_string_buffer(packet, len(packet))
        session.held[ctypes.addressof(buf)] = buf
        _obj(size).value = len(packet)
        return ctypes.addressof(buf)

    def WintunReleaseReceivePacket(self, handle: int, ptr: int) -> None:
        self._w.sessions[handle].held.pop(ptr)

    def WintunAllocateSendPacket(self, handle: int, size: int) -> int | None:
        session = self._w.sessions[handle]
        if session.ring_full:
            self._w.last_error = 111  # ERROR_BUFFER_OVERFLOW
            return None
        buf = ctypes.create_string_buffer(size)
        session.held[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def WintunSendPacket(self, handle: int, ptr: int) -> None:
        session = self._w.sessions[handle]
        buf = session.held.pop(ptr)
        session.sent.append(buf.raw)


class _FakeIphlpapi:
    def __init__(self, windows: FakeWindows) -> None:
        self._w = windows

    def _iface(self, luid: Any) -> dict[str, Any] | None:
        return self._w.interfaces.get(int(_obj(luid).Value))

    def ConvertInterfaceLuidToIndex(self, luid: Any, index: Any) -> int:
        iface = self._iface(luid)
        if iface is None:
            return 2
        _obj(index).value = iface["index"]
        return 0

    def ConvertInterfaceLuidToAlias(self, luid: Any, buf: Any, size: int) -> int:
        iface = self._iface(luid)
        if iface is None:
            return 2
        _obj(buf).value = iface["alias"]
        return 0

    def ConvertInterfaceLuidToGuid(self, luid: Any, guid: Any) -> int:
        iface = self._iface(luid)
        if iface is None:
            return 2
        g = _obj(guid)
        requested = self._w.guids.get(int(_obj(luid).Value))
        if requested is not None:
            ctypes.memmove(ctypes.addressof(g), requested, len(requested))
            return 0
        g.Data1 = iface["index"]
        g.Data2 = 0x1234
        g.Data3 = 0x5678
        g.Data4[:] = list(range(8))
        return 0

    def ConvertInterfaceAliasToLuid(self, alias: str, luid: Any) -> int:
        for value, iface in self._w.interfaces.items():
            if iface["alias"] == alias:
                _obj(luid).Value = value
                return 0
        # netioapi.h documents ERROR_INVALID_PARAMETER for an alias no interface has (and
        # Wine's implementation returns it); there is no ERROR_NOT_FOUND here.
        _obj(luid).Value = 0
        return 87

    # addresses

    def InitializeUnicastIpAddressEntry(self, row: Any) -> None:
        r = _obj(row)
        r.PrefixOrigin = 1  # IpPrefixOriginManual
        r.SuffixOrigin = 1
        r.ValidLifetime = 0xFFFFFFFF
        r.PreferredLifetime = 0xFFFFFFFF
        r.OnLinkPrefixLength = 0xFF

    def _address_key(self, row: Any) -> tuple[int, Any]:
        from .windows.iphlpapi import get_sockaddr

        r = _obj(row)
        return int(r.InterfaceLuid.Value), get_sockaddr(r.Address)

    def CreateUnicastIpAddressEntry(self, row: Any) -> int:
        luid, address = self._address_key(row)
        if luid not in self._w.interfaces:
            return 2
        if any(a[:2] == (luid, address) for a in self._w.addresses):
            return 5010
        self._w.addresses.append((luid, address, int(_obj(row).OnLinkPrefixLength)))
        return 0

    def DeleteUnicastIpAddressEntry(self, row: Any) -> int:
        luid, address = self._address_key(row)
        before = len(self._w.addresses)
        self._w.addresses = [a for a in self._w.addresses if a[:2] != (luid, address)]
        return 0 if len(self._w.addresses) < before else 1168

    def _table(self, rows: list[Any], row_type: Any, out: Any) -> int:
        count = len(rows)
        if not count:
            return 1168  # ERROR_NOT_FOUND: "no entries … were found", and no table (netioapi.h)
        buf = ctypes.create_string_buffer(8 + max(1, count) * ctypes.sizeof(row_type))
        struct.pack_into("=I", buf, 0, count)
        for i, row in enumerate(rows):
            ctypes.memmove(
                ctypes.addressof(buf) + 8 + i * ctypes.sizeof(row_type),
                ctypes.addressof(row),
                ctypes.sizeof(row_type),
            )
        self._w.tables[ctypes.addressof(buf)] = buf
        _obj(out).value = ctypes.addressof(buf)
        return 0

    def GetUnicastIpAddressTable(self, family: int, out: Any) -> int:
        from .windows import iphlpapi as w

        rows = []
        for luid, address, plen in self._w.addresses:
            row = w.MIB_UNICASTIPADDRESS_ROW()
            row.InterfaceLuid.Value = luid
            w.set_sockaddr(row.Address, address, w.AF_INET if address.version == 4 else w.AF_INET6)
            row.OnLinkPrefixLength = plen
            rows.append(row)
        return self._table(rows, w.MIB_UNICASTIPADDRESS_ROW, out)

    def FreeMibTable(self, pointer: int) -> None:
        self._w.tables.pop(pointer)

    # interface rows

    def InitializeIpInterfaceEntry(self, row: Any) -> None:
        ctypes.memset(ctypes.addressof(_obj(row)), 0, ctypes.sizeof(_obj(row)))

    def GetIpInterfaceEntry(self, row: Any) -> int:
        from .windows import iphlpapi as w

        r = _obj(row)
        iface = self._iface(r.InterfaceLuid)
        if iface is None:
            return 2
        family = "v4" if r.Family == w.AF_INET else "v6"
        if family == "v6" and not self._w.ipv6:
            return 1168  # ERROR_NOT_FOUND: no IPv6 stack
        settings = iface[family]
        r.NlMtu = settings["mtu"]
        r.Metric = settings["metric"]
        r.UseAutomaticMetric = settings["auto"]
        r.SitePrefixLength = 64 if family == "v4" else 0  # what Windows really returns
        r.InterfaceIndex = iface["index"]
        return 0

    def SetIpInterfaceEntry(self, row: Any) -> int:
        from .windows import iphlpapi as w

        r = _obj(row)
        iface = self._iface(r.InterfaceLuid)
        if iface is None:
            return 2
        family = "v4" if r.Family == w.AF_INET else "v6"
        if family == "v4" and r.SitePrefixLength != 0:
            return 87  # ERROR_INVALID_PARAMETER: the documented IPv4 quirk
        iface[family] = {
            "mtu": int(r.NlMtu),
            "metric": int(r.Metric),
            "auto": int(r.UseAutomaticMetric),
        }
        return 0

    # routes

    def InitializeIpForwardEntry(self, row: Any) -> None:
        r = _obj(row)
        ctypes.memset(ctypes.addressof(r), 0, ctypes.sizeof(r))
        r.ValidLifetime = 0xFFFFFFFF
        r.PreferredLifetime = 0xFFFFFFFF
        r.Protocol = 3

    def _route_key(self, row: Any) -> tuple[int, Any, Any]:
        from .windows.iphlpapi import get_sockaddr

        r = _obj(row)
        prefix: Any = get_sockaddr(r.DestinationPrefix.Prefix)
        dest = ip_network((prefix, int(r.DestinationPrefix.PrefixLength)))
        hop = get_sockaddr(r.NextHop)
        return int(r.InterfaceLuid.Value), dest, hop

    def CreateIpForwardEntry2(self, row: Any) -> int:
        key = self._route_key(row)
        if key[0] not in self._w.interfaces:
            return 2
        if any(r[:3] == key for r in self._w.routes):
            return 5010
        self._w.routes.append((*key, int(_obj(row).Metric)))
        return 0

    def DeleteIpForwardEntry2(self, row: Any) -> int:
        key = self._route_key(row)
        before = len(self._w.routes)
        self._w.routes = [r for r in self._w.routes if r[:3] != key]
        return 0 if len(self._w.routes) < before else 1168

    def GetIpForwardTable2(self, family: int, out: Any) -> int:
        from .windows import iphlpapi as w

        rows = []
        for luid, dest, hop, metric in self._w.routes:
            row = w.MIB_IPFORWARD_ROW2()
            row.InterfaceLuid.Value = luid
            fam = w.AF_INET if dest.version == 4 else w.AF_INET6
            w.set_sockaddr(row.DestinationPrefix.Prefix, dest.network_address, fam)
            row.DestinationPrefix.PrefixLength = dest.prefixlen
            w.set_sockaddr(row.NextHop, hop, fam)
            row.Metric = metric
            rows.append(row)
        return self._table(rows, w.MIB_IPFORWARD_ROW2, out)

    # DNS

    def SetInterfaceDnsSettings(self, guid: Any, settings: Any) -> int:
        s = _obj(settings)
        self._w.dns.append((str(guid), int(s.Version), int(s.Flags), s.NameServer))
        return 0


class _FakeDnsapi:
    def __init__(self, windows: FakeWindows) -> None:
        self._w = windows

    def DnsFlushResolverCache(self) -> int:
        self._w.dns_flushes += 1
        return 1


class FakeWindows:
    """Fake ``kernel32``, ``iphlpapi``, ``dnsapi`` and ``wintun`` DLLs sharing one model.

    Attributes:
        wintun_paths: paths (or bare names) where ``wintun.dll`` loads; empty: it is missing.
        adapters: Wintun adapters by name; ``interfaces``: LUID → alias, index, v4/v6 settings.
        sessions: running Wintun sessions; :meth:`inject` queues a packet and sets its event.
        ipv6: ``False`` models a machine without an IPv6 stack.
        deny_create: ``WintunCreateAdapter`` fails with ``ERROR_ACCESS_DENIED``.
        dns: the ``SetInterfaceDnsSettings`` calls seen.
        dns_flushes: the ``DnsFlushResolverCache`` calls seen.
        tap_devices: ``\\\\.\\Global\\{GUID}.tap`` paths that open.
    """

    def __init__(self, owner: FakeSyscalls) -> None:
        self.owner = owner
        self.last_error = 0
        self.wintun_paths: set[str] = {"wintun.dll"}
        self.adapters: dict[str, _FakeAdapter] = {}
        self.tunnel_types: dict[str, str] = {}
        #: LUID → the RequestedGUID an adapter was created with (raw GUID bytes)
        self.guids: dict[int, bytes] = {}
        #: the callback WintunSetLogger was last given (``None``: reset, or never set)
        self.logger: Any = None
        #: WintunDeleteDriver removed the driver (it refuses while an adapter exists)
        self.driver_deleted = False
        self.sessions: dict[int, _FakeSession] = {}
        self.interfaces: dict[int, dict[str, Any]] = {}
        self.addresses: list[tuple[int, Any, int]] = []
        self.routes: list[tuple[int, Any, Any, int]] = []
        self.tables: dict[int, Any] = {}
        self.dns: list[tuple[str, int, int, str]] = []
        self.dns_flushes = 0
        self.ipv6 = True
        self.deny_create = False
        self.tap_devices: dict[str, _FakeTapFile] = {}
        self._next_luid = 0x0006_0000_0000_0000
        self._next_handle = 0x7F000
        self.kernel32 = _FakeKernel32(self)
        self.wintun = _FakeWintun(self)
        self.iphlpapi = _FakeIphlpapi(self)
        self.dnsapi = _FakeDnsapi(self)

    def new_luid(self) -> int:
        self._next_luid += 0x100
        return self._next_luid

    def new_handle(self) -> int:
        self._next_handle += 8
        return self._next_handle

    def add_interface(self, luid: int, alias: str) -> dict[str, Any]:
        iface = {
            "alias": alias,
            "index": 10 + len(self.interfaces) + len(self.adapters),
            "v4": {"mtu": 1500, "metric": 25, "auto": 1},
            "v6": {"mtu": 1500, "metric": 25, "auto": 1},
        }
        self.interfaces[luid] = iface
        return iface

    def add_orphaned_adapter(self, name: str) -> _FakeAdapter:
        """An adapter that opens but whose LUID has no interface (a crashed owner's)."""
        adapter = _FakeAdapter(name, self.new_luid(), self.new_handle(), False, orphaned=True)
        self.adapters[name] = adapter
        return adapter

    def add_tap_adapter(self, name: str) -> _FakeTapFile:
        """An installed tap-windows6 adapter called ``name``."""
        luid = self.new_luid()
        iface = self.add_interface(luid, name)
        from .windows.iphlpapi import GUID

        guid = GUID()
        guid.Data1 = iface["index"]
        guid.Data2 = 0x1234
        guid.Data3 = 0x5678
        guid.Data4[:] = list(range(8))
        tap = _FakeTapFile(self)
        self.tap_devices[f"\\\\.\\Global\\{guid}.tap"] = tap
        return tap

    def load(self, path: str) -> _FakeDll:
        base = path.replace("\\", "/").rsplit("/", 1)[-1].lower()
        if base == "kernel32.dll":
            return _FakeDll(self.owner, "kernel32", self.kernel32)
        if base == "iphlpapi.dll":
            return _FakeDll(self.owner, "iphlpapi", self.iphlpapi)
        if base == "dnsapi.dll":
            return _FakeDll(self.owner, "dnsapi", self.dnsapi)
        if base == "wintun.dll" and path in self.wintun_paths:
            return _FakeDll(self.owner, "wintun", self.wintun)
        raise FileNotFoundError(errno.ENOENT, "The specified module could not be found", path)

    def session(self) -> _FakeSession:
        """The only running Wintun session."""
        (session,) = self.sessions.values()
        return session

    def inject(self, packet: bytes) -> None:
        """Queue ``packet`` for the session to receive and set its read event."""
        session = self.session()
        session.inbox.append(packet)
        self.kernel32.SetEvent(session.read_event)


@contextlib.contextmanager
def pretend_platform(name: str, syscalls: Syscalls | None = None) -> Iterator[Syscalls]:
    """Within the block, ``tunflow.platform.current()`` returns the backend of ``name`` and every
    backend uses ``syscalls`` (default: a new :class:`FakeSyscalls` modelling ``name``).

    Example:
        >>> from tunflow import DeviceBuilder
        >>> with pretend_platform("freebsd") as fake:                      # doctest: +SKIP
        ...     dev = DeviceBuilder().ipv4("10.0.0.1", 24).build_sync()
    """
    import tunflow.platform as platform_pkg

    fake = syscalls if syscalls is not None else FakeSyscalls(name)
    previous_override = platform_pkg._override
    previous = install_syscalls(fake)
    platform_pkg._override = name
    try:
        yield fake
    finally:
        platform_pkg._override = previous_override
        install_syscalls(previous)
