"""``tunflow up``, ``down``, ``save``, ``reload``, ``show``, ``strip``, ``genkey``, ``pubkey``
and ``genpsk``: the VPN commands.

``tunflow up wg0.conf`` reads a wg-quick file and runs the interface in the foreground (the
interface is named after the file, as wg-quick names it) until SIGINT or SIGTERM, then takes
it down cleanly; ``--daemon`` runs it in the background instead. A bare interface name stands for
``/etc/wireguard/<name>.conf``, as with wg-quick. While it runs, ``wg show`` and
``wg set`` work against it through ``/var/run/wireguard/<name>.sock``, ``tunflow reload wg0``
(or SIGHUP) applies the file again as ``wg syncconf`` would (keys and peers; sessions kept),
and ``tunflow down wg0``
stops it. ``genkey``/``pubkey``/``genpsk`` behave as ``wg``'s. Under systemd, ``tunflow up``
is a ``Type=notify`` service: it says ``READY=1`` on ``$NOTIFY_SOCKET`` once the interface is
up, and ``STOPPING=1`` when it starts to go down (``--daemon`` waits for the same message).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
import anyio.abc
import anyio.to_thread
import attrs

from .._text import is_decimal
from .._threads import in_daemon_thread
from ..errors import ConfigError, DeviceGoneError, TunflowError
from . import _stdout_closed, add_backend_option, anyio_backend, command

if TYPE_CHECKING:
    from ..wireguard._routing import AutomaticMTU, RoutingRecord

__all__ = [
    "up",
    "down",
    "save",
    "reload",
    "show",
    "strip",
    "genkey",
    "pubkey",
    "genpsk",
    "PID_DIRECTORY",
]

#: Where ``tunflow up`` records the process running an interface (``<name>.pid``).
PID_DIRECTORY = "/run/tunflow"


log = logging.getLogger("tunflow.cli")


def _error(exc: BaseException) -> int:
    hint = ""
    if isinstance(exc, PermissionError) and not isinstance(exc, TunflowError) and os.geteuid():
        # /run/tunflow, /var/run/wireguard, the device and routes are root's (wg-quick, too,
        # must run as root); tunflow's own errors say what they need themselves
        hint = " (not running as root: run it with sudo)"
    print(f"tunflow: {exc}{hint}", file=sys.stderr)
    return 2 if isinstance(exc, ConfigError) else 1


def _pid_path(name: str) -> Path:
    return Path(PID_DIRECTORY) / f"{name}.pid"


def _notify_address(value: str | None) -> str | None:
    """The socket address ``sd_notify(3)`` sends to for ``$NOTIFY_SOCKET``: a path, or
    ``@name`` for an abstract socket; ``None`` without one (or for a ``vsock:`` address, which
    ``tunflow up`` does not speak)."""
    if not value:
        return None
    if value[0] == "@":
        return "\0" + value[1:]
    if value[0] == "/":
        return value
    log.warning("NOTIFY_SOCKET %r is not a UNIX socket: no readiness notification", value)
    return None


#: the longest ``STATUS=`` text sent (systemd ignores a notification of 4096 bytes or more)
_STATUS_MAX = 512


def _one_line(text: str) -> str:
    """``text`` as one line: control characters (newlines, NUL) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _status(text: str) -> str:
    """``text`` fit for ``STATUS=``: one line, no NUL (systemd ignores a notification with one,
    READY=1 and all), control characters escaped, at most :data:`_STATUS_MAX` characters —
    an error message may quote any part of a damaged file."""
    text = _one_line(text)
    return text if len(text) <= _STATUS_MAX else text[: _STATUS_MAX - 1] + "…"


def _notify(address: str | None, state: str, *, starting: bool = False) -> None:
    """Send ``state`` (``READY=1``…) to the service manager at ``address``, as ``sd_notify``
    does; a manager that went away is logged, not fatal: a warning when the ``READY=1`` of the
    start is lost (``starting``: a service manager would time the start out), at debug level
    for the rest (``up --daemon``'s parent, for one, is gone once it heard ``READY=1``: the
    ``READY=1`` after each reload has nobody to go to)."""
    if address is None:
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:
        first = state.split("\n")[0]
        level = logging.WARNING if starting else logging.DEBUG
        log.log(level, "cannot notify the service manager (%s): %s", first, exc)


#: Where a bare interface name's file is (``tunflow up wg0``), as for wg-quick.
CONFIG_DIRECTORY = "/etc/wireguard"


def _config_path(arg: str) -> Path:
    """``wg0.conf`` or ``./x/wg0.conf`` as given; a bare name ``wg0`` is
    ``/etc/wireguard/wg0.conf`` (wg-quick's rule)."""
    if "/" in arg or arg.endswith(".conf"):
        return Path(arg)
    return Path(CONFIG_DIRECTORY) / f"{arg}.conf"


#: wg-quick's rule for an interface name (and so for a file's name before ``.conf``). The
#: kernel would take more — ``wg%d`` makes ``wg0`` — but the control socket and the pid file
#: are named after what was asked for.
_VALID_NAME = re.compile(r"[a-zA-Z0-9_=+.-]{1,15}")


def _valid_name(name: str) -> bool:
    # "." and ".." fit the pattern, but the kernel refuses them (dev_valid_name), and they
    # would name the pid file and control socket "..pid", "...sock"
    return _VALID_NAME.fullmatch(name) is not None and name not in (".", "..")


def _check_name(name: str, file: Path | None = None) -> str:
    """``name`` if it is a valid interface name.

    Raises:
        ConfigError: it is not (naming ``file`` when the name comes from it).
    """
    if not _valid_name(name):
        raise ConfigError(
            f"{name!r} is not a valid interface name (1 to 15 of a-z A-Z 0-9 _ = + . -, "
            "not . or ..)",
            file=None if file is None else str(file),
        )
    return name


def _file_interface_name(path: Path) -> str:
    """The interface a wg-quick file is for: ``wg0`` for ``…/wg0.conf``.

    Raises:
        ConfigError: the file's name is not a valid interface name followed by ``.conf``
            (wg-quick's rule: ``wg0.txt``, ``wg0.conf.bak``, ``.conf`` are refused).
    """
    base = path.name
    name = base[: -len(".conf")] if base.endswith(".conf") else ""
    if not _valid_name(name):
        raise ConfigError(
            "the file's name must be a valid interface name followed by .conf, as for "
            "wg-quick (1 to 15 of a-z A-Z 0-9 _ = + . -, not . or ..: wg0.conf)",
            file=str(path),
        )
    return name


def _refuse_existing_link(name: str) -> None:
    """Refuse to make ``name`` when an interface of that name exists (in this namespace).

    The device layer attaches to an existing TUN of the name (``ip tuntap add``: someone
    else's, then given the addresses and routes, and deleted on the way down) and fails on any
    other kind; wg-quick, too, refuses an existing interface. The TUN of a ``tunflow up`` of
    ``name`` just killed is waited for (2 s) to go away. The message suggests ``tunflow down``
    only for a link it takes down (a WireGuard one).

    Raises:
        ConfigError: it exists.
    """
    if not _link_stays(name):
        return
    try:
        shown = _ip("-j", "-d", "link", "show", "dev", name)
    except FileNotFoundError:
        shown = None
    kind = _link_kind(shown.stdout) if shown is not None and not shown.returncode else None
    if kind is None or _down_deletes(name, kind):
        raise ConfigError(
            f"an interface named {name} exists already: tunflow up makes its own; take that "
            f"one down first (tunflow down {name}, or ip link del {name}) or choose another name"
        )
    raise ConfigError(
        f"an interface named {name} exists already and is {f'a {kind}' if kind else 'a device'}, "
        "not a WireGuard interface (tunflow down leaves it alone): tunflow up makes its own, so "
        f"choose another name, or delete that one if nothing uses it (ip link del {name})"
    )


def _warn_if_world_accessible(path: Path) -> None:
    """wg-quick's warning for a file others may read (it holds the private key): the modes
    of the file and of its directory have an "other" bit in common."""
    try:
        real = path.resolve()
        shared = real.stat().st_mode & real.parent.stat().st_mode & 0o007
    except OSError:
        return  # reading it reports the problem
    if shared:
        print(f"Warning: `{real}' is world accessible", file=sys.stderr)


