"""Processes mode, parent side: one worker process per source queue, supervised.

Each child is ``python -P -m tunflow.pipeline._worker`` (this tunflow first on its
``PYTHONPATH``) started with ``subprocess.Popen`` *in the calling thread* (a new process inherits the network namespace of the thread that forks it, and
tests run their threads inside throw-away namespaces); the namespace is also passed as an fd so
the child can ``setns`` into it if it started elsewhere. The queue fds and transport sockets are
inherited with ``pass_fds``; the child gets its job (stage specs, ports, policy) as one pickled
message over a ``SOCK_SEQPACKET`` socketpair — the parent's ``sys.path`` and the job pickled
apart, so that the child can import what the job names (a plugin's module on a path the parent
added at run time) before it unpickles it — reports ``ready``, then its statistics every
``statistics_interval`` and once more when it stops (``final``). A child whose engine ends,
fails or is told to stop before it gets to say ``ready`` does not say it: its ``error`` or
``final`` stands for it, and the parent counts a finished child as started. A message goes in chunks of at most
``_CHUNK`` bytes, each led by a byte saying whether more follow: one datagram larger than the
socket's send buffer (~208 KiB) fails with ``EMSGSIZE``, and a filter with thousands of rules
makes a job or a report that large. Stopping: the parent sends ``stop``, reads
until the child's final report or end of file, and kills whatever has not exited after
``_GRACE`` seconds — within a second in all. A child whose parent vanishes sees end of file on
its socket and exits.
"""

from __future__ import annotations

import os
import pickle
import reprlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.abc import TaskStatus

from .._child import child_environment
from ..errors import ConfigError
from ._ports import Port, PortHandle, PortStatistics
from ._stage import Stage, StageSpec, StageStatistics

if TYPE_CHECKING:
    from ._engine import WorkerStatistics, _Engine

__all__ = ["ProcessSupervisor", "receive_message", "receive_message_blocking", "send_message"]

#: the most bytes of a message in one datagram (after the leading more-follows byte)
_CHUNK: Final = 1 << 16
#: seconds a child gets to stop on its own before it is killed
_GRACE: Final = 0.6


def _chunks(message: Any) -> list[bytes]:
    """``message`` pickled and cut into datagrams: a byte (1: more follow, 0: the last), data."""
    data = pickle.dumps(message)
    n = len(data)
    return [
        (b"\x01" if i + _CHUNK < n else b"\x00") + data[i : i + _CHUNK] for i in range(0, n, _CHUNK)
    ]


_STOP: Final = _chunks(("stop",))[0]


async def send_message(sock: socket.socket, message: Any) -> bool:
    """Send ``message`` on the non-blocking ``sock``; ``False`` when the peer is gone.

    Shielded from cancellation, so a message is never left half sent (the next one would be
    read as its end): a worker's reports, which its parent reads until the worker has stopped
    (or kills it), and which fail at once when the parent is gone.
    """
    with anyio.CancelScope(shield=True):
        sent = await _send_chunks(sock, _chunks(message))
    return sent


async def _send_chunks(sock: socket.socket, chunks: list[bytes]) -> bool:
    for chunk in chunks:
        while True:
            try:
                sock.send(chunk)
            except BlockingIOError:
                await anyio.wait_writable(sock)
                continue
            except OSError:
                return False
            break
    return True


def _assemble(parts: list[bytes], data: bytes) -> tuple[bool, Any]:
    """Add the datagram ``data`` to ``parts``; ``(True, message)`` once a message is whole."""
    parts.append(data[1:])
    if data[0]:
        return False, None
    whole = b"".join(parts)
    parts.clear()
    return True, pickle.loads(whole)


async def receive_message(sock: socket.socket, parts: list[bytes]) -> Any:
    """The next message from the non-blocking ``sock``, ``None`` at end of file.

    ``parts`` holds a message's chunks between calls, so a receive cancelled halfway loses none.
    A peer that closed with a message of ours unread (a ``stop`` that crossed its last report)
    makes Linux report ``ECONNRESET`` once, ahead of what it sent: that is read on.
    """
    reset = False
    while True:
        try:
            data = sock.recv(_CHUNK + 1)
        except BlockingIOError:
            await anyio.wait_readable(sock)
            continue
        except ConnectionResetError:
            if reset:
                return None
            reset = True
            continue
        except OSError:
            return None
        if not data:
            return None
        done, message = _assemble(parts, data)
        if done:
            return message


def receive_message_blocking(sock: socket.socket) -> Any:
    """The next message from the blocking ``sock``, ``None`` at end of file."""
    parts: list[bytes] = []
    while True:
        data = sock.recv(_CHUNK + 1)
        if not data:
            return None
        done, message = _assemble(parts, data)
        if done:
            return message


