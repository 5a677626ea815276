"""The kernel's drop counters of the interfaces behind a pipeline's ports.

When a worker stops reading (its sink is slow), a TUN/TAP queue fills and the kernel drops what
it cannot queue, counting it in the interface's ``tx_dropped`` (``IFLA_STATS64``). The pipeline
opens the reader's rtnetlink socket when it starts running, in the namespace of the thread that
runs it, so later calls from any thread ask that namespace; it closes the socket when it stops.
Interfaces that are not in that namespace (a device made with ``DeviceBuilder.netns``) are left
out rather than confused with whatever has their index here. Linux only; elsewhere it reports
nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["LinkStatsReader"]


class LinkStatsReader:
    """``tx_dropped`` per interface, for the links given (``(index, name)`` or ``None``).

    Nothing is opened until :meth:`open`; before it :meth:`tx_dropped` reports nothing, after
    :meth:`close` the last reading.
    """

    def __init__(self, links: Iterable[tuple[int, str] | None]) -> None:
        self._links = sorted({link for link in links if link is not None})
        self._nl: Any = None
        self._last: dict[str, int] = {}
        self._closed = False

    def open(self) -> None:
        """Open the netlink socket now, in the calling thread's namespace (where the devices
        are); without links, or off Linux, or when netlink is unavailable, nothing is opened."""
        if self._nl is not None or self._closed or not self._links or sys.platform != "linux":
            return
        try:
            from ..platform.linux.netlink import RtNetlink

            nl = RtNetlink()
        except Exception:
            return
        # Only links that are here under their name: a device made in another namespace
        # (DeviceBuilder.netns) has its index there, and the same index here is another
        # interface, whose counters must not be reported as the device's.
        here = []
        for index, name in self._links:
            try:
                if nl.link_by_name(name).index == index:
                    here.append((index, name))
            except Exception:
                continue
        self._links = here
        self._nl = nl

    def tx_dropped(self) -> dict[str, int]:
        """Packets dropped by the kernel towards us, by interface name (missing ones left out)."""
        nl = self._nl
        if nl is None:
            return dict(self._last)
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