def _interface_name(arg: str) -> str:
    """``wg0`` for ``wg0``, ``/etc/wireguard/wg0.conf`` or ``wg0.conf``.

    Raises:
        ConfigError: not a valid interface name, or a file not named one followed by
            ``.conf``.
    """
    if "/" in arg or arg.endswith(".conf"):
        return _file_interface_name(Path(arg))
    return _check_name(arg)  # a bare name: /etc/wireguard/NAME.conf's


# -- up -----------------------------------------------------------------------------------------


def _up_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config",
        metavar="FILE",
        help="a wg-quick configuration file (wg0.conf), or a name: /etc/wireguard/NAME.conf",
    )
    p.add_argument(
        "--name", help="the interface name (default: the file name without .conf, as wg-quick)"
    )
    p.add_argument(
        "--native",
        action="store_true",
        help="tunflow native fast mode with every peer (tunflow peers only: not WireGuard)",
    )
    p.add_argument(
        "--offload",
        choices=("auto", "on", "off"),
        default="auto",
        help="TUN offload: on (super-packets), off (plain), auto (native peers: on; "
        "WireGuard peers: plain reads, coalesced writes)",
    )
    p.add_argument("--daemon", action="store_true", help="run in the background once it is up")
    add_backend_option(p)
    p.add_argument("--no-routes", action="store_true", help="add no routes (as Table = off)")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")


class _HookSignalled(ConfigError):
    """A hook ended by a signal (or exiting with 128 + one, as a shell reports that)."""


def _run_hooks(commands: list[str], what: str) -> None:
    # in bash, as wg-quick (a bash script) evals them: hooks use bash's syntax — wg-quick(8)'s
    # own example is `PostUp = wg set %i private-key <(pass …)` — which /bin/sh may not have
    shell = shutil.which("bash") or "/bin/sh"
    for cmd in commands:
        log.info("%s: %s", what, cmd)
        done = subprocess.run([shell, "-c", cmd], check=False)
        if done.returncode:
            error = _HookSignalled if not 0 < done.returncode <= 128 else ConfigError
            raise error(f"{what} command exited {done.returncode}: {cmd}")


def _check_automatic_mtu(quick: Any, auto: AutomaticMTU) -> None:
    """Refuse wg-quick's automatic MTU where the device cannot take it, as the file's own
    ``MTU`` is refused when it is read: below 1280 with an IPv6 ``Address`` (wg-quick sets it
    after the addresses, and the kernel drops those without a word), or below 576.

    Raises:
        ConfigError: naming the MTU, the path it came from, and what to write instead.
    """
    from ..netconfig.device import IPV6_MIN_MTU

    ipv6 = [a for a in quick.addresses if a.version == 6]
    if ipv6:
        least, why = IPV6_MIN_MTU, f"the least IPv6 takes, and Address has {ipv6[0]}"
    else:
        least, why = 576, "the least an MTU line takes"
    if auto.mtu < least:
        raise ConfigError(
            f"no MTU: the automatic one, 80 below {auto.path}, is {auto.mtu}, below {least}, "
            f"{why}; set MTU = {least} (or more) in [Interface]",
            file=quick.file,
        )


class _Stop:
    """What a SIGINT or SIGTERM stops: the start-up (:attr:`starting`) until the interface is
    up, then the running interface's block (:meth:`running`)."""

    def __init__(self) -> None:
        #: the first stop signal's name (``None``: none came)
        self.reason: str | None = None
        self.starting = anyio.CancelScope()
        self.up = False
        #: a SIGHUP came while starting: applied once up
        self.reload = False
        #: set with :attr:`reason`
        self.heard = anyio.Event()
        self._scope = self.starting

    def running(self, scope: anyio.CancelScope) -> None:
        """The interface is up: a stop signal cancels ``scope`` from now on (unless one came
        already: the start-up is being undone)."""
        if self.reason is not None:
            return
        self._scope = scope
        self.up = True

    def hold_reload(self, signum: int, frame: object) -> None:
        """The handler of SIGHUP while starting (its default action ends the process)."""
        self.reload = True


