"""The running interface's side tasks and control socket, as documented: link notifications
the kernel dropped still get the routes and addresses put back once the link is up again,
``wait_handshake`` returns at once after a handshake and leaves no event hook behind however
its wait ends, what a UAPI set makes the protocol send goes out at once, a failed ``accept``
leaves the control socket served, and a set cut short by a silent client is not applied."""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.linux.test_vpn_default_route import default_peer
from tests.linux.test_vpn_link_watch_start import v6_addresses
from tests.linux.test_vpn_routing_behaviour import in_table, until
from tests.linux.test_vpn_runtime_timers_counters import quiet
from tests.linux.test_vpn_tunflow import OB, pair, ping, two_sides  # noqa: F401
from tests.linux.test_vpn_uapi import KEY, OLD_PEER, interface, ns, udp_socket  # noqa: F401
from tunflow import testing
from tunflow.wireguard import (
    InterfaceConfig,
    WireGuardInterface,
    WireGuardPort,
    _routing,
    open_interface,
    runtime,
)

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


class LossyWatch:
    """A link watch on which the kernel dropped every notification (``ENOBUFS``): whatever
    came reads as "notifications were lost". ``waiting`` is set once the interface waits on
    it (its catch-up at the start done)."""

    def __init__(self, watch: Any) -> None:
        self.watch = watch
        self.waiting = threading.Event()

    def fileno(self) -> int:
        self.waiting.set()
        return int(self.watch.fileno())

    def changes(self) -> list[None]:
        return [None] if self.watch.changes() else []

    def close(self) -> None:
        self.watch.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_lost_link_notifications_still_put_the_routes_back(
    ns: testing.Netns,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``_watch_link``: when "notifications were lost (not read in time): it may have gone
    down and up meanwhile, and what is put back is what is missing" — the link down and up
    while the kernel dropped every notification of it still gets its AllowedIPs route and
    its IPv6 address back."""
    real = _routing.link_watch
    watches: list[LossyWatch] = []

    def lossy(index: int, netns: str | None) -> LossyWatch:
        watches.append(LossyWatch(real(index, netns)))
        return watches[-1]

    monkeypatch.setattr(_routing, "link_watch", lossy)
    name = testing.unique_name("ll")
    config = default_peer(allowed_ips="10.96.0.0/24")
    with anyio.fail_after(30):
        async with open_interface(
            config, name=name, addresses=["fd42:96::1/64"], netns=ns.name, uapi=False
        ):
            await until(lambda: bool(watches) and watches[0].waiting.is_set())
            ns.run("ip", "link", "set", name, "down")
            assert in_table(ns, 254) == [] and v6_addresses(ns, name) == []
            ns.run("ip", "link", "set", name, "up")
            await until(lambda: in_table(ns, 254) == [("10.96.0.0/24", name)])
            await until(lambda: v6_addresses(ns, name) == ["fd42:96::1/64"])


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_wait_handshake_leaves_no_event_hook_behind(
    pair: tuple[testing.Netns, testing.Netns],  # noqa: F811
) -> None:
    """A ``wait_handshake`` hooks the port's events for as long as it waits: after one that
    timed out, one that was cancelled and one that returned, the hooks are those there were
    before (they would otherwise pile up, each called for every protocol event)."""
    a, b = pair
    with anyio.fail_after(60):
        async with two_sides(a, b, native=False) as (ia, ib):
            (pk_b,) = ia.wg.peers
            (pk_a,) = ib.wg.peers
            hooks = ia.port._event_hooks
            before = len(hooks)
            with pytest.raises(TimeoutError):
                await ia.wait_handshake(pk_b, timeout=0.2)  # no traffic: no handshake
            assert len(hooks) == before

            async with anyio.create_task_group() as tg:
                tg.start_soon(ia.wait_handshake, pk_b, 30)
                await until(lambda: len(hooks) == before + 1)
                tg.cancel_scope.cancel()
            assert len(hooks) == before

            b_hooks = ib.port._event_hooks
            b_before = len(b_hooks)

            async def waits(iface: WireGuardInterface) -> None:
                await iface.wait_handshake(pk_a, timeout=30)

            async with anyio.create_task_group() as tg:
                tg.start_soon(waits, ib)
                await until(lambda: len(b_hooks) == b_before + 1)
                await ping(a, OB, 1)
            assert ib.peer(pk_a).last_handshake is not None
            assert len(b_hooks) == b_before
            with anyio.fail_after(5):  # "completed (at least once)": no wait for another
                await ib.wait_handshake(pk_a, timeout=60)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_set_turning_a_persistent_keepalive_on_sends_at_once(
    ns: testing.Netns,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ "Turning a persistent keepalive on sends a keepalive at once" (``apply_set``, as
    wireguard-go does): a peer without a session starts its handshake for it, and the
    initiation goes out as the set is applied — not when the timer task next looks at the
    deadlines (here it never does; nor does the kernel send into the tunnel, IPv6 off)."""

    async def idle(self: WireGuardPort, **kwargs: object) -> None:
        await anyio.sleep_forever()

    monkeypatch.setattr(WireGuardPort, "run_timers", idle)
    quiet(ns)
    with udp_socket(ns) as s, anyio.fail_after(20):
        s.setblocking(False)
        port = s.getsockname()[1]
        async with interface(ns) as iface:
            request = (
                f"set=1\npublic_key={OLD_PEER.to_hex()}\nendpoint=[::1]:{port}\n"
                "persistent_keepalive_interval=25\n\n"
            )
            assert await iface.apply_uapi(request.encode()) == b"errno=0\n\n"
            with anyio.fail_after(5):
                while not select.select([s], [], [], 0)[0]:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            data, _ = s.recvfrom(2048)
            assert data[0] == 1  # a handshake initiation
            assert iface.statistics().transport.tx_datagrams == 1


class FailsOnce:
    """A control-socket listener whose first accept fails (EMFILE: the process at its
    descriptor limit), as a transient ``accept`` error does."""

    def __init__(self, listener: Any) -> None:
        self.listener = listener
        self.failed = False

    def extra(self, attribute: Any, *default: Any) -> Any:
        return self.listener.extra(attribute, *default)

    async def accept(self) -> Any:
        if not self.failed:
            self.failed = True
            raise OSError(errno.EMFILE, "Too many open files")
        return await self.listener.accept()

    async def __aenter__(self) -> FailsOnce:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.listener.aclose()

    async def aclose(self) -> None:
        await self.listener.aclose()


async def test_a_failed_accept_leaves_the_control_socket_served(
    ns: testing.Netns,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An ``accept`` that fails (a descriptor limit met for a moment) is logged, and the
    control socket goes on serving: the client it was for is answered (it waited in the
    backlog), not cut off with the listener."""
    real = runtime._uapi_listener

    async def failing_once(path: str) -> Any:
        return FailsOnce(await real(path))

    monkeypatch.setattr(runtime, "_uapi_listener", failing_once)
    caplog.set_level(logging.WARNING, "tunflow.wireguard")
    path = tmp_path / "wu.sock"
    config = InterfaceConfig(KEY, listen_port=0)
    with anyio.fail_after(20):
        async with (
            open_interface(config, name=testing.unique_name("wu"), netns=ns.name, uapi=str(path)),
            await anyio.connect_unix(path) as client,
        ):
            await client.send(b"get=1\n\n")
            got = b""
            while not got.endswith(b"errno=0\n\n"):
                got += await client.receive()
    assert got.startswith(b"private_key=")
    assert "UAPI accept failed" in caplog.text


async def test_a_set_cut_short_by_a_silent_client_is_not_applied(
    ns: testing.Netns,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A control client silent for ``UAPI_IDLE_TIMEOUT`` mid-request is let go: its ``set=1``
    without the empty line that ends it is neither applied nor answered (only the end of the
    client's stream ends a set that way), so a hung ``wg`` changes nothing half-way."""
    monkeypatch.setattr(runtime, "UAPI_IDLE_TIMEOUT", 1.0)
    path = tmp_path / "wu.sock"
    config = InterfaceConfig(KEY, listen_port=0)
    async with open_interface(
        config, name=testing.unique_name("wu"), netns=ns.name, uapi=str(path)
    ) as iface:
        before = iface.listen_port
        async with await anyio.connect_unix(path) as client:
            with anyio.fail_after(20):
                await client.send(b"set=1\nlisten_port=0\nfwmark=7\n")
                got = b""
                with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                    while True:
                        got += await client.receive()
        assert got == b""
        assert iface.wg.fwmark == 0 and iface.listen_port == before
