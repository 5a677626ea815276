"""``DNS =`` from a wg-quick file, applied as wg-quick(8) applies it: through ``resolvconf``.

wg-quick pipes ``nameserver``/``search`` lines to ``resolvconf -a <prefix><interface> -m 0
-x`` once the interface is up, and runs ``resolvconf -d <prefix><interface> -f`` when it goes
down; the prefix comes from the first ``name*`` line of ``/etc/resolvconf/interface-order``
(Debian's resolvconf), none otherwise (openresolv). tunflow does the same, so a system that
works with wg-quick works with ``tunflow up``. Without ``resolvconf`` the interface does not
come up (as with wg-quick): silently running without the file's DNS servers would send name
lookups around the tunnel.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError

__all__ = [
    "resolvconf_input",
    "interface_prefix",
    "ResolvConf",
    "resolv_conf",
    "parse_record",
    "remove_record",
]

#: Where Debian's resolvconf lists interface name patterns in order of preference.
INTERFACE_ORDER = Path("/etc/resolvconf/interface-order")
_PATTERN = re.compile(r"^([A-Za-z0-9-]+)\*$")
#: a record's name: an interface name after an ``interface-order`` prefix (``tun.wg0``)
_RECORD = re.compile(r"[A-Za-z0-9_=+.-]{1,64}")


def resolvconf_input(dns: Sequence[str]) -> str:
    """What wg-quick writes to ``resolvconf``: a ``nameserver`` line per address, one
    ``search`` line with the other entries (search domains).

    Example:
        >>> print(resolvconf_input(["10.0.0.53", "fd00::53", "corp.example"]), end="")
        nameserver 10.0.0.53
        nameserver fd00::53
        search corp.example
    """
    servers: list[str] = []
    search: list[str] = []
    for entry in dns:
        try:
            servers.append(str(ipaddress.ip_address(entry)))
        except ValueError:
            search.append(entry)
    text = "".join(f"nameserver {s}\n" for s in servers)
    if search:
        text += f"search {' '.join(search)}\n"
    return text


def _is_server(entry: str) -> bool:
    try:
        ipaddress.ip_address(entry)
    except ValueError:
        return False
    return True


def interface_prefix(order_file: Path = INTERFACE_ORDER) -> str:
    """wg-quick's ``resolvconf_iface_prefix``: ``"tun."`` when the order file lists ``tun*``
    first among plain ``name*`` patterns, ``""`` without the file."""
    try:
        lines = order_file.read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        m = _PATTERN.match(line.strip())
        if m:
            return m.group(1) + "."
    return ""


class ResolvConf:
    """DNS servers of one interface, registered with ``resolvconf`` until :meth:`remove`.

    Args:
        name: the interface.
        dns: the ``DNS =`` entries (addresses and search domains).
        program: the ``resolvconf`` to run (a path, or a name looked up on ``PATH``).
        order_file: Debian's interface order file (for the record name's prefix).

    Raises:
        ConfigError: ``resolvconf`` is not installed.
    """

    def __init__(
        self,
        name: str,
        dns: Sequence[str],
        *,
        program: str = "resolvconf",
        order_file: Path = INTERFACE_ORDER,
    ) -> None:
        path = shutil.which(program)
        if path is None:
            raise ConfigError(
                f"DNS = {', '.join(dns)} needs resolvconf (openresolv or Debian's resolvconf), "
                "which is not installed; install it or remove DNS from the file"
            )
        self.program = path
        self.record = interface_prefix(order_file) + name
        self.text = resolvconf_input(dns)
        self._applied = False

    @property
    def journal(self) -> dict[str, str]:
        """What :func:`remove_record` needs to take the registration away from another process
        (should this one be killed): the program's path and the record's name."""
        return {"program": self.program, "record": self.record}

    def apply(self) -> None:
        """``resolvconf -a <record> -m 0 -x`` with the servers on standard input.

        Raises:
            ConfigError: resolvconf failed (its message is kept).
        """
        self._run(["-a", self.record, "-m", "0", "-x"], self.text)
        self._applied = True

    def remove(self) -> None:
        """``resolvconf -d <record> -f`` (only after :meth:`apply`; failures are ignored, as
        wg-quick ignores them on the way down)."""
        if not self._applied:
            return
        self._applied = False
        try:
            self._run(["-d", self.record, "-f"], "")
        except ConfigError:
            pass

    def _run(self, args: list[str], text: str) -> None:
        _run(self.program, args, text)


def resolv_conf(
    name: str,
    dns: Sequence[str],
    *,
    program: str = "resolvconf",
    order_file: Path = INTERFACE_ORDER,
) -> ResolvConf | None:
    """The :class:`ResolvConf` for ``DNS =`` entries, or ``None`` when they name no server:
    wg-quick's ``set_dns`` does nothing then (search domains alone are not applied, and no
    ``resolvconf`` is needed).

    Raises:
        ConfigError: there is a server but ``resolvconf`` is not installed.
    """
    if not any(_is_server(e) for e in dns):
        return None
    return ResolvConf(name, dns, program=program, order_file=order_file)


def _run(program: str, args: list[str], text: str) -> None:
    try:
        done = subprocess.run(
            [program, *args], input=text, capture_output=True, text=True, check=False
        )
    except OSError as exc:  # gone since (remove_record runs in a later process)
        raise ConfigError(f"cannot run {program}: {exc.strerror or exc}") from None
    if done.returncode:
        detail = (done.stderr or done.stdout).strip()
        raise ConfigError(
            f"resolvconf {' '.join(args)} exited {done.returncode}"
            + (f": {detail}" if detail else "")
        )


def parse_record(journal: object) -> tuple[str, str]:
    """``(program, record)`` from what :attr:`ResolvConf.journal` made (read back from a file).

    Raises:
        ValueError: ``journal`` is not that.
    """
    if not isinstance(journal, dict) or set(journal) != {"program", "record"}:
        raise ValueError(f"not a resolvconf record: {journal!r}")
    program, record = journal["program"], journal["record"]
    if not isinstance(program, str) or not program.startswith("/"):
        raise ValueError(f"not a resolvconf program's path: {program!r}")
    if not isinstance(record, str) or not _RECORD.fullmatch(record):
        raise ValueError(f"not a resolvconf record name: {record!r}")
    return program, record


def remove_record(program: str, record: str) -> None:
    """``program -d record -f``: what :meth:`ResolvConf.remove` runs, for a registration whose
    process was killed before it could (``-f``: one that is not there is no error).

    Raises:
        ConfigError: resolvconf failed, or is not there any more.
    """
    _run(program, ["-d", record, "-f"], "")