async def _stop_on_signals(
    stop: _Stop, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """On SIGINT or SIGTERM, cancel what ``stop`` says. While starting, more of them are taken
    and dropped until the start-up is undone (their default action would end the process half
    way); once up, the first one ends the receiver, as the interface goes down in order."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as got:
        task_status.started()
        async for signum in got:
            if stop.reason is None:
                stop.reason = signal.Signals(signum).name
                stop.heard.set()
            stop._scope.cancel()
            if stop.up:
                return


async def _serve(args: argparse.Namespace, quick: Any, name: str) -> int:
    """Bring the interface up and run it until a stop signal; one that comes while it starts
    undoes what was made (as wg-quick's trap does: neither PreDown nor PostDown) and ends it
    with status 0, as a stop once up does."""
    from ..pipeline._engine import _raise_single

    stop = _Stop()
    # (replaced by the reload's receiver once up)
    signal.signal(signal.SIGHUP, stop.hold_reload)
    status = 0
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(_stop_on_signals, stop)
            with stop.starting:
                try:
                    status = await _bring_up(args, quick, name, stop)
                except Exception as exc:
                    if isinstance(exc, _HookSignalled) and stop.reason is None:
                        # a signal to the process group (Ctrl-C, systemd's stop) ends the hook
                        # too, which may be seen first
                        with anyio.move_on_after(1):
                            await stop.heard.wait()
                    if stop.reason is None or stop.up:
                        raise
                    log.debug("%s", exc)  # (the hook the signal ended too, most likely)
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        _raise_single(group)
    if stop.reason is not None and not stop.up:
        print(f"{name} stopped ({stop.reason}) while coming up", flush=True)
    return status


async def _bring_up(args: argparse.Namespace, quick: Any, name: str, stop: _Stop) -> int:
    from ..wireguard import open_interface
    from ..wireguard._dns import resolv_conf
    from ..wireguard._routing import automatic_mtu
    from ..wireguard.runtime import UAPI_DIRECTORY, _free_socket_path
    from ..wireguard.wgquick import hooks

    # taken out of the environment, as sd_notify(unset_environment=1): the hooks and resolvconf
    # are not the service and must not speak for it
    notify = _notify_address(os.environ.pop("NOTIFY_SOCKET", None))
    if quick.private_key is None:
        _warn_keyless(quick.file, name)
    offload = {"auto": None, "on": True, "off": False}[args.offload]
    routes = quick.table != "off" and not args.no_routes
    # checked before anything is made: without resolvconf the interface does not come up
    dns = resolv_conf(name, quick.dns)  # None without a server (wg-quick: nothing to set)
    with _PidFile(name) as pid_file:  # locked: a second `up` of this name stops here
        # what a killed `up` of this name left (its rules would be there twice otherwise)
        undone = await anyio.to_thread.run_sync(_undo_leftovers, name)
        if undone:
            log.warning("%s", undone)
        await anyio.to_thread.run_sync(_refuse_existing_link, name)
        _free_socket_path(f"{UAPI_DIRECTORY}/{name}.sock")  # (made after PreUp: checked now)
        journal = _Journal(name)
        # in a thread: a stop signal is heard while it runs (and waits for it, as wg-quick's
        # trap waits for its hook)
        await anyio.to_thread.run_sync(_run_hooks, hooks(quick.pre_up, name), "PreUp")
        # after PreUp, as wg-quick's `wg setconf` and set_mtu_up: a PreUp may make what they
        # need (a route to the peers, a resolver, a name in /etc/hosts). Endpoints may be
        # names: resolved off the loop (Ctrl-C is heard during wg's retries)
        config = await in_daemon_thread(
            functools.partial(quick.interface_config, native=args.native)
        )
        if quick.mtu is None:
            # wg-quick's: 80 below the MTU of the path to the peers (the file's MTU = to choose)
            endpoints = [p.endpoint[0] for p in config.peers if p.endpoint is not None]
            auto = await anyio.to_thread.run_sync(automatic_mtu, endpoints)
            if auto is not None:
                _check_automatic_mtu(quick, auto)  # the device would refuse it
                config = attrs.evolve(config, mtu=auto.mtu)
        reason = "stopped"
        went_down = False  # PreDown ran in the block (not cut short)
        iface: Any = None
        try:
            async with open_interface(
                config,
                name=name,
                addresses=quick.addresses,
                routes=routes,
                table=quick.table,
                offload=offload,
                journal=journal.routes,
            ) as iface:
                try:
                    if dns is not None:
                        journal.dns(dns.journal)  # first: killed during apply, it is undone
                        await anyio.to_thread.run_sync(dns.apply)  # a program: off the loop
                    # off the loop, which serves the control socket: a PostUp may ask it
                    # (wg-quick(8)'s `wg set %i private-key <(…)`), as a PreDown may
                    await anyio.to_thread.run_sync(_run_hooks, hooks(quick.post_up, name), "PostUp")
                    async with anyio.create_task_group() as tg:
                        stop.running(tg.cancel_scope)
                        await tg.start(_answer_saves, quick, iface, name)
                        await tg.start(_answer_reloads, quick, iface, name, args.native, notify)
                        pid_file.publish()  # `down` and `save` may signal from now on
                        native = any(p.native_mode for p in config.peers)
                        mode = "native fast mode" if native else "WireGuard"
                        print(
                            f"{name} up: listening on UDP {iface.listen_port}, "
                            f"{len(config.peers)} peer(s), {mode}; wg show {name}; "
                            f"tunflow down {name}",
                            flush=True,
                        )
                        _notify(
                            notify,
                            f"READY=1\nMAINPID={os.getpid()}\n"
                            f"STATUS=listening on UDP {iface.listen_port}, {mode}",
                            starting=True,
                        )
                        if stop.reload:  # a SIGHUP while starting: the file read again now
                            os.kill(os.getpid(), signal.SIGHUP)
                    reason = stop.reason or "stopped"
                    _notify(notify, f"STOPPING=1\nSTATUS={_status(f'going down ({reason})')}")
                    went_down = True
                    await anyio.to_thread.run_sync(
                        _run_hooks, hooks(quick.pre_down, name), "PreDown"
                    )
                    if quick.save_config:
                        await _save_config(quick, iface)
                finally:
                    if dns is not None:
                        with anyio.CancelScope(shield=True):
                            await anyio.to_thread.run_sync(dns.remove)
                        journal.dns(None)
        except Exception as exc:
            if iface is None or exc is not iface.failure:
                raise
        status = 0
        if not went_down:
            _notify(notify, "STOPPING=1")
            # The interface stopped on its own (its device deleted…), which cut the block
            # short: still run the hooks that undo PostUp's changes. Nothing to save.
            status = 1
            reason = iface.stop_reason or "stopped"
            failure = iface.failure
            if failure is None or isinstance(failure, DeviceGoneError):
                log.warning("%s stopped: %s", name, reason)
            else:  # a bug, most likely: keep its traceback
                log.error("%s stopped: %s", name, reason, exc_info=failure)
            if quick.save_config:
                log.warning("SaveConfig: %s not saved (the interface is gone)", quick.file)
            _run_hooks(hooks(quick.pre_down, name), "PreDown")
        stats = iface.statistics()
        if journal.path.exists():  # a rule or table the kernel would not let go (logged)
            log.warning(
                "%s: what is left is listed in %s; tunflow down %s", name, journal.path, name
            )
    _run_hooks(hooks(quick.post_down, name), "PostDown")
    t, w = stats.transport, stats.wireguard
    per_read = t.rx_datagrams / t.rx_syscalls if t.rx_syscalls else 0.0
    per_send = t.tx_datagrams / t.tx_syscalls if t.tx_syscalls else 0.0
    # the socket's drops by reason (refused sends, unreachable peers…), beside the protocol's
    udp = "".join(f", {k} {v}" for k, v in sorted(t.drops.items()))
    print(
        f"{name} down ({reason}): {w.rx_packets} messages in, {w.tx_packets} out; "
        f"{t.rx_datagrams} datagrams in {t.rx_syscalls} reads ({per_read:.1f} each), "
        f"{t.tx_datagrams} in {t.tx_syscalls} sends ({per_send:.1f} each); "
        f"{w.dropped} dropped" + (f"; UDP drops:{udp[1:]}" if udp else ""),
        flush=True,
    )
    return status


async def _save_config(quick: Any, iface: Any) -> str | None:
    """The running interface written back to its file, as wg-quick's ``save_config`` does
    (``SaveConfig = true`` on the way down, after ``PreDown``; ``tunflow save`` any time): the
    file is read again first, so what was edited in it since ``up`` (hooks, DNS, Table…) is
    kept, as wg-quick keeps it. A failure is logged and returned (the interface keeps running,
    or still goes down); a file that no longer parses is not overwritten."""
    from ..wireguard.protocol.uapi import device_info
    from ..wireguard.wgquick import load_wgquick, render_saved, save_wgquick

    if quick.file is None:
        return "the configuration was not read from a file"
    info = device_info(iface.wg)
    if info.private_key is None:
        # written as wg-quick writes it (what `wg showconf` prints: no PrivateKey line)
        log.warning(
            "%s is saved without a PrivateKey: the interface has none (it comes up from the "
            "file without one, making no handshake until one is set)",
            quick.file,
        )
    try:
        current = await anyio.to_thread.run_sync(load_wgquick, quick.file)
        text = render_saved(
            current,
            info,
            addresses=await iface.device.addresses(),
            mtu=await iface.device.mtu(),
            native=[key for key, peer in iface.wg.peers.items() if peer.native_mode],
        )
        await anyio.to_thread.run_sync(save_wgquick, quick.file, text)
    except (OSError, TunflowError) as exc:
        log.error("cannot save the configuration to %s: %s", quick.file, exc)
        return f"cannot save to {quick.file}: {exc}"
    log.info("saved the configuration to %s", quick.file)
    return None


def _saved_path(name: str) -> Path:
    """Where ``tunflow up`` answers a ``tunflow save`` (``<name>.saved``: ``ok FILE`` or
    ``error MESSAGE``)."""
    return Path(PID_DIRECTORY) / f"{name}.saved"


def _reloaded_path(name: str) -> Path:
    """Where ``tunflow up`` answers a ``tunflow reload`` (``<name>.reloaded``: ``ok TEXT`` or
    ``error MESSAGE``)."""
    return Path(PID_DIRECTORY) / f"{name}.reloaded"


def _answer(path: Path, answer: str, command: str) -> None:
    """Write ``answer`` to ``path`` whole (through a rename), for the waiting ``command``."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(answer + "\n")
        tmp.replace(path)
    except OSError as exc:
        log.warning("cannot answer '%s' in %s: %s", command, path, exc)


def _caught_and_dropped(signum: int, frame: object) -> None:
    """The handler of SIGUSR1 and SIGHUP once their receivers are gone (on the way down): their
    default action would end the process. A handler, not ``SIG_IGN``: an ignored signal stays
    ignored in the programs a process starts (PreDown and PostDown hooks; a shell cannot even
    reset it), a caught one is back to its default there."""


async def _answer_saves(
    quick: Any,
    iface: Any,
    name: str,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Save the running interface on each SIGUSR1 (what ``tunflow save`` sends)."""
    try:
        with anyio.open_signal_receiver(signal.SIGUSR1) as got:
            task_status.started()
            async for _ in got:
                error = await _save_config(quick, iface)
                if error:
                    answer = f"error {error}"
                else:  # absolute: `tunflow save` may run in another directory than `up`
                    answer = f"ok {await anyio.Path(quick.file).absolute()}"
                _answer(_saved_path(name), answer, "tunflow save")
    finally:
        # leaving the receiver restores SIGUSR1's default action, which ends the process: a
        # `tunflow save` during the way down must not
        signal.signal(signal.SIGUSR1, _caught_and_dropped)


async def _answer_reloads(
    quick: Any,
    iface: Any,
    name: str,
    native: bool,
    notify: str | None,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """On each SIGHUP (``systemctl reload``), read the file again and apply it to the running
    interface as ``wg syncconf`` would: keys, port, fwmark, peers; not addresses, MTU, DNS,
    ``Table``, hooks or ``SaveConfig`` — a change to those is logged as a warning and named in
    the answer (and answer a waiting ``tunflow reload``). A file that does not parse, or a change the
    interface refuses (see ``WireGuardInterface.sync``: another ``FwMark`` than a default
    route's policy rules use, say), changes nothing (logged).

    Unlike ``wg syncconf``, the routes then follow the new AllowedIPs as ``up`` added them
    (none with ``Table = off`` or ``--no-routes``; a default route under ``Table = auto`` with
    its policy rules, nftables table and fwmark); what changed is logged and in the answer, a
    route the kernel refused too (the peers stay applied)."""
    from ..wireguard.wgquick import load_wgquick

    try:
        with anyio.open_signal_receiver(signal.SIGHUP) as got:
            task_status.started()
            async for _ in got:
                _notify(notify, f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
                try:
                    if quick.file is None:
                        raise ConfigError("the configuration was not read from a file")
                    new = await anyio.to_thread.run_sync(load_wgquick, quick.file)
                    # endpoints may be names: resolved off the loop, in a thread the way down
                    # need not wait for
                    config = await in_daemon_thread(
                        functools.partial(new.interface_config, native=native)
                    )
                    changes = await iface.sync(
                        config,
                        listen_port=new.listen_port is not None,
                        fwmark=new.fwmark is not None,  # (FwMark = off clears it)
                        routes=True,
                    )
                    if config.private_key is None:
                        _warn_keyless(quick.file, name)  # (removed, as by wg syncconf)
                except (TunflowError, OSError) as exc:
                    log.error("reload refused, nothing changed: %s", exc)
                    status = f"reload refused: {exc}"
                    answer = f"error reload refused, nothing changed: {_one_line(str(exc))}"
                else:
                    # "2 peer(s); routes added 10.1.0.0/24" (refusals were logged as warnings)
                    done = f"{len(config.peers)} peer(s)"
                    if changes:
                        done += f"; {changes.describe()}"
                    kept = _not_reloaded(quick, new)
                    if kept:
                        log.warning(
                            "reload: %s changed in %s, which a reload does not apply: restart "
                            "the interface for them",
                            ", ".join(kept),
                            quick.file,
                        )
                        done += f"; not applied (restart for them): {', '.join(kept)}"
                    log.info("reloaded %s: %s", quick.file, done)
                    status = f"reloaded, {done}"
                    # whole (every route a reload added or removed): only STATUS= is cut
                    answer = f"ok {_one_line(done)}"
                _answer(_reloaded_path(name), answer, "tunflow reload")
                _notify(notify, f"READY=1\nSTATUS={_status(status)}")
    finally:
        # as for SIGUSR1: the default action of SIGHUP ends the process, on the way down too
        signal.signal(signal.SIGHUP, _caught_and_dropped)


def _warn_keyless(file: str | None, name: str) -> None:
    """Log that the interface has no private key from ``file`` (wg-quick takes such a file)."""
    log.warning(
        "%s has no PrivateKey: %s has no key, and makes no handshake until one is set "
        "(wg set %s private-key FILE)",
        file or "the configuration",
        name,
        name,
    )


def _not_reloaded(running: Any, new: Any) -> list[str]:
    """The settings of the file read again (``new``) that differ from those the interface came
    up with (``running``) and that a reload leaves as they are, by their names in the file."""
    return [
        key
        for key, attr in (
            ("Address", "addresses"),
            ("MTU", "mtu"),
            ("DNS", "dns"),
            ("Table", "table"),
            ("PreUp", "pre_up"),
            ("PostUp", "post_up"),
            ("PreDown", "pre_down"),
            ("PostDown", "post_down"),
            ("SaveConfig", "save_config"),
        )
        if getattr(running, attr) != getattr(new, attr)
    ]


class _PidFile:
    """``/run/tunflow/<name>.pid``, locked (``flock``) while ``tunflow up`` serves ``name``: the
    lock, not the pid (which the kernel reuses), says whether it runs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = _pid_path(name)
        self._fd = -1

    def __enter__(self) -> _PidFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = _locked_file(self.path, 0o644, timeout=0)
        if fd is None:
            pid = _read_pid(self.path) or "starting"
            raise ConfigError(
                f"{self.name} is up already (pid {pid}); tunflow down {self.name} first"
            )
        os.ftruncate(fd, 0)
        self._fd = fd
        return self

    def publish(self) -> None:
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()  # ours: we hold its lock
        for answer in (_saved_path(self.name), _reloaded_path(self.name)):
            with contextlib.suppress(OSError):
                answer.unlink()
        os.close(self._fd)


def _read_pid(path: Path) -> int:
    """The pid in the pid file at ``path``; 0 when there is none (not written yet) or it is
    not a pid. Only a positive number is one: ``os.kill`` takes 0 and -1 (which ``int``
    reads, as it reads ``+5``) for a process group and for every process there is — ``tunflow
    down`` of a damaged file would have sent SIGTERM to all of them."""
    try:
        text = path.read_text().split()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return 0
    # (and one that fits a pid_t: os.kill raises OverflowError past it)
    return int(text) if is_decimal(text) and int(text) <= 0x7FFFFFFF else 0


def _running_pid(name: str) -> int:
    """The pid of the ``tunflow up`` serving ``name`` (its pid file is locked), or 0."""
    return _lock_holder(name) or 0


def _lock_holder(name: str) -> int | None:
    """Who holds ``name``'s pid file: the pid of the ``tunflow up`` serving it; 0 while one
    is starting (locked, its pid not written until it is up); ``None`` when nobody does."""
    try:
        fd = os.open(_pid_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not _try_flock(fd, shared=True):
            return _read_pid(_pid_path(name))  # 0 until it publishes its pid
    finally:
        os.close(fd)
    return None  # nobody holds it: left by a killed process


# -- what `up` changed outside the device -------------------------------------------------------


def _undo_path(name: str) -> Path:
    """Where ``tunflow up`` records what it changed outside its device (``<name>.undo``)."""
    return Path(PID_DIRECTORY) / f"{name}.undo"


def _netns_identity() -> tuple[int, int]:
    """This process's network namespace, as ``(st_dev, st_ino)`` of ``/proc/self/ns/net``."""
    st = os.stat("/proc/self/ns/net")
    return st.st_dev, st.st_ino


def _netns_label(identity: tuple[int, int]) -> str:
    """``network namespace crA`` for a namespace ``ip netns`` named, else its inode."""
    with contextlib.suppress(OSError):
        st = os.stat("/proc/1/ns/net")
        if (st.st_dev, st.st_ino) == identity:
            return "the initial network namespace"
    with contextlib.suppress(OSError):
        for entry in os.scandir("/run/netns"):
            with contextlib.suppress(OSError):
                st = os.stat(entry.path)
                if (st.st_dev, st.st_ino) == identity:
                    return f"network namespace {entry.name}"
    return f"network namespace net:[{identity[1]}]"


class _Journal:
    """``/run/tunflow/<name>.undo``: what the ``tunflow up`` serving ``name`` changed outside its
    device — policy rules, nftables tables, the resolvconf record — which, unlike the device and
    its routes, stays when the process is killed (SIGKILL, the OOM killer, a crash). Rewritten
    whole (a temporary file renamed over it) as they are made and removed, so that a reader
    never sees half of it; gone once nothing is left. A later ``down`` or ``up`` of the name
    undoes what it lists (:func:`_undo_leftovers`).

    JSON: ``version`` (1), ``pid``, ``netns`` (``dev``, ``ino``: /run/tunflow is shared by every
    network namespace, what it lists is not), ``routes``
    (:meth:`~tunflow.wireguard._routing.RoutingRecord.to_json`), ``dns``
    (:attr:`~tunflow.wireguard._dns.ResolvConf.journal`, or ``null``).
    """

    def __init__(
        self, name: str, *, pid: int | None = None, netns: tuple[int, int] | None = None
    ) -> None:
        from ..wireguard._routing import RoutingRecord

        self.name = name
        self.path = _undo_path(name)
        self._pid = os.getpid() if pid is None else pid
        self._netns = _netns_identity() if netns is None else netns
        self._routes = RoutingRecord()
        self._dns: dict[str, str] | None = None
        # Routes reports from worker threads
        self._lock = threading.Lock()

    def routes(self, record: RoutingRecord) -> None:
        """What the interface's :class:`~tunflow.wireguard._routing.Routes` holds now."""
        with self._lock:
            self._routes = record
            self._write()

    def dns(self, entry: dict[str, str] | None) -> None:
        """The resolvconf record about to be made (``None``: removed)."""
        with self._lock:
            self._dns = entry
            self._write()

    def rewrite(self, routes: RoutingRecord, dns: dict[str, str] | None) -> None:
        """Both at once (what is left after an undo)."""
        with self._lock:
            self._routes, self._dns = routes, dns
            self._write()

    def _write(self) -> None:
        try:
            if not self._routes and self._dns is None:
                self.path.unlink(missing_ok=True)
                return
            dev, ino = self._netns
            data = {
                "version": 1,
                "pid": self._pid,
                "netns": {"dev": dev, "ino": ino},
                "routes": self._routes.to_json(),
                "dns": self._dns,
            }
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=1) + "\n")
            tmp.replace(self.path)
        except OSError as exc:
            # the interface works without it; only a crash would then leave things unlisted
            log.warning(
                "%s: cannot record what to undo after a crash in %s: %s", self.name, self.path, exc
            )


class _Leftovers(NamedTuple):
    """A journal read back."""

    pid: int
    netns: tuple[int, int]
    routes: RoutingRecord
    dns: tuple[str, str] | None  # (program, record)


def _read_journal(path: Path) -> _Leftovers | None:
    """The journal at ``path``; ``None`` without one.

    Raises:
        ConfigError: it cannot be read or does not parse: nothing in it is trusted, and it is
            left where it is for whoever looks.
    """
    from ..wireguard._dns import parse_record
    from ..wireguard._routing import RoutingRecord

    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("not a tunflow journal, version 1")
        pid, netns = data["pid"], data["netns"]
        if not isinstance(pid, int) or not isinstance(netns, dict):
            raise ValueError("no pid or netns")
        dev, ino = netns["dev"], netns["ino"]
        if not isinstance(dev, int) or not isinstance(ino, int):
            raise ValueError(f"netns is not dev and ino: {netns!r}")
        routes = RoutingRecord.from_json(data["routes"])
        dns = None if data["dns"] is None else parse_record(data["dns"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path} (what a killed tunflow up left to undo) does not parse: {exc}; nothing "
            "was undone: remove what it lists by hand (ip rule del, nft delete table, "
            "resolvconf -d), then the file"
        ) from None
    return _Leftovers(pid, (dev, ino), routes, dns)


def _undo_leftovers(name: str) -> str | None:
    """Undo the journal a killed ``tunflow up`` of ``name`` left; what was removed, for a
    message (``None``: there was none). The caller holds the pid file's lock: no live ``up``
    owns the journal. PreDown/PostDown are not run: they belong to a live interface.

    Raises:
        ConfigError: the journal does not parse, belongs to another network namespace, or
            lists what could not be removed (then it lists only that, for another try).
    """
    from ..wireguard._dns import remove_record
    from ..wireguard._routing import remove_recorded

    path = _undo_path(name)
    leftovers = _read_journal(path)
    if leftovers is None:
        return None
    here = _netns_identity()
    if leftovers.netns != here:
        raise ConfigError(
            f"{path} lists what a killed tunflow up of {name} left in "
            f"{_netns_label(leftovers.netns)}, not in this one ({_netns_label(here)}): run "
            f"tunflow down {name} there; if that namespace is gone, so is what it lists: "
            f"remove {path}"
        )
    if _link_stays(name):
        # the killed one's TUN went with it: this is another tool's (wg-quick's, say), whose
        # nftables table (wg-quick-<name>) and resolvconf record have the same names as the
        # ones listed, and whose rules may be equal to them
        raise ConfigError(
            f"{path} lists what a killed tunflow up of {name} left, but an interface {name} is "
            f"here now that no tunflow up serves (another tool's): the nftables table and DNS "
            f"record it lists may be that one's; nothing was undone: take {name} down with the "
            f"tool that made it, then tunflow down {name} (or remove {path})"
        )
    done, left = remove_recorded(leftovers.routes, name=name)
    removed = []
    if done.rules:
        removed.append(f"{len(done.rules)} policy rule{'s' if len(done.rules) > 1 else ''}")
    if done.nft_tables:
        removed.append(f"nftables {' and '.join(done.nft_tables)}")
    dns = leftovers.dns
    if dns is not None:
        try:
            remove_record(*dns)
        except ConfigError as exc:
            log.warning("%s: %s", name, exc)
        else:
            removed.append(f"resolvconf record {dns[1]}")
            dns = None
    if left or dns is not None:
        # what is left stays listed (it only lists that now), for `tunflow down` to retry
        journal = _Journal(name, pid=leftovers.pid, netns=leftovers.netns)
        journal.rewrite(left, None if dns is None else {"program": dns[0], "record": dns[1]})
        still = left.describe() + ([f"resolvconf record {dns[1]}"] if dns else [])
        raise ConfigError(
            f"{name}: cannot remove what a killed tunflow up (pid {leftovers.pid}) left: "
            f"{', '.join(still)} (listed in {path}; tunflow down {name} tries again)"
        )
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".tmp").unlink(missing_ok=True)  # a rename a kill cut short
    if not removed:
        removed.append(f"nothing (what {path} listed was gone already)")
    return (
        f"{name}: the tunflow up that served it (pid {leftovers.pid}) is gone; removed what it "
        f"left: {', '.join(removed)}"
    )


def _link_stays(name: str, timeout: float = 2.0) -> bool:
    """Whether a link called ``name`` is in this network namespace and stays there for
    ``timeout`` seconds (a killed process's TUN may still be going while it exits)."""

    def gone() -> bool:
        try:
            socket.if_nametoindex(name)
        except OSError:
            return True
        return False

    return not _wait_for(gone, timeout)


def _wait_for(done: Callable[[], bool], timeout: float) -> bool:
    """Poll ``done`` until true (``True``) or ``timeout`` seconds pass (``False``)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _logging(args: argparse.Namespace) -> None:
    _log_to_stderr(
        logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    )


def _log_to_stderr(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tunflow: %(message)s"))
    root = logging.getLogger("tunflow")
    root.addHandler(handler)
    root.setLevel(level)


#: how long ``up --daemon`` waits for another one's start to finish (which takes at most 15 s)
_DAEMON_START_WAIT = 20.0


def _try_flock(fd: int, *, shared: bool = False) -> bool:
    """Take a ``flock`` on ``fd`` — exclusive, or ``shared`` — if nobody holds one that stands
    in the way; whether it was taken."""
    import fcntl  # here: the `tunflow` command also runs where there is none (Windows)

    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _locked_file(path: Path, mode: int, timeout: float) -> int | None:
    """A descriptor of the file at ``path`` (made with ``mode`` when missing) holding its
    exclusive ``flock``, waited for up to ``timeout`` seconds (0: tried once); ``None`` when
    another holds it all that time.

    The holder removes the file when done (a pid file, a turn's lock file), so the file a
    waiter opened may be gone — or another made in its place — by the time it gets the lock:
    it tries again on the file there now, never holding one nobody else can find.

    Raises:
        OSError: the file cannot be opened or made.
    """
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
        if not _wait_for(functools.partial(_try_flock, fd), deadline - time.monotonic()):
            os.close(fd)
            return None
        try:
            there = os.stat(path)
        except FileNotFoundError:
            there = None
        mine = os.fstat(fd)
        if there is not None and (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
            return fd
        os.close(fd)


@contextlib.contextmanager
def _starting_alone(directory: Path, name: str) -> Iterator[None]:
    """Serialise ``tunflow up --daemon``: an exclusive ``flock`` on ``directory`` (``/run/tunflow``)
    for the whole start, then a check that no ``tunflow up`` of ``name`` is starting or running.
    Another ``--daemon`` of the name started at the same time waits here, then finds this one
    running and is refused — before it moves this one's live log aside as the last run's.

    Raises:
        ConfigError: a ``tunflow up`` of ``name`` is starting or running.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # another start holds it for at most its 15 s (bounded here too: one stopped with
        # SIGSTOP must not hang every later start)
        if not _wait_for(lambda: _try_flock(fd), _DAEMON_START_WAIT):
            raise ConfigError(
                f"another tunflow up --daemon has been starting for {_DAEMON_START_WAIT:.0f} s; "
                "try again"
            )
        holder = _lock_holder(name)
        if holder is not None:
            state = f"pid {holder}" if holder else "starting"
            raise ConfigError(f"{name} is up already ({state}); tunflow down {name} first")
        yield
    finally:
        os.close(fd)  # (the lock goes with it)


def _daemonize(args: argparse.Namespace, name: str) -> int:
    """Run ``tunflow up`` again in a new session; return once it says ``READY=1`` on a notify
    socket of ours (as it would to systemd), or with its status if it fails first. It runs
    this tunflow: ``-P`` keeps the working directory off its ``sys.path`` (a ``tunflow``
    package or a module of a stdlib name there would run as root instead)."""
    from .._child import child_environment

    argv = [sys.executable, "-P", "-m", "tunflow.cli", "up", "--name", name]
    for flag in ("native", "no_routes", "quiet", "verbose"):
        if getattr(args, flag):
            argv.append("--" + flag.replace("_", "-"))
    # the file last, after "--": a name that starts with "-" is a file, not an option
    argv += ["--offload", args.offload, "--backend", args.backend, "--", args.config]
    log_path = Path(PID_DIRECTORY) / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        _starting_alone(log_path.parent, name),
        # 0700: only we may send; under /run/tunflow, not $TMPDIR: the path must fit a
        # sockaddr_un (108 bytes), which a long $TMPDIR would not
        tempfile.TemporaryDirectory(prefix=f"{name}.notify-", dir=log_path.parent) as where,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as ready,
    ):
        address = os.path.join(where, "notify")
        ready.bind(address)  # a path, not an abstract name: those are per network namespace
        ready.settimeout(0.05)
        with contextlib.suppress(FileNotFoundError):
            # the last run's log, kept: after a crash it is what tells why (a restart would
            # write over it)
            log_path.replace(log_path.with_name(log_path.name + ".1"))
        with open(log_path, "wb") as out:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                env={**child_environment(), "NOTIFY_SOCKET": address},
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                message = ready.recv(4096)
            except TimeoutError:
                message = b""
            if b"READY=1" in message.split(b"\n"):
                print(f"{name} up in the background (pid {child.pid}, log {log_path})")
                return 0
            if child.poll() is not None:
                print(f"tunflow: {name} failed to come up:", file=sys.stderr)
                sys.stderr.write(log_path.read_text(errors="replace"))
                # its own status (2 for a bad file or hook); killed by a signal, the shell's
                # 128 + the signal (a negative returncode would exit 256 - the signal)
                code = child.returncode
                return 128 - code if code < 0 else code or 1
    print(f"tunflow: {name} did not come up within 15 s (see {log_path})", file=sys.stderr)
    child.terminate()
    return 1


@command(
    "up", "bring a WireGuard interface up from a wg-quick file (runs in the foreground)", _up_args
)
def up(args: argparse.Namespace) -> int:
    """``tunflow up FILE``."""
    from ..wireguard.wgquick import load_wgquick

    try:
        path = _config_path(args.config)
        name = _check_name(args.name) if args.name else _interface_name(args.config)
        quick = load_wgquick(path)
        _warn_if_world_accessible(path)
        running = _running_pid(name)  # checked again, under a lock, when it starts
        if running:
            raise ConfigError(f"{name} is up already (pid {running}); tunflow down {name} first")
        if args.daemon:
            return _daemonize(args, name)
        _logging(args)
        # Ctrl-C takes the interface down however `up` was started: a shell's background job
        # inherits SIGINT ignored, which Python leaves so — heard by _serve's receiver from
        # the start, and before it (nothing made yet) as KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.default_int_handler)
        backend, options = anyio_backend(args.backend)
        status: int = anyio.run(_serve, args, quick, name, backend=backend, backend_options=options)
        return status
    except (TunflowError, OSError) as exc:
        return _error(exc)
    except ExceptionGroup as group:  # raised in a task group's block (a PostUp that failed…)
        leaf = _only(group, (TunflowError, OSError))
        if leaf is None:
            raise
        return _error(leaf)


def _only(group: ExceptionGroup[Any], kinds: tuple[type[Exception], ...]) -> Exception | None:
    """The first exception of ``group`` if all of them are of ``kinds``, else ``None``."""
    matched, rest = group.split(kinds)
    if matched is None or rest is not None:
        return None
    exc: Exception = matched
    while isinstance(exc, ExceptionGroup):
        exc = exc.exceptions[0]
    return exc


# -- down ---------------------------------------------------------------------------------------


def _seconds(text: str) -> float:
    """``--timeout``'s value: seconds, 0 or more (``inf``: wait for ever).

    Raises:
        argparse.ArgumentTypeError: not a number of seconds — ``nan`` included, which no
            deadline is ever past (the wait would never end), and a negative one.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # (NaN compares false)
        raise argparse.ArgumentTypeError(f"not a number of seconds, 0 or more: {text!r}")
    return value


def _down_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", help="the interface (wg0) or its file (wg0.conf)")
    p.add_argument(
        "--timeout", type=_seconds, default=10.0, help="seconds to wait (default 10; inf: no limit)"
    )


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@command("down", "take an interface brought up by 'tunflow up' down", _down_args)
def down(args: argparse.Namespace) -> int:
    """``tunflow down NAME``: SIGTERM to the process running it, then wait until it is gone.
    One still starting (PreUp, PostUp, routes: its pid not written yet) is waited for first,
    up to ``--timeout``, so it goes down in order too; one still starting after that is left
    alone (status 1).

    When the ``tunflow up`` that served it was killed (no process holds its pid file) and left
    a journal of what it changed outside the device (policy rules, nftables tables, DNS), that
    is undone instead, with the stale pid file and control socket; PreDown and PostDown are not
    run (they belong to a live interface). One that left no journal (nothing outside its device)
    and no link has its stale pid file and control socket removed the same way.

    Without a pid file (another tool started it), a WireGuard interface — the kernel's, or a
    TUN with a control socket (wireguard-go's) — is deleted, which stops a process serving it;
    any other link is refused, as wg-quick refuses it.
    """
    try:
        name = _interface_name(args.name)
        # an `up` is starting (its hooks, its routes…): stopped in order once it is up, not
        # its half-made link deleted under it — nor after the wait, when it still is (a slow
        # PostUp): it is not another tool's link
        if _lock_holder(name) == 0 and not _wait_for(lambda: _lock_holder(name) != 0, args.timeout):
            print(
                f"tunflow: {name} is still starting after {args.timeout:g} s (PreUp, "
                "PostUp, routes…): try again once it is up, or with a longer --timeout",
                file=sys.stderr,
            )
            return 1
        pid = _running_pid(name)
        if pid:
            with contextlib.suppress(ProcessLookupError):  # gone meanwhile: done
                os.kill(pid, signal.SIGTERM)
        elif _undo_path(name).exists():
            return _down_killed(name)
    except (TunflowError, OSError) as exc:  # not root: EPERM, EACCES on /run/tunflow
        return _error(exc)
    if pid:
        if not _wait_for(lambda: not _alive(pid), args.timeout):
            print(f"tunflow: {name} (pid {pid}) did not stop", file=sys.stderr)
            return 1
        return 0
    # not ours (or its pid file is gone): deleting the link stops whoever serves it — a
    # WireGuard link only, never eth0 or a veth
    from ..wireguard import UAPI_DIRECTORY

    try:
        shown = _ip("-j", "-d", "link", "show", "dev", name)
    except FileNotFoundError:
        print(f"tunflow: cannot look for {name}: no 'ip' command (iproute2)", file=sys.stderr)
        return 1
    if shown.returncode:
        sock = Path(UAPI_DIRECTORY, f"{name}.sock")
        if _answers(sock):  # served, but the link is not here: another namespace's
            print(
                f"tunflow: no interface {name} in this network namespace, but {sock} is "
                f"served: run 'tunflow down {name}' in the namespace it is in "
                f"(ip netns exec NS …)",
                file=sys.stderr,
            )
        elif _pid_path(name).exists():
            # a killed `up` that left nothing outside its device: its pid file and socket
            return _down_killed(name)
        else:
            print(f"tunflow: no interface {name} to take down", file=sys.stderr)
        return 1
    if not _down_deletes(name, _link_kind(shown.stdout)):
        print(f"tunflow: {name} is not a WireGuard interface", file=sys.stderr)
        return 1
    done = _ip("link", "del", name)
    if done.returncode:
        # ip's own reason: "Operation not permitted" (not root) is not "no such interface"
        why = _one_line(done.stderr.strip()) or f"ip exited {done.returncode}"
        hint = (
            " (not running as root: run it with sudo)"
            if os.geteuid() and "not permitted" in why
            else ""
        )
        print(f"tunflow: cannot delete {name}: {why}{hint}", file=sys.stderr)
        return 1
    return 0


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    """``ip ARGS``, its output captured.

    Raises:
        FileNotFoundError: there is no ``ip`` command.
    """
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def _down_killed(name: str) -> int:
    """``tunflow down NAME`` after the ``tunflow up`` serving it was killed: undo its journal,
    remove its stale pid file and control socket; one line says what went."""
    from ..wireguard import UAPI_DIRECTORY
    from ..wireguard.runtime import _remove_if_stale

    _log_to_stderr(logging.WARNING)  # why a rule could not be removed
    stale_pid = _pid_path(name).exists()
    with contextlib.ExitStack() as stack:
        try:
            # locked, as `up` locks it: no `up` of the name starts while this runs
            stack.enter_context(_PidFile(name))
        except ConfigError:
            # an `up` starting (its pid not written yet) holds it, or another `down`
            print(f"tunflow: {name} is being started or cleaned up; try again", file=sys.stderr)
            return 1
        try:
            undone = _undo_leftovers(name)
        except (ConfigError, OSError) as exc:
            print(f"tunflow: {exc}", file=sys.stderr)
            return 1
    gone = ["the stale pid file"] if stale_pid else []
    sock = Path(UAPI_DIRECTORY, f"{name}.sock")
    # not one a live process serves (another's), nor a file that is no socket at all
    if _remove_if_stale(sock):
        gone.append(f"the control socket {sock}")
    # no journal (an `up` undid it meanwhile): the pid file and socket were all there was
    text = undone or f"{name}: no tunflow up serves it; removed {', '.join(gone) or 'nothing'}"
    if undone and gone:
        text += ", " + ", ".join(gone)
    print(f"{text} (PreDown and PostDown not run: they belong to a live interface)")
    return 0


def _answers(path: Path) -> bool:
    """Whether a process listens on the UNIX socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def _down_deletes(name: str, kind: str) -> bool:
    """Whether ``tunflow down`` deletes the link ``name`` of ``kind`` when no ``tunflow up``
    serves it: a WireGuard link — the kernel's, or a TUN with a control socket (wireguard-go's)
    — never a veth, a bridge or eth0."""
    from ..wireguard import UAPI_DIRECTORY

    return kind == "wireguard" or (kind == "tun" and Path(UAPI_DIRECTORY, f"{name}.sock").exists())


def _link_kind(shown: str) -> str:
    """The ``info_kind`` (``tun``, ``wireguard``, ``veth``…) in ``ip -j -d link show``'s output;
    ``""`` for a device without one (``eth0``)."""
    try:
        kind = json.loads(shown)[0].get("linkinfo", {}).get("info_kind", "")
    except (ValueError, IndexError, AttributeError):
        return ""
    return kind if isinstance(kind, str) else ""


# -- save ---------------------------------------------------------------------------------------


@command(
    "save",
    "write a running interface's configuration to its file now (as 'wg-quick save')",
    _down_args,
)
def save(args: argparse.Namespace) -> int:
    """``tunflow save NAME``: the ``tunflow up`` serving ``NAME`` writes the interface as it
    runs — addresses, peers added or changed with ``wg set``, endpoints as last seen — back to
    the file it was started from (as ``SaveConfig = true`` does on the way down)."""
    status, name, text = _ask(args, signal.SIGUSR1, _saved_path)
    if status == 0:
        print(f"{name} saved to {text}")
    return status


@command(
    "reload",
    "apply a running interface's edited file now, as 'wg syncconf' would (what SIGHUP does)",
    _down_args,
)
def reload(args: argparse.Namespace) -> int:
    """``tunflow reload NAME``: SIGHUP to the ``tunflow up`` serving ``NAME``, which reads its
    file again and applies keys and peers (sessions kept), then says how it went."""
    status, name, text = _ask(args, signal.SIGHUP, _reloaded_path)
    if status == 0:
        print(f"{name} reloaded: {text}")
    return status


def _ask(
    args: argparse.Namespace, sig: signal.Signals, answer_path: Callable[[str], Path]
) -> tuple[int, str, str]:
    """Send ``sig`` to the ``tunflow up`` serving ``args.name`` and wait for its answer in
    ``answer_path(name)``: ``(0, name, text)`` for ``ok TEXT``; otherwise the error is printed
    and the status is 1 (2 for a bad name)."""
    try:
        name = _interface_name(args.name)
    except ConfigError as exc:
        return _error(exc), "", ""
    pid = _running_pid(name)
    if not pid:
        print(f"tunflow: {name} is not up (no 'tunflow up' serves it)", file=sys.stderr)
        return 1, name, ""
    answer = answer_path(name)
    deadline = time.monotonic() + args.timeout
    # one asker of a kind at a time: two share the answer file, and their signals, sent
    # together, are one for the kernel — one took the other's answer, which "did not answer"
    try:
        turn = _take_turn(answer.with_name(answer.name + ".lock"), args.timeout)
    except OSError as exc:  # not root: the lock is made in root's /run/tunflow (EACCES)
        return _error(exc), name, ""
    what = "save" if sig == signal.SIGUSR1 else "reload"
    if turn is None:
        print(
            f"tunflow: {name}: another tunflow {what} still waits for its answer",
            file=sys.stderr,
        )
        return 1, name, ""
    try:
        answer.unlink(missing_ok=True)
        try:
            os.kill(pid, sig)
        except OSError as exc:
            print(f"tunflow: {name} (pid {pid}): {exc.strerror}", file=sys.stderr)
            return 1, name, ""
        _wait_for(lambda: answer.exists() or not _alive(pid), deadline - time.monotonic())
        try:
            got = answer.read_text()
        except FileNotFoundError:
            print(f"tunflow: {name} (pid {pid}) did not answer", file=sys.stderr)
            return 1, name, ""
        answer.unlink(missing_ok=True)
    finally:
        _end_turn(turn)
    status, _, text = got.strip().partition(" ")
    if status != "ok":
        print(f"tunflow: {name}: {text}", file=sys.stderr)
        return 1, name, text
    return 0, name, text


def _take_turn(path: Path, timeout: float) -> tuple[int, Path] | None:
    """An exclusive ``flock`` on the file ``path`` (made for it), waited for up to
    ``timeout`` seconds; ``None`` if not taken. :func:`_end_turn` removes the file and lets go.

    Raises:
        OSError: the file cannot be made (``PermissionError`` for a user in root's
            ``/run/tunflow``).
    """
    fd = _locked_file(path, 0o600, timeout)
    return None if fd is None else (fd, path)


def _end_turn(turn: tuple[int, Path]) -> None:
    """Let go of what :func:`_take_turn` took (the file is removed first, while held)."""
    fd, path = turn
    path.unlink(missing_ok=True)
    os.close(fd)


# -- show ---------------------------------------------------------------------------------------


def _show_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", nargs="?", help="the interface (default: all)")


def _uapi_get(path: Path) -> str:
    """The answer to ``get=1`` on the control socket at ``path``.

    Raises:
        OSError: no socket there, nobody listening, no answer within 5 s.
        UapiError: the answer is not text or ends before its blank line (whatever listens
            there does not speak UAPI).
    """
    from ..wireguard.protocol import UapiError

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(b"get=1\n\n")
        data = bytearray()
        while not data.endswith(b"\n\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data.endswith(b"\n\n"):
        raise UapiError("the control socket closed before its answer ended")
    try:
        # the protocol is ASCII; anything else is not a WireGuard control socket
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise UapiError("the control socket's answer is not UAPI text") from None


def _ago(seconds: float) -> str:
    """``wg show``'s ``ago()``: each unit that is not 0 (years of 365 days down to seconds),
    ``Now`` within the second."""
    s = int(seconds)
    if s <= 0:
        return "Now"
    parts: list[str] = []
    for unit, size in (("year", 31_536_000), ("day", 86400), ("hour", 3600), ("minute", 60)):
        n, s = divmod(s, size)
        if n:
            parts.append(f"{n} {unit}{'s' if n != 1 else ''}")
    if s:
        parts.append(f"{s} second{'s' if s != 1 else ''}")
    return ", ".join(parts) + " ago"


def _bytes(n: int) -> str:
    """``wg show``'s ``bytes()``: B below 1024, then KiB, MiB, GiB and TiB."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


@command("show", "show interfaces as 'wg show' does (through their control sockets)", _show_args)
def show(args: argparse.Namespace) -> int:
    """``tunflow show [NAME]``: a small ``wg show`` for machines without wireguard-tools."""
    from ..wireguard import UAPI_DIRECTORY
    from ..wireguard.protocol import parse_get
    from ..wireguard.protocol.config import format_endpoint
    from ..wireguard.runtime import _remove_if_stale, _socket_state

    if (closed := _stdout_closed()) is not None:
        return closed
    directory = Path(UAPI_DIRECTORY)
    if args.name:
        try:
            names = [_check_name(args.name)]  # not a path: "../x" would reach other sockets
        except ConfigError as exc:
            return _error(exc)
    else:
        names = sorted(p.stem for p in directory.glob("*.sock"))
    status = 0
    shown = False
    for name in names:
        path = directory / f"{name}.sock"
        try:
            info = parse_get(_uapi_get(path))
        except ConnectionRefusedError:
            # nobody listens: what a killed process left; wg removes such a socket and lists
            # no interface for it. Connecting to a file that is no socket is refused too: wg
            # leaves that one alone, and lists nothing for it either
            if _socket_state(path) == "not a socket":
                if args.name:
                    print(f"tunflow: {name}: {path} is not a control socket", file=sys.stderr)
                    status = 1
                continue
            _remove_if_stale(path)
            if args.name:
                print(
                    f"tunflow: {name}: no such interface (a stale control socket, removed)",
                    file=sys.stderr,
                )
                status = 1
            continue
        except FileNotFoundError:
            # only a name asked for (the listing comes from the directory): not up, or not
            # tunflow's
            print(
                f"tunflow: {name}: no such interface (no control socket at {path})", file=sys.stderr
            )
            status = 1
            continue
        except PermissionError as exc:
            # the socket is root's (mode 0600), as wg's are: as _error says for down
            hint = " (not running as root: run it with sudo)" if os.geteuid() else ""
            print(f"tunflow: {name}: {exc.strerror or exc}: {path}{hint}", file=sys.stderr)
            status = 1
            continue
        except (OSError, TunflowError) as exc:
            print(f"tunflow: {name}: {exc}", file=sys.stderr)
            status = 1
            continue
        if shown:
            print()  # between entries: not before the first shown, whatever was skipped
        shown = True
        print(f"interface: {name}")
        if info.private_key is not None:
            print(f"  public key: {info.private_key.public_key().to_base64()}")
            print("  private key: (hidden)")
        if info.listen_port:
            print(f"  listening port: {info.listen_port}")
        now = time.time()
        for peer in info.peers:
            print(f"\npeer: {peer.public_key.to_base64()}")
            if peer.endpoint is not None:
                print(f"  endpoint: {format_endpoint(peer.endpoint)}")
            print(f"  allowed ips: {', '.join(map(str, peer.allowed_ips)) or '(none)'}")
            if peer.last_handshake_time_sec:
                seen = peer.last_handshake_time_sec + peer.last_handshake_time_nsec / 1e9
                print(f"  latest handshake: {_ago(max(0.0, now - seen))}")
            if peer.rx_bytes or peer.tx_bytes:
                print(f"  transfer: {_bytes(peer.rx_bytes)} received, {_bytes(peer.tx_bytes)} sent")
            if peer.persistent_keepalive_interval:
                every = peer.persistent_keepalive_interval
                print(f"  persistent keepalive: every {every} seconds")
    return status


# -- strip --------------------------------------------------------------------------------------


def _strip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config", metavar="FILE", help="a wg-quick file, or a name: /etc/wireguard/NAME.conf"
    )


@command(
    "strip",
    "print a wg-quick file without its wg-quick-only keys, for 'wg syncconf' (as 'wg-quick strip')",
    _strip_args,
)
def strip(args: argparse.Namespace) -> int:
    """``tunflow strip FILE``: ``wg syncconf wg0 <(tunflow strip wg0)`` reloads the peers of a
    running interface without taking it down."""
    from ..wireguard.wgquick import strip_wgquick

    if (closed := _stdout_closed()) is not None:
        return closed
    path = _config_path(args.config)
    try:
        if path.stem == args.config:  # a bare name: an interface's
            _check_name(args.config)
        text = path.read_text(encoding="utf-8")
        _warn_if_world_accessible(path)
        sys.stdout.write(strip_wgquick(text, file=str(path)))
    except OSError as exc:
        return _error(ConfigError(f"cannot read the file: {exc.strerror or exc}", file=str(path)))
    except UnicodeDecodeError:
        return _error(ConfigError("not a UTF-8 text file", file=str(path)))
    except TunflowError as exc:
        return _error(exc)
    return 0


# -- keys ---------------------------------------------------------------------------------------


def _no_args(p: argparse.ArgumentParser) -> None:
    pass


def _warn_if_stdout_world_accessible() -> None:
    """wg genkey's and genpsk's warning: the key goes to a regular file others may read (the
    shell opened it with its umask; nothing done here changes its mode)."""
    try:
        st = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):
        return
    if stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_IRWXO:
        sys.stderr.write(
            "Warning: writing to world accessible file.\n"
            "Consider setting the umask to 077 and trying again.\n"
        )


@command("genkey", "print a new private key (as 'wg genkey')", _no_args)
def genkey(args: argparse.Namespace) -> int:
    """``tunflow genkey``."""
    from ..wireguard import genkey as new_key

    if (closed := _stdout_closed()) is not None:
        return closed
    _warn_if_stdout_world_accessible()
    print(new_key())
    return 0


#: What ``tunflow pubkey`` reads of its input at most (a key is 44 characters; ``wg pubkey``
#: reads blanks after it without end, but nothing else).
_PUBKEY_INPUT_LIMIT = 4096


@command("pubkey", "read a private key on stdin, print its public key (as 'wg pubkey')", _no_args)
def pubkey(args: argparse.Namespace) -> int:
    """``tunflow pubkey``: input longer than 4 KiB is refused (status 2) as soon as the
    4097th byte is read — the rest is not waited for; standard input closed is status 1."""
    from ..wireguard import pubkey as public

    if (closed := _stdout_closed()) is not None:
        return closed
    if sys.stdin is None:  # (``tunflow pubkey <&-``: Python makes it None)
        print("tunflow: standard input is closed: no private key to read", file=sys.stderr)
        return 1
    try:
        # bytes: the key is ASCII whatever the locale; anything else is a bad key, not a
        # decoding traceback
        data = sys.stdin.buffer.read(_PUBKEY_INPUT_LIMIT + 1)
        if len(data) > _PUBKEY_INPUT_LIMIT:
            raise ConfigError(
                f"not a private key: more than {_PUBKEY_INPUT_LIMIT} bytes of input "
                "(a key is 44 characters)"
            )
        print(public(data.strip()))
    except TunflowError as exc:
        return _error(exc)
    return 0


@command("genpsk", "print a new preshared key (as 'wg genpsk')", _no_args)
def genpsk(args: argparse.Namespace) -> int:
    """``tunflow genpsk``."""
    from ..wireguard import genpsk as new_psk

    if (closed := _stdout_closed()) is not None:
        return closed
    _warn_if_stdout_world_accessible()
    print(new_psk())
    return 0
