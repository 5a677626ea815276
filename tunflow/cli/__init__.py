"""The ``tunflow`` command: ``tunflow run CONFIG``, ``tunflow check CONFIG``, ``tunflow stages``.

Subcommands live in modules listed in :data:`COMMAND_MODULES`; each registers itself with
:func:`command` when imported, so another module (the VPN's ``up``/``down``/``genkey``/``pubkey``)
adds its commands by appending its name there — nothing else changes. ``python -m tunflow.cli``
works too.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import select
import sys
from collections.abc import Callable, Sequence

import attrs

__all__ = [
    "main",
    "command",
    "Command",
    "COMMAND_MODULES",
    "build_parser",
    "BACKENDS",
    "add_backend_option",
    "anyio_backend",
]

#: ``--backend`` choices; ``auto`` is uvloop where it is installed, else asyncio.
BACKENDS = ("auto", "asyncio", "uvloop", "trio")


def add_backend_option(p: argparse.ArgumentParser) -> None:
    """The ``--backend`` option of the commands that run an event loop."""
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="event loop (default auto: uvloop if installed, else asyncio)",
    )


def anyio_backend(name: str) -> tuple[str, dict[str, object]]:
    """``(backend, backend_options)`` for ``anyio.run`` from a ``--backend`` value."""
    if name == "auto":
        name = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    if name == "uvloop":
        return "asyncio", {"use_uvloop": True}
    return name, {}


#: Modules that register subcommands when imported, in the order ``--help`` lists them.
COMMAND_MODULES: list[str] = ["tunflow.cli.pipeline", "tunflow.cli.vpn"]


@attrs.frozen
class Command:
    """A subcommand: its name, one line of help, how it adds its arguments, what it runs.

    ``run`` returns the process's exit status.
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


_commands: dict[str, Command] = {}


def command(
    name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Register the decorated function as the subcommand ``name``.

    Example:
        >>> @command("hello", "say hello", lambda p: p.add_argument("who"))
        ... def hello(args):
        ...     print("hello", args.who)
        ...     return 0
    """

    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        _commands[name] = Command(name, help, configure, run)
        return run

    return register


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    parser = argparse.ArgumentParser(
        prog="tunflow",
        description="TUN/TAP pipelines (run, check, stages) and a WireGuard-compatible VPN "
        "(up, down, save, reload, show, strip, genkey, pubkey, genpsk).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for cmd in _commands.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.configure(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tunflow`` command; return its exit status (0 ok, 1 failure, 2 bad usage or
    configuration).

    Output to a reader that went away (``tunflow show | head -c0``, ``tunflow genkey | true``)
    ends the command quietly with status 1, as a C tool killed by ``SIGPIPE`` ends (Python
    ignores that signal, so the write raised a ``BrokenPipeError`` traceback)."""
    _open_standard_fds()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args._run(args)
        # here, not at the interpreter's exit: there, a write to a closed pipe that waited in
        # the buffer is "Exception ignored … BrokenPipeError" and status 120 (None: fd 1 was
        # closed, print wrote nothing)
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        if not _stdout_gone():
            raise  # another pipe or socket: a bug to see
        # what is left in the buffer is flushed again at exit: into /dev/null
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in _EXTRAS:
            raise
        extra = _EXTRAS[missing]
        print(
            f"tunflow: this needs {missing}, which tunflow's {extra!r} extra installs: "
            f"pip install 'tunflow[{extra}]'",
            file=sys.stderr,
        )
        return 2
    return status


def _open_standard_fds() -> None:
    """Open ``/dev/null`` on each standard descriptor (0, 1, 2) that is closed (``tunflow run
    CONFIG >&-``). Otherwise the next file opened takes its number — a TUN device or a UDP
    socket became standard output: what a hook wrote there went into the tunnel, and uvloop
    aborts the process (an assertion) when it closes a descriptor below 3. ``sys.stdout``
    stays ``None``: a command whose output is what it is run for still says it is closed."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stderr is None:
        # (closed, it is None: print(…, file=sys.stderr) then printed errors to standard output)
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process


def _stdout_closed() -> int | None:
    """Status 1 and a message when standard output is closed (``tunflow genkey >&-``: Python
    makes ``sys.stdout`` ``None``, and ``print`` to it writes nothing without a word), for the
    commands whose output is what they are run for; ``None`` when there is one."""
    if sys.stdout is not None:
        return None
    print("tunflow: standard output is closed: nowhere to write the output", file=sys.stderr)
    return 1


def _stdout_gone() -> bool:
    """Whether standard output is a pipe or socket whose reader went away (poll says POLLERR
    or POLLHUP for it without waiting)."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, 0)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


#: optional dependencies a command may need, and the extra that installs each
_EXTRAS = {"cryptography": "vpn", "trio": "trio", "uvloop": "uvloop", "rich": "cli"}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
