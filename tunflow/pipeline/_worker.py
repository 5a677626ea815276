"""Processes mode, child side: ``python -m tunflow.pipeline._worker FD``.

Reads its job from the socket ``FD`` (see :mod:`._processes`): first the parent's ``sys.path``,
then, with it, the rest (a job that does not unpickle is reported as a configuration error).
Enters the parent's network namespace if it is elsewhere, reopens its ports from the inherited
fds, rebuilds the stages from their plugin names and options, runs its lanes as tasks, reports
statistics, and stops when the parent says ``stop`` or goes away.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import sys
from typing import Any

__all__ = ["main"]


def _enter_netns(fd: int | None) -> None:
    """Enter the parent's network namespace ``fd`` if this process is in another one; close it."""
    if fd is None:
        return
    try:
        from ..platform.linux import _netns

        if os.fstat(fd).st_ino != _netns.current_inode():
            _netns.setns(fd)
    finally:
        os.close(fd)


def _describe(exc: BaseException) -> str:
    """``Type: message`` of an error; of each error in a group (not the group's own text)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


async def _run(sock: socket.socket, job: dict[str, Any]) -> int:
    import anyio

    from ..errors import ConfigError, PluginError
    from ._engine import StageError, _Engine
    from ._ports import close_port, open_port_handle
    from ._processes import receive_message, send_message
    from ._stage import Direction

    ports: dict[int, Any] = {}
    try:
        try:
            for h in job["handles"]:
                ports[h.fd] = open_port_handle(h)
            engine = _Engine(
                job["name"],
                [(Direction(d), [ports[src]], [ports[dst]]) for d, src, dst in job["lanes"]],
                job["stages"],
                workers="tasks",
                on_error=job["on_error"],
                buffer=job["buffer"],
                statistics_interval=job["interval"],
                worker_base=job["index"],
                kernel_links=False,
                process_index=job["index"],
            )
        except (ConfigError, PluginError) as exc:
            await send_message(sock, ("error", "config", str(exc), None))
            return 2
        except Exception as exc:  # (a port the OS refuses, say: the parent hears what it was)
            cls = type(exc)
            await send_message(
                sock,
                ("error", "worker", _describe(exc), None, (cls.__module__, cls.__qualname__)),
            )
            return 1

        async def report(kind: str) -> None:
            s = engine.statistics()
            await send_message(sock, (kind, (s.stages, s.ports, s.workers)))

        async def reporter() -> None:
            while True:
                await anyio.sleep(job["interval"])
                await report("stats")

        async def control(scope: anyio.CancelScope) -> None:
            parts: list[bytes] = []
            while True:
                message = await receive_message(sock, parts)
                if message is None or message[0] == "stop":
                    scope.cancel()
                    return

        status = 0
        failure: BaseException | None = None

        async def body(*, task_status: Any) -> None:
            nonlocal failure
            try:
                await engine.run(task_status=task_status)
            except Exception as exc:
                failure = exc
            tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(control, tg.cancel_scope)
            try:
                await tg.start(body)
            except RuntimeError:
                pass  # the engine failed before it started: ``failure`` says why
            else:
                await send_message(sock, ("ready",))
                tg.start_soon(reporter)
        if isinstance(failure, StageError):
            await send_message(sock, ("error", "stage", str(failure), failure.stage))
            status = 1
        elif isinstance(failure, ConfigError | PluginError):
            await send_message(sock, ("error", "config", str(failure), None))
            status = 2
        elif failure is not None:
            kind = type(failure)
            await send_message(
                sock,
                ("error", "worker", _describe(failure), None, (kind.__module__, kind.__qualname__)),
            )
            status = 1
        await report("final")
        return status
    finally:
        with anyio.CancelScope(shield=True):
            for port in ports.values():
                try:
                    await close_port(port)
                except Exception:
                    pass


def _report_blocking(sock: socket.socket, message: Any) -> None:
    """Send ``message`` on the blocking ``sock`` (before the event loop runs); a parent that is
    gone is ignored."""
    from ._processes import _chunks

    try:
        for chunk in _chunks(message):
            sock.send(chunk)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Run one worker process (the parent passes the socket's fd as the only argument)."""
    args = sys.argv[1:] if argv is None else argv
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(args[0]))
    try:
        return _serve(sock)
    finally:
        sock.close()


def _serve(sock: socket.socket) -> int:
    from ._processes import receive_message_blocking

    envelope = receive_message_blocking(sock)
    if envelope is None:
        return 0
    for entry in reversed(envelope["sys_path"]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    try:
        job = pickle.loads(envelope["job"])
    except Exception as exc:
        _report_blocking(
            sock,
            (
                "error",
                "config",
                "the stages cannot be read in a worker process (their options must unpickle "
                f"there, with the parent's sys.path): {_describe(exc)}",
                None,
            ),
        )
        return 2
    try:
        _enter_netns(job["netns_fd"])
    except Exception as exc:  # (EPERM, say: the parent hears it, not "exited without reporting")
        cls = type(exc)
        _report_blocking(
            sock,
            (
                "error",
                "worker",
                f"entering the parent's network namespace: {_describe(exc)}",
                None,
                (cls.__module__, cls.__qualname__),
            ),
        )
        return 1
    sock.setblocking(False)
    import anyio

    return anyio.run(
        _run, sock, job, backend=job["backend"], backend_options=job["backend_options"]
    )


if __name__ == "__main__":
    sys.exit(main())
