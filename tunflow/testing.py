"""Helpers for tests that need real kernel interfaces: throw-away network namespaces.

Every name made here starts with ``tf`` and carries the process id and a counter, so parallel
runs never collide. :func:`netns` creates a namespace, moves *the calling thread* into it (so
TUN devices, sockets and subprocesses made by that thread live there) and always moves the
thread back, stops the processes :meth:`Netns.popen` started that still run (SIGTERM, then
SIGKILL after :data:`STOP_GRACE` seconds) and deletes the namespace — and with it every
interface inside — on exit, even when the body raises. A socket or TUN device made inside
holds the namespace while its file descriptor is open, and so do processes started inside
other than by :meth:`Netns.popen`: the namespace, and every interface in it, then lives on
unnamed until they are closed or end — close them in the body. A process killed with SIGKILL
cannot clean up: the first :func:`netns` of the next process deletes the namespaces that
processes no longer running left.

Only the calling thread moves. A thread starts in the namespace of the thread that starts it
and keeps it: work handed to a worker thread (``anyio.to_thread``, ``trio.to_thread``, an
executor) runs in whichever namespace that worker has — enter the namespace inside the work
(``with ns.entered():``) when it matters. On leaving, trio's idle cached workers started inside
are moved back with the thread and anyio's idle workers on asyncio started inside end, so later
work does not run in a deleted namespace; the threads of asyncio's own executor
(``asyncio.to_thread``, ``run_in_executor(None, ...)``) started inside stay there until the event
loop ends. :func:`netns` raises :class:`RuntimeError` when other threads of this process are
still in the namespace :data:`STOP_GRACE` seconds after deleting it (they keep it, and its
interfaces, alive).

Linux only; needs root (CAP_SYS_ADMIN for ``setns``, CAP_NET_ADMIN for interfaces).

Example:
    >>> from tunflow.testing import netns              # doctest: +SKIP
    >>> with netns() as ns:                              # doctest: +SKIP
    ...     ns.run("ip", "link", "set", "lo", "up")
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "PREFIX",
    "Netns",
    "netns",
    "unique_name",
    "leftover_interfaces",
    "leftover_namespaces",
    "veth_pair",
    "ip_json",
    "run",
    "STOP_GRACE",
]

#: Every interface and namespace created by tunflow's tests starts with this.
PREFIX = "tf"
#: Seconds a process :meth:`Netns.popen` started gets between SIGTERM and SIGKILL at exit.
STOP_GRACE = 5.0
_counter = itertools.count()
_issued: set[str] = set()
_swept = False
_sweep_lock = threading.Lock()


def unique_name(kind: str = "") -> str:
    """A name of at most 15 bytes, unique among running processes: ``tf<kind><pid>x<n>``.

    ``kind`` (at most 3 lowercase ASCII letters) says what it is, for whoever finds it in ``ip link``. A pid of
    100000 and more (``pid_max`` goes to 4194304) is written as five base-36 digits followed
    by ``_`` instead: ``tftun0255s_0`` for pid 100000.
    """
    if not re.fullmatch("[a-z]{0,3}", kind):
        raise ValueError(f"kind must be at most 3 lowercase ASCII letters, not {kind!r}")
    # base 36 keeps the counter to 4 characters for 1.6 million names: 2+3+5+1+4 = 15 bytes
    name = f"{PREFIX}{kind}{_pid_tag(os.getpid())}{_base36(next(_counter))}"
    _issued.add(name)
    return name


def _pid_tag(pid: int) -> str:
    if pid < 100000:
        return f"{pid}x"
    return f"{_base36(pid):0>5}_"


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


_NAME = re.compile(rf"{PREFIX}[a-z]{{0,3}}?(?:([0-9]{{1,5}})x|([0-9][0-9a-z]{{4}})_)[0-9a-z]+")


def _owner(name: str) -> int | None:
    """The pid of the process whose :func:`unique_name` made ``name``; ``None``: not one."""
    m = _NAME.fullmatch(name)
    if m is None:
        return None
    return int(m[1]) if m[1] is not None else int(m[2], 36)


def _ours(name: str, pid: int | None) -> bool:
    if not name.startswith(PREFIX):
        return False
    if pid is None:
        return True
    return _owner(name) == pid


def run(*args: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output as text, fail loudly with its stderr."""
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)!r} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout}"
        )
    return proc


def ip_json(*args: str, netns_name: str | None = None) -> Any:
    """``ip -j ARGS`` parsed (in ``netns_name`` when given): the tests' independent witness."""
    prefix = ["ip", "-n", netns_name] if netns_name else ["ip"]
    out = run(*prefix, "-j", *args).stdout
    return json.loads(out) if out.strip() else []


