"""The running interface's side tasks and its way down, as documented: a link watch that
cannot start is logged while the tunnel runs on, and a ``wait_handshake`` in another task
hears that the interface closed however its block ended."""

from __future__ import annotations

import errno
import logging

import anyio
import pytest

from tests.linux.test_vpn_routing_behaviour import until
from tests.linux.test_vpn_uapi import OLD_PEER, interface, ns  # noqa: F401
from tunflow import testing
from tunflow.wireguard import WireGuardInterface, _routing

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


async def test_a_link_watch_that_cannot_start_leaves_the_tunnel_running(
    ns: testing.Netns,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``_watch_link``: "A failure here is logged: the tunnel itself runs on." A watch whose
    netlink socket cannot be opened (EMFILE: the process at its descriptor limit) raised out
    of the task and took the interface down with it."""

    def no_socket(index: int, netns: str | None) -> object:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(_routing, "link_watch", no_socket)
    caplog.set_level(logging.WARNING, "tunflow.wireguard")
    with anyio.fail_after(20):
        async with interface(ns) as iface:  # routes on: the watch starts
            await until(lambda: "cannot watch the link" in caplog.text)
            await anyio.sleep(0.2)
            assert iface.stop_reason is None and iface.failure is None
            assert b"errno=0\n" in await iface.apply_uapi(b"get=1\n\n")


async def test_a_waiter_in_another_task_hears_the_block_end(
    ns: testing.Netns,  # noqa: F811
) -> None:
    """``wait_handshake`` raises ``anyio.ClosedResourceError`` when the interface "closes
    meanwhile": also when its ``async with`` block just ends (not only on ``close()``). A
    waiter outside the block sat out its whole timeout and then raised ``TimeoutError``."""
    heard: list[BaseException] = []

    async def waits(iface: WireGuardInterface) -> None:
        try:
            await iface.wait_handshake(OLD_PEER, timeout=60)
        except (anyio.ClosedResourceError, TimeoutError) as exc:
            heard.append(exc)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg, interface(ns) as iface:
            tg.start_soon(waits, iface)
            await anyio.sleep(0.2)  # waiting now; the block ends
    assert [type(e) for e in heard] == [anyio.ClosedResourceError]