def current_backend() -> tuple[str, dict[str, Any]]:
    """The running anyio backend's name and options, for a child to run the same."""
    try:
        import sniffio

        lib = sniffio.current_async_library()
    except Exception:
        lib = "asyncio"
    if lib == "asyncio":
        import asyncio

        loop = asyncio.get_running_loop()
        if type(loop).__module__.startswith("uvloop"):
            return "asyncio", {"use_uvloop": True}
        return "asyncio", {}
    return lib, {}


#: seconds a worker that hung up is given to end, so that its exit status can be told
_REAP_WAIT: Final = 1.0


class _Child:
    def __init__(
        self, index: int, proc: subprocess.Popen[bytes], sock: socket.socket, job: list[bytes]
    ) -> None:
        self.index = index
        self.job = job
        self.proc = proc
        self.sock = sock
        self.ready = False
        self.finished = False
        #: whether the whole job was sent (a child given part of one is not sent ``stop``)
        self.sent = False
        #: chunks of a message being received
        self.parts: list[bytes] = []
        self.stats: tuple[Any, Any, Any] | None = None


class ProcessSupervisor:
    """Starts, watches and stops the worker processes of one engine."""

    def __init__(self, engine: _Engine, specs: Sequence[StageSpec]) -> None:
        self._engine = engine
        self._specs = list(specs)
        self._children: list[_Child] = []
        self._failure: BaseException | None = None

    # -- jobs -----------------------------------------------------------------------------

    def _jobs(self) -> list[tuple[list[PortHandle], list[tuple[str, int, int]]]]:
        flows = self._engine._flows
        count = max(len(src) for _, src, _ in flows)
        handles: dict[int, PortHandle] = {}

        def handle(port: Port) -> int:
            h = port.handle()
            if h is None:
                raise ConfigError(
                    f"port {port.name!r} cannot be handed to a worker process "
                    "(processes mode needs device queues or UDP transports)"
                )
            handles.setdefault(h.fd, h)
            return h.fd

        jobs = []
        for i in range(count):
            lanes: list[tuple[str, int, int]] = []
            for direction, src, dst in flows:
                if i < len(src):
                    lanes.append((direction.value, handle(src[i]), handle(dst[i % len(dst)])))
            used = {fd for _, a, b in lanes for fd in (a, b)}
            jobs.append(([handles[fd] for fd in sorted(used)], lanes))
        return jobs

    def _spawn(
        self, index: int, handles: list[PortHandle], lanes: list[tuple[str, int, int]]
    ) -> _Child:
        backend, options = current_backend()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ns_fd = -1
        try:
            if sys.platform == "linux":
                from ..platform.linux._netns import open_current

                try:
                    ns_fd = open_current()
                except OSError:
                    ns_fd = -1
            job = {
                "index": index,
                "name": self._engine.name,
                "backend": backend,
                "backend_options": options,
                "netns_fd": ns_fd if ns_fd >= 0 else None,
                "handles": handles,
                "lanes": lanes,
                "stages": self._specs,
                "on_error": self._engine.on_error.value,
                "buffer": self._engine.buffer,
                "interval": self._engine.statistics_interval,
            }
            try:
                chunks = _chunks({"sys_path": list(sys.path), "job": pickle.dumps(job)})
            except Exception as exc:
                raise ConfigError(
                    f"the stages cannot be sent to a worker process (their options must "
                    f"pickle): {type(exc).__name__}: {exc}"
                ) from exc
            fds = [child.fileno(), *(h.fd for h in handles)]
            if ns_fd >= 0:
                fds.append(ns_fd)
            proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "tunflow.pipeline._worker", str(child.fileno())],
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
                close_fds=True,
                env=child_environment(),
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
            if ns_fd >= 0:
                os.close(ns_fd)
        parent.setblocking(False)
        return _Child(index, proc, parent, chunks)

    # -- running --------------------------------------------------------------------------

    async def run(self, task_status: TaskStatus[None], set_running: Callable[[], None]) -> None:
        jobs = self._jobs()
        all_ready = anyio.Event()
        try:
            for i, (handles, lanes) in enumerate(jobs):
                self._children.append(self._spawn(i, handles, lanes))
            async with anyio.create_task_group() as tg:
                for c in self._children:
                    tg.start_soon(self._supervise, c, all_ready, tg.cancel_scope)
                await all_ready.wait()
                set_running()
                task_status.started()
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop_all()
        if self._failure is not None:
            raise self._failure

    async def _supervise(self, c: _Child, all_ready: anyio.Event, scope: anyio.CancelScope) -> None:
        from ._engine import StageError, WorkerError

        # (a child that died at once fails the send, and the receive below reports it; one
        # that never reads its job is cancelled here, is not sent ``stop`` and is killed)
        c.sent = await _send_chunks(c.sock, c.job)
        while True:
            try:
                msg = await receive_message(c.sock, c.parts)
            except Exception as exc:  # (not a pickle, or one of a class not found here)
                self._garbled(
                    c, scope, f"a message that could not be read ({type(exc).__name__}: {exc})"
                )
                return
            match msg:
                case None:
                    if self._failure is None:
                        rc = c.proc.poll()
                        # (its end of the socket closes before the kernel has it reaped)
                        with anyio.move_on_after(_REAP_WAIT):
                            while rc is None:
                                await anyio.sleep(0.01)
                                rc = c.proc.poll()
                        self._failure = WorkerError(
                            f"worker process {c.index} (pid {c.proc.pid}) exited"
                            + (f" with status {rc}" if rc is not None else "")
                            + " without reporting"
                        )
                    scope.cancel()
                    return
                case ("ready",):
                    c.ready = True
                case ("stats", (_, _, _) as stats):
                    c.stats = stats
                case ("final", (_, _, _) as stats):
                    c.stats = stats
                    c.finished = True
                case ("error", what, str() as text, stage, *cause):
                    if self._failure is None:
                        if what == "stage":
                            self._failure = StageError(text, stage=stage)
                        elif what == "config":
                            self._failure = ConfigError(text)
                        else:
                            module, name = (
                                cause[0]
                                if cause and isinstance(cause[0], tuple) and len(cause[0]) == 2
                                else (None, None)
                            )
                            self._failure = WorkerError(
                                f"worker process {c.index}: {text}",
                                exception_type=name,
                                exception_module=module,
                            )
                    scope.cancel()
                case _:
                    self._garbled(c, scope, f"an unknown message: {reprlib.repr(msg)}")
                    return
            # running once each worker is: ready, or ended already (its lanes may all end
            # before it says ready, and it says only ``final``)
            if all(ch.ready or ch.finished for ch in self._children):
                all_ready.set()
            if c.finished:
                return

    def _garbled(self, c: _Child, scope: anyio.CancelScope, what: str) -> None:
        """Fail with a :class:`WorkerError`: worker ``c`` sent ``what``, not its protocol."""
        from ._engine import WorkerError

        if self._failure is None:
            self._failure = WorkerError(f"worker process {c.index} (pid {c.proc.pid}) sent {what}")
        scope.cancel()

    async def _stop_all(self) -> None:
        async with anyio.create_task_group() as tg:
            for c in self._children:
                tg.start_soon(self._stop, c)

    async def _stop(self, c: _Child) -> None:
        deadline = time.monotonic() + _GRACE
        try:
            if not c.finished:
                try:
                    if c.sent:
                        c.sock.send(_STOP)  # one chunk: never half sent
                    else:
                        c.sock.shutdown(socket.SHUT_WR)  # a child reading its job reads the end
                except OSError:
                    pass
                with anyio.move_on_after(_GRACE):
                    while True:
                        try:
                            msg = await receive_message(c.sock, c.parts)
                        except Exception:
                            break  # (garbled: the last counters it sent stand)
                        match msg:
                            case None:
                                break
                            case ("stats" | "final", (_, _, _) as stats):
                                c.stats = stats
            while c.proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await anyio.sleep(0.01)  # no pidfd wait on every backend: poll briefly
            if c.proc.poll() is None:
                c.proc.kill()
            c.proc.wait()
        finally:
            c.sock.close()

    # -- statistics -----------------------------------------------------------------------

    def statistics(
        self, stages: Sequence[Stage], ports: Sequence[Port]
    ) -> tuple[
        tuple[StageStatistics, ...], tuple[PortStatistics, ...], tuple[WorkerStatistics, ...]
    ]:
        totals: list[StageStatistics] = [
            StageStatistics(st.name, getattr(st, "plugin", "")) for st in stages
        ]
        by_port: dict[str, PortStatistics] = {
            p.name: PortStatistics(p.name, p.statistics().kind) for p in ports
        }
        workers: list[WorkerStatistics] = []
        for c in self._children:
            if c.stats is None:
                continue
            st_stats, port_stats, worker_stats = c.stats
            for i, s in enumerate(st_stats):
                if i < len(totals):
                    totals[i] = totals[i].merge(s)
            for p in port_stats:
                prev = by_port.get(p.name)
                by_port[p.name] = p if prev is None else prev.merge(p)
            workers.extend(worker_stats)
        return tuple(totals), tuple(by_port.values()), tuple(workers)