class Netns:
    """A named network namespace made by :func:`netns`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._procs: list[subprocess.Popen[Any]] = []

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"

    def cmd(self, *args: str) -> list[str]:
        """The argv that runs ``args`` inside this namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def run(
        self, *args: str, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside this namespace (see :func:`run`)."""
        return run(*self.cmd(*args), check=check, timeout=timeout)

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a command inside this namespace; :func:`netns` stops it on exit if it still runs.

        A running process keeps the namespace, and every interface in it, alive after
        ``ip netns del``: on exit it gets SIGTERM, and SIGKILL when it has not ended
        :data:`STOP_GRACE` seconds later. Processes it started itself are not followed.
        """
        proc = subprocess.Popen(self.cmd(*args), **kwargs)
        self._procs = [p for p in self._procs if p.returncode is None]
        self._procs.append(proc)
        return proc

    def _stop_processes(self) -> None:
        """SIGTERM to the processes :meth:`popen` started that still run, SIGKILL to those
        still running :data:`STOP_GRACE` seconds later; wait for each. Interrupted meanwhile
        (Ctrl-C), it sends SIGKILL to those still running at once."""
        running = [p for p in self._procs if p.poll() is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        deadline = time.monotonic() + STOP_GRACE
        try:
            for proc in running:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(STOP_GRACE)
        except BaseException:
            for proc in running:
                if proc.poll() is None:
                    proc.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(STOP_GRACE)
            raise

    def ip_json(self, *args: str) -> Any:
        """``ip -j ARGS`` inside this namespace, parsed."""
        return ip_json(*args, netns_name=self.name)

    @contextlib.contextmanager
    def entered(self) -> Iterator[Netns]:
        """Move the calling thread into this namespace for the ``with`` body.

        A thread is in one namespace at a time: the namespaces one thread enters must be left
        in reverse order. Two tasks of one event loop share its thread, so one that enters a
        namespace moves the other too; when one leaves before a namespace entered after it,
        this raises :class:`RuntimeError` — and the thread still goes back, when the last of
        them is left, to where it was before the first.
        """
        from .platform.linux._netns import open_current, setns

        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            inode = os.fstat(fd).st_ino
            own = open_current()
            try:
                setns(fd)
            except BaseException:
                os.close(own)
                raise
        finally:
            os.close(fd)
        entry = _Entered(self.name, inode, own)
        stack = _entries.stack
        stack.append(entry)
        try:
            yield self
        finally:
            at = next(i for i, e in enumerate(stack) if e is entry)
            del stack[at]
            if at == len(stack):
                try:
                    setns(entry.home)
                    _rehome_trio_workers(entry.inode, entry.home)
                    _stop_anyio_workers(entry.inode)
                finally:
                    os.close(entry.home)
            else:
                later = stack[at]
                os.close(later.home)
                later.home = entry.home
                raise RuntimeError(
                    f"left namespace {self.name} while {later.name}, entered after it on this "
                    "thread, is still entered: a thread must leave namespaces in reverse order "
                    "(two tasks of one event loop ran in whichever namespace was entered last)"
                )


class _Entered:
    """One :meth:`Netns.entered` of a thread: the namespace, and an fd of the one to go back to."""

    __slots__ = ("home", "inode", "name")

    def __init__(self, name: str, inode: int, home: int) -> None:
        self.name = name
        self.inode = inode
        self.home = home


class _Entries(threading.local):
    def __init__(self) -> None:
        self.stack: list[_Entered] = []


_entries = _Entries()


def _threads_in(inode: int) -> list[str]:
    """The other threads of this process in the namespace ``inode``: ``"TID (NAME)"``."""
    me = threading.get_native_id()
    found = []
    for tid in os.listdir("/proc/self/task"):
        if int(tid) == me:
            continue
        try:
            if os.stat(f"/proc/self/task/{tid}/ns/net").st_ino != inode:
                continue
            with open(f"/proc/self/task/{tid}/comm") as f:
                found.append(f"{tid} ({f.read().strip()})")
        except OSError:  # ended meanwhile
            continue
    return found


def _rehome_trio_workers(inode: int, home: int) -> None:
    """Move trio's idle cached worker threads that are in the namespace ``inode`` into ``home``.

    Threads start in the namespace of the thread that starts them, and trio keeps its worker
    threads for later ``to_thread`` calls — of any namespace. One job that moves its thread
    is handed to the cache at a time, each kept busy until the last starts, so every idle
    worker takes one; new threads it starts for them start here, in ``home``, already.
    """
    trio = sys.modules.get("trio")
    if trio is None or not _threads_in(inode):
        return
    from .platform.linux._netns import current_inode, setns

    release = threading.Event()
    started = threading.Semaphore(0)

    def job() -> None:
        try:
            if current_inode() == inode:
                setns(home)
        finally:
            started.release()
        release.wait(STOP_GRACE)

    try:
        for _ in range(threading.active_count() + 1):
            trio.lowlevel.start_thread_soon(job, lambda _: None)
            if not started.acquire(timeout=STOP_GRACE) or not _threads_in(inode):
                break
    finally:
        release.set()


def _stop_anyio_workers(inode: int) -> None:
    """End the idle anyio worker threads of the running asyncio loop in the namespace ``inode``.

    On asyncio, anyio keeps its worker threads for later ``to_thread`` calls until they have
    been idle for 10 seconds or the event loop ends; the next call starts a new one, here.
    """
    backend = sys.modules.get("anyio._backends._asyncio")
    if backend is None or not _threads_in(inode):
        return
    try:
        idle = list(backend._threadpool_idle_workers.get())
    except (LookupError, RuntimeError):  # no running loop, or no to_thread call on it yet
        return
    for worker in idle:
        try:
            if os.stat(f"/proc/self/task/{worker.native_id}/ns/net").st_ino == inode:
                worker.stop()
        except OSError:  # ended meanwhile
            continue


@contextlib.contextmanager
def netns(enter: bool = True, loopback: bool = True) -> Iterator[Netns]:
    """Create a network namespace, optionally enter it, and always delete it afterwards.

    Args:
        enter: move the calling thread into the namespace for the ``with`` body.
        loopback: bring ``lo`` up inside it.
    """
    _sweep_stale()
    ns = Netns(unique_name("n"))
    run("ip", "netns", "add", ns.name)
    inode = os.stat(f"/run/netns/{ns.name}").st_ino
    try:
        if loopback:
            ns.run("ip", "link", "set", "lo", "up")
        if enter:
            with ns.entered():
                yield ns
        else:
            yield ns
    finally:
        try:
            ns._stop_processes()
        finally:
            run("ip", "netns", "del", ns.name, check=False)
        _check_left(ns.name, inode)


def _check_left(name: str, inode: int) -> None:
    """Raise when threads of this process are still in the deleted namespace ``inode`` after
    :data:`STOP_GRACE` seconds: they keep it, and the interfaces in it, alive."""
    deadline = time.monotonic() + STOP_GRACE
    while (left := _threads_in(inode)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        raise RuntimeError(
            f"threads still in the deleted namespace {name} keep it and its interfaces alive: "
            f"{', '.join(left)}; a thread started inside stays there — end it (or, for its own "
            "threads, let it enter the namespace itself) before the namespace goes"
        )


def _sweep_stale() -> None:
    """Once per process: delete the namespaces :func:`unique_name` named for a process that no
    longer runs (a run killed with SIGKILL), or for an earlier process with this one's pid."""
    global _swept
    with _sweep_lock:
        if _swept:
            return
        _swept = True
        me = os.getpid()
        for name in leftover_namespaces():
            pid = _owner(name)
            if pid is None:
                continue
            if (pid == me and name not in _issued) or (
                pid != me and not os.path.exists(f"/proc/{pid}")
            ):
                run("ip", "netns", "del", name, check=False)


def veth_pair(
    a: Netns, b: Netns, addr_a: str, addr_b: str, *, mtu: int | None = None
) -> tuple[str, str]:
    """Join two namespaces with a veth pair, address and raise both ends; return their names.

    When a step fails (a bad address, say) the pair is deleted before the error leaves.
    """
    name_a, name_b = unique_name("va"), unique_name("vb")
    run(
        "ip",
        "link",
        "add",
        name_a,
        "netns",
        a.name,
        "type",
        "veth",
        "peer",
        "name",
        name_b,
        "netns",
        b.name,
    )
    try:
        for ns, name, addr in ((a, name_a, addr_a), (b, name_b, addr_b)):
            extra = ("nodad",) if ":" in addr else ()
            ns.run("ip", "addr", "add", addr, "dev", name, *extra)
            if mtu is not None:
                ns.run("ip", "link", "set", name, "mtu", str(mtu))
            ns.run("ip", "link", "set", name, "up")
    except BaseException:
        a.run("ip", "link", "del", name_a, check=False)  # takes its peer with it
        raise
    return name_a, name_b


def leftover_interfaces(pid: int | None = None) -> list[str]:
    """Interfaces in the current namespace made by :func:`unique_name` (by process ``pid``
    only, when given)."""
    return [
        link["ifname"]
        for link in ip_json("link", "show")
        if _ours(str(link.get("ifname", "")), pid)
    ]


def leftover_namespaces(pid: int | None = None) -> list[str]:
    """Named network namespaces made by :func:`unique_name` (by process ``pid`` only, when
    given)."""
    return [ns["name"] for ns in ip_json("netns", "list") if _ours(ns["name"], pid)]
