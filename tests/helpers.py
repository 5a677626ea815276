"""Small helpers shared by the real-kernel tests (traffic, processes, packets)."""

from __future__ import annotations

import errno
import os
import queue
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from tunflow import SyncDevice, testing
from tunflow.packet import checksum, pseudo_header_checksum_no_fold

if TYPE_CHECKING:
    import pytest

    from tunflow import AsyncDevice
    from tunflow.wireguard.protocol import DeviceInfo

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

T = TypeVar("T")


def udp_send(dst: str, port: int, payload: bytes, *, src_port: int = 0) -> None:
    """Send one UDP datagram from this thread's namespace."""
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        if src_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", src_port))
        s.sendto(payload, (dst, port))


def _finish(s: int) -> int:
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """A valid IPv4/UDP packet (checksums included)."""
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    ulen = 8 + len(payload)
    udp = bytearray(struct.pack("!HHHH", sport, dport, ulen, 0) + payload)
    csum = _finish(checksum(udp, pseudo_header_checksum_no_fold(17, s, d, ulen))) or 0xFFFF
    udp[6:8] = struct.pack("!H", csum)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 1, 0x4000, 64, 17, 0, s, d))
    ip[10:12] = struct.pack("!H", _finish(checksum(ip)))
    return bytes(ip + udp)


def ipv6_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """A valid IPv6/UDP packet."""
    s, d = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    ulen = 8 + len(payload)
    udp = bytearray(struct.pack("!HHHH", sport, dport, ulen, 0) + payload)
    csum = _finish(checksum(udp, pseudo_header_checksum_no_fold(17, s, d, ulen))) or 0xFFFF
    udp[6:8] = struct.pack("!H", csum)
    return struct.pack("!IHBB", 0x60000000, ulen, 17, 64) + s + d + bytes(udp)


def udp_payload(packet: bytes) -> tuple[int, int, bytes] | None:
    """(source port, destination port, payload) of an IPv4/IPv6 UDP packet, else None."""
    if packet[0] >> 4 == 4 and packet[9] == 17:
        ihl = (packet[0] & 15) * 4
        sport, dport = struct.unpack_from("!HH", packet, ihl)
        return sport, dport, packet[ihl + 8 :]
    if packet[0] >> 4 == 6 and packet[6] == 17:
        sport, dport = struct.unpack_from("!HH", packet, 40)
        return sport, dport, packet[48:]
    return None


async def first_udp(dev: AsyncDevice, port: int) -> bytes:
    """The payload of the first UDP packet to ``port`` that ``dev`` receives (10 s at most)."""
    with anyio.fail_after(10):
        async for packet in dev:
            parsed = udp_payload(packet)
            if parsed and parsed[1] == port:
                return parsed[2]
    raise AssertionError("stream ended")


async def sent_to_socket(dev: AsyncDevice, src: str, dst: str, payload: bytes) -> bytes:
    """Send an IPv4/UDP packet of ``payload`` from ``src`` to ``dst`` port 6000 through
    ``dev``: what a socket bound to ``dst`` port 6000 receives (5 s at most)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((dst, 6000))
        s.setblocking(False)
        await dev.send(ipv4_udp(src, dst, 1, 6000, payload))
        with anyio.fail_after(5):
            await anyio.wait_readable(s)
        return s.recv(100)


def example_environment() -> dict[str, str]:
    """The environment to run a script of ``examples/`` in: this one's, with this tree (and its
    plugins) first on ``PYTHONPATH`` — the script's directory, not ROOT, comes first on its
    ``sys.path``, so without it the script (and the worker processes it starts) would import
    whichever tunflow is installed, not this tree's."""
    path = [str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}


