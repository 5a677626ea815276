"""The kernel's drop counters of the interfaces behind a pipeline's ports.

When a worker stops reading (its sink is slow), a TUN/TAP queue fills and the kernel drops what
it cannot queue, counting it in the interface's ``tx_dropped`` (``IFLA_STATS64``). The reader
opens its rtnetlink socket in the calling thread's network namespace — where the devices were
made — so later calls from any thread ask the right namespace. Linux only; elsewhere it reports
nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["LinkStatsReader"]


class LinkStatsReader:
    """``tx_dropped`` per interface, for the links given (``(index, name)`` or ``None``)."""

    def __init__(self, links: Iterable[tuple[int, str] | None]) -> None:
        self._links = sorted({link for link in links if link is not None})
        self._nl: Any = None
        self._failed = False
        self._last: dict[str, int] = {}
        self._closed = False

    def _socket(self) -> Any:
        if self._nl is None and not self._failed and self._links and sys.platform == "linux":
            try:
                from ..platform.linux.netlink import RtNetlink

                self._nl = RtNetlink()
            except Exception:
                self._failed = True
        return self._nl

    def open(self) -> None:
        """Open the netlink socket now (in the devices' namespace)."""
        self._socket()

    def tx_dropped(self) -> dict[str, int]:
        """Packets dropped by the kernel towards us, by interface name (missing ones left out)."""
        if self._closed:
            return dict(self._last)
        nl = self._socket()
        if nl is None:
            return {}
        out: dict[str, int] = {}
        for index, name in self._links:
            try:
                out[name] = nl.link_stats(index).tx_dropped
            except Exception:
                continue
        self._last = out
        return out

    def close(self) -> None:
        """Take a last reading and close the socket; later calls return that reading."""
        if self._closed:
            return
        self.tx_dropped()
        self._closed = True
        nl, self._nl = self._nl, None
        if nl is not None:
            nl.close()