class Example:
    """An example program run in a namespace, stopped (and reaped) on exit.

    A thread reads its stdout line by line into a queue, so :meth:`wait_for` never waits on
    data already sitting in a pipe buffer.
    """

    def __init__(self, ns: testing.Netns, script: str, *args: str) -> None:
        self.argv = ns.cmd(sys.executable, "-u", str(EXAMPLES / script), *args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: list[str] = []
        self.stderr = ""
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Example:
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=example_environment(),
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _take(self, timeout: float) -> str | None:
        try:
            line = self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if line is not None:
            self.lines.append(line)
        return line

    def wait_for(self, prefix: str, timeout: float = 60.0) -> str:
        """The first stdout line starting with ``prefix``; fail with stderr after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._take(deadline - time.monotonic())
            if line is None:
                break
            if line.startswith(prefix):
                return line
        self.stop()
        raise AssertionError(
            f"{self.argv} never printed {prefix!r} within {timeout} s; "
            f"stdout={self.lines} stderr={self.stderr}"
        )

    def _finish(self, timeout: float) -> None:
        """Reap the process, then collect the rest of its output."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(10)
        while self._take(0) is not None:
            pass
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.stderr += self.proc.stderr.read()
            self.proc.stderr.close()

    def stop(self) -> str:
        """Terminate (if still running); return everything it printed."""
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.terminate()
        self._finish(10)
        return "\n".join(self.lines)

    def wait(self, timeout: float = 30.0) -> str:
        """Wait for a normal exit and return everything it printed (assert exit code 0)."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self._finish(10)
        assert self.proc.returncode == 0, (
            f"{self.argv} exited {self.proc.returncode}: {self.stderr}"
        )
        return "\n".join(self.lines)


def addr_set(
    ns_links: Sequence[dict[str, object]], *, include_link_local: bool = False
) -> set[str]:
    """``{"10.0.0.1/24", …}`` from ``ip -j addr show dev X`` output."""
    out = set()
    for link in ns_links:
        for info in link.get("addr_info", []):  # type: ignore[attr-defined]
            local = info["local"]
            if not include_link_local and str(local).startswith("fe80:"):
                continue
            out.add(f"{local}/{info['prefixlen']}")
    return out


def no_ipv6(netns: testing.Netns) -> None:
    """No IPv6 on links made in ``netns`` from now on: no router solicitation or MLD report of
    the kernel's own among (or after) the packets a test reads."""
    netns.run(
        "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"
    )


def tun_info(ns: testing.Netns, name: str) -> Any:
    """What ``ip -d link`` says of the TUN/TAP ``name`` in ``ns``: its ``info_data`` (``persist``,
    ``user``, ``group``, ``multi_queue``, ...)."""
    (link,) = ns.ip_json("-d", "link", "show", "dev", name)
    return link["linkinfo"]["info_data"]


def run_without_caps(
    ns: testing.Netns, code: str, *, cwd: Path | None = None, drop: str = "-net_admin"
) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` in ``ns`` as root without the capabilities ``drop`` takes out of the
    bounding set (``setpriv``; CAP_NET_ADMIN by default), its output captured."""
    return subprocess.run(
        ns.cmd(
            "setpriv",
            "--inh-caps=-all",
            "--ambient-caps=-all",
            f"--bounding-set={drop}",
            sys.executable,
            "-c",
            code,
        ),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def ipv6_input_errors(ns: testing.Netns, device: str) -> dict[str, int]:
    """The kernel's input errors for what came in by ``device`` over IPv6, and its TCP's in
    ``ns``: nonzero counters only, so ``{}`` when it took every packet written to it.

    A packet the kernel drops (a wrong length, a bad checksum) costs a TCP transfer only a
    retransmission — the bytes still arrive intact — so these are the witness that a device's
    writes were right, not only good enough.
    """
    per_device = ns.run("cat", f"/proc/net/dev_snmp6/{device}").stdout.split()
    counters = dict(zip(per_device[::2], map(int, per_device[1::2]), strict=True))
    errors = {
        k: counters[k]
        for k in ("Ip6InHdrErrors", "Ip6InTruncatedPkts", "Ip6InDiscards", "Ip6InAddrErrors")
    }
    errors["Ip6InNotDelivered"] = counters["Ip6InReceives"] - counters["Ip6InDelivers"]
    lines = [line.split() for line in ns.run("cat", "/proc/net/snmp").stdout.splitlines()]
    tcp = dict(zip(*(fields[1:] for fields in lines if fields[0] == "Tcp:"), strict=True))
    errors.update(TcpInErrs=int(tcp["InErrs"]), TcpInCsumErrors=int(tcp["InCsumErrors"]))
    return {k: v for k, v in errors.items() if v}


def drain(dev: AsyncDevice) -> None:
    """Read away what is queued on ``dev`` (the kernel's own chatter: router solicitations,
    MLD)."""
    import anyio

    while True:
        try:
            dev.receive_nowait()
        except anyio.WouldBlock:
            return


def refuse_renames_while_up(nl: Any) -> None:
    """Have the RtNetlink ``nl`` refuse to rename a running link (``EBUSY``), as kernels before
    6.2 do; ``del nl.set_link`` undoes it."""
    set_link = nl.set_link

    def refusing(index: int, **kw: Any) -> None:
        if "name" in kw and nl.link(index).is_up:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        set_link(index, **kw)

    nl.set_link = refusing


def wait_until_polling(thread: threading.Thread, timeout: float = 10.0) -> None:
    """Until ``thread`` sleeps in the kernel's ``poll`` (its wait channel says so): blocked in
    a device's ``recv``, say, not still on its way there."""
    path = f"/proc/self/task/{thread.native_id}/wchan"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            if "poll" in f.read():
                return
        time.sleep(0.005)
    raise AssertionError(f"thread {thread.name} is not waiting in poll after {timeout}s")


def adopt_or_close(adopt: Callable[..., T], fd: int, **kwargs: Any) -> T:
    """``adopt(fd, **kwargs)`` (a device's ``from_fd``): the device that owns ``fd`` now, or,
    when the adoption raises (which leaves the fd the caller's), ``fd`` closed and the error
    raised."""
    try:
        return adopt(fd, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def adopt_and_close(adopt: Callable[..., SyncDevice | AsyncDevice], fd: int, **kwargs: Any) -> bool:
    """``adopt(fd, **kwargs)`` (a device's ``from_fd`` or ``borrow_fd``), for a test that
    expects it refused: a device made after all is closed at once, not left to a finalizer
    that would close ``fd`` once the test had (by then maybe another file's number). Whether
    the fd went with that device (``from_fd``'s owns it): the test must not close it again."""
    import anyio

    device = adopt(fd, **kwargs)
    if isinstance(device, SyncDevice):
        device.close()
    else:
        anyio.run(device.aclose)
    return adopt.__name__ == "from_fd"


def read_fd_until(fd: int, timeout: float) -> bytes:
    """One read from a non-blocking fd, waiting up to ``timeout``."""
    ready, _, _ = select.select([fd], [], [], timeout)
    assert ready, "nothing to read"
    return os.read(fd, 65535)


def uapi_get(name: str) -> DeviceInfo:
    """``get=1`` on interface ``name``'s control socket (``/var/run/wireguard``), parsed."""
    from tunflow.wireguard.protocol import parse_get

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(f"/var/run/wireguard/{name}.sock")
        sock.sendall(b"get=1\n\n")
        answer = b""
        while not answer.endswith(b"\n\n"):
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    return parse_get(answer)


def reload_cli(ns: testing.Netns, name: str) -> str:
    """``tunflow reload NAME`` run in ``ns``: what it printed (it must succeed)."""
    done = ns.run(sys.executable, "-m", "tunflow.cli", "reload", name, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


class Up:
    """``tunflow up FILE`` in a namespace, in the foreground, entered once it logged ``ready``
    (by default: up); stopped and reaped on exit."""

    def __init__(
        self,
        ns: testing.Netns,
        conf: Path,
        *args: str,
        env: dict[str, str] | None = None,
        ready: str = " up: listening on UDP",
    ) -> None:
        self.ns = ns
        self.ready = ready
        self.name = conf.stem
        self.argv = ns.cmd(sys.executable, "-m", "tunflow.cli", "up", str(conf), *args)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.out = ""
        #: the exit status once stopped (``None`` before)
        self.returncode: int | None = None

    def __enter__(self) -> Up:
        # unbuffered, read line by line a byte at a time: a buffered reader would read ahead
        # of the line waited for, and stop()'s communicate() reads the pipe itself, so what
        # was read ahead (the line logged right after it, say) would be lost
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0, env=self.env
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 20
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode(errors="replace")
            self.out += line
            if self.ready in line:
                return self
            assert time.monotonic() < deadline, self.out
        self.stop()
        raise AssertionError(f"tunflow up exited: {self.out}")

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            rest, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate(timeout=10)
        self.out += (rest or b"").decode(errors="replace")
        self.proc = None
        self.returncode = proc.returncode
        return proc.returncode


async def assert_a_new_socket_is_waited_on() -> None:
    """A socket made now — likely given the number of one just closed — becomes readable
    for ``anyio.wait_readable`` (no stale event-loop registration hangs it)."""
    import anyio

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        a.send(b"y")
        with anyio.fail_after(10):
            await anyio.wait_readable(b)
        assert b.recv(10) == b"y"
    finally:
        a.close()
        b.close()


def sigterm_ignoring(ns: testing.Netns, timeout: float = 30.0) -> subprocess.Popen[bytes]:
    """A Python process in ``ns`` that ignores SIGTERM, returned once it does (its stdout a
    pipe). One that has not said so ``timeout`` seconds on, or ended first, is killed and
    reaped, and an AssertionError says which."""
    proc = ns.popen(
        [
            sys.executable,
            "-c",
            "import signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print(flush=True)\n"
            "time.sleep(300)\n",
        ],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    said = proc.stdout.readline() if ready else b""  # SIGTERM is ignored from here on
    if said != b"\n":
        reap([proc])
        raise AssertionError(
            f"the SIGTERM-ignoring child ended first (status {proc.returncode})"
            if ready
            else f"the SIGTERM-ignoring child said nothing in {timeout} s: killed"
        )
    return proc


def reap(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Kill those of ``procs`` still running, wait for them and close their stdout."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def child_processes() -> set[int]:
    """Processes whose parent is this one (zombies included)."""
    me = str(os.getpid())
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                out.add(int(entry))
    return out


def install_stage_plugins(
    directory: Path,
    monkeypatch: pytest.MonkeyPatch,
    distribution: str,
    entry_points: str,
    files: dict[str, str],
    *,
    metadata: str = "",
) -> None:
    """Install ``distribution`` 1.0 in ``directory`` (a dist-info whose METADATA ends with the
    lines ``metadata``, whose ``tunflow.stages`` entry points are the lines ``entry_points``),
    with ``files`` (paths relative to ``directory``, and their text) beside it; put
    ``directory`` first on this process's sys.path and give the test a plugin registry that
    has found nothing yet."""
    from tunflow.pipeline import GROUP, _plugins

    info = directory / f"{distribution.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n{metadata}"
    )
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{entry_points}")
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.syspath_prepend(str(directory))
    monkeypatch.setattr(_plugins, "_cache", None)
    monkeypatch.setattr(_plugins, "_loaded", {})
    monkeypatch.setattr(_plugins, "_clashes", {})
