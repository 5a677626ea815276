"""The running interface's answer to a UAPI ``set=1`` (``wg set``, ``wg setconf``): whole or
not at all, the I/O included.

wireguard-go applies a set line by line and stops at the first line that fails, answering
``IpcErrorPortInUse`` (``errno=-98``, EADDRINUSE) for a ``listen_port`` it cannot bind and for a
``fwmark`` it cannot set. tunflow checks the request and does that I/O before changing anything:
a failure answers the same errno and leaves keys, peers, port and fwmark as they were.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from tunflow import testing
from tunflow.transport import UDPTransport
from tunflow.wireguard import (
    InterfaceConfig,
    PeerConfig,
    PrivateKey,
    WireGuardInterface,
    open_interface,
)
from tunflow.wireguard.protocol import PublicKey, UapiConnection, UapiError

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]

KEY = PrivateKey(bytes(range(1, 33)))
NEW_KEY = PrivateKey(bytes(range(2, 34)))
OLD_PEER = PrivateKey(bytes(range(3, 35))).public_key()
NEW_PEER = PrivateKey(bytes(range(4, 36))).public_key()
SO_MARK = 36


@pytest.fixture
def ns() -> Iterator[testing.Netns]:
    with testing.netns(enter=False) as ns:
        yield ns


@asynccontextmanager
async def interface(ns: testing.Netns) -> AsyncIterator[WireGuardInterface]:
    config = InterfaceConfig(
        KEY, listen_port=0, peers=[PeerConfig(OLD_PEER, allowed_ips="10.97.0.2/32")]
    )
    name = testing.unique_name("wu")
    async with open_interface(config, name=name, netns=ns.name, uapi=False) as iface:
        yield iface


def udp_socket(ns: testing.Netns) -> socket.socket:
    """A UDP socket of the namespace (bound to any free port)."""
    with ns.entered():
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind(("::", 0))
    return s


def so_mark(transport: UDPTransport) -> int:
    with socket.fromfd(transport.fileno(), socket.AF_INET6, socket.SOCK_DGRAM) as s:
        return s.getsockopt(socket.SOL_SOCKET, SO_MARK)


def setconf(*, port: int, fwmark: int, peer: PublicKey = NEW_PEER) -> bytes:
    """What ``wg setconf`` sends: a new key, port and fwmark, and the peers replaced."""
    return (
        f"set=1\nprivate_key={NEW_KEY.to_hex()}\nlisten_port={port}\nfwmark={fwmark}\n"
        f"replace_peers=true\npublic_key={peer.to_hex()}\nallowed_ip=10.97.0.3/32\n\n"
    ).encode()


async def get(iface: WireGuardInterface) -> bytes:
    return await iface.apply_uapi(b"get=1\n\n")


async def test_a_port_in_use_refuses_the_whole_set(ns: testing.Netns) -> None:
    # the runtime applied the request (key, peers, fwmark) and only then tried the port:
    # errno=-98, with all the rest of it applied
    busy = udp_socket(ns)
    port = busy.getsockname()[1]
    async with interface(ns) as iface:
        before, transport = await get(iface), iface.transport
        with busy:
            assert await iface.apply_uapi(setconf(port=port, fwmark=77)) == b"errno=-98\n\n"
            assert await get(iface) == before
            assert iface.transport is transport and so_mark(transport) == 0
        # the port free again: the same request is applied whole, on a socket with the mark
        assert await iface.apply_uapi(setconf(port=port, fwmark=77)) == b"errno=0\n\n"
        assert (iface.wg.private_key, set(iface.wg.peers)) == (NEW_KEY, {NEW_PEER})
        assert iface.listen_port == iface.wg.listen_port == port and iface.wg.fwmark == 77
        assert so_mark(iface.transport) == 77 and transport.fileno() == -1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_fwmark_that_cannot_be_set_refuses_the_whole_set(
    ns: testing.Netns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seam: root may set any SO_MARK, so ``set_fwmark`` is made to fail as it does without
    CAP_NET_ADMIN (EPERM). The runtime logged a warning and answered errno=0, with the request
    applied and the socket unmarked."""
    async with interface(ns) as iface:
        before, port = await get(iface), iface.listen_port

        def refused(self: UDPTransport, mark: int) -> None:
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(UDPTransport, "set_fwmark", refused)
        assert await iface.apply_uapi(setconf(port=port, fwmark=5)) == b"errno=-98\n\n"
        assert await get(iface) == before
        assert iface.wg.fwmark == 0 and so_mark(iface.transport) == 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_refused_set_neither_rebinds_nor_marks(ns: testing.Netns) -> None:
    # the request is checked (a low-order peer key) before the I/O it needs is done
    low_order = PublicKey(bytes(32))
    async with interface(ns) as iface:
        before, transport = await get(iface), iface.transport
        free = udp_socket(ns)
        port = free.getsockname()[1]
        free.close()
        for request in (
            setconf(port=port, fwmark=9, peer=low_order),
            setconf(port=iface.listen_port, fwmark=9, peer=low_order),
        ):
            assert await iface.apply_uapi(request) == b"errno=-22\n\n"
            assert await get(iface) == before
            assert iface.transport is transport and so_mark(transport) == 0


async def test_a_large_set_leaves_the_event_loop_running(ns: testing.Netns) -> None:
    # a setconf of thousands of new peers is an X25519 each (~50 µs): seconds for a large one,
    # during which the data path stood still — now checked in a worker thread
    peers = [PrivateKey(hashlib.sha256(b"%d" % i).digest()).public_key() for i in range(1500)]
    body = "".join(f"public_key={pk.to_hex()}\n" for pk in peers)
    async with interface(ns) as iface:
        during = await _ticks_while(iface.apply_uapi(f"set=1\n{body}\n".encode()))
        assert len(iface.wg.peers) == 1 + len(peers)
    assert during > 1  # 0 when the 1500 X25519s ran on the loop


async def test_sets_at_once_are_applied_one_after_the_other(
    ns: testing.Netns, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two sets whose checks ran (off the loop) at once each saw the peers before either: the
    # second went past the peer limit half-applied — a peer added, then "too many peers"
    from tunflow.wireguard import runtime
    from tunflow.wireguard.protocol import interface as protocol_interface, uapi

    monkeypatch.setattr(runtime, "_CHECK_ON_LOOP", 0)  # every check in a thread
    monkeypatch.setattr(uapi, "MAX_PEERS", 4)
    monkeypatch.setattr(protocol_interface, "MAX_PEERS", 4)
    keys = [PrivateKey(hashlib.sha256(b"%d" % i).digest()).public_key() for i in range(4)]
    answers: list[bytes] = []
    async with interface(ns) as iface:

        async def add(pair: list[PublicKey]) -> None:
            body = "".join(f"public_key={pk.to_hex()}\n" for pk in pair)
            answers.append(await iface.apply_uapi(f"set=1\n{body}\n".encode()))

        async with anyio.create_task_group() as tg:
            tg.start_soon(add, keys[:2])
            tg.start_soon(add, keys[2:])
        assert sorted(answers) == [b"errno=-22\n\n", b"errno=0\n\n"]
        assert len(iface.wg.peers) == 3  # the first set's two and OLD_PEER: nothing of the other


async def test_sync_sets_native_mode_and_refuses_whole(ns: testing.Netns) -> None:
    # what `tunflow up` does on SIGHUP: the peers as the file has them, native mode included
    # (not part of the UAPI request); a refused sync changes nothing, native mode included
    async with interface(ns) as iface:
        old = iface.wg.peer(OLD_PEER)
        assert old is not None and not old.native_mode
        config = InterfaceConfig(
            KEY,
            peers=[
                PeerConfig(OLD_PEER, allowed_ips="10.97.0.2/32", native_mode=True),
                PeerConfig(NEW_PEER, allowed_ips="10.97.0.3/32"),
            ],
        )
        await iface.sync(config, listen_port=False, fwmark=False)
        new = iface.wg.peer(NEW_PEER)
        assert iface.wg.peer(OLD_PEER) is old and old.native_mode  # the same peer, in place
        assert new is not None and not new.native_mode
        before = await get(iface)
        low_order = PeerConfig(PublicKey(bytes(32)), native_mode=True)  # refused when added
        refused = InterfaceConfig(
            KEY, peers=[PeerConfig(OLD_PEER, allowed_ips="10.97.0.2/32"), low_order]
        )
        with pytest.raises(UapiError) as caught:
            await iface.sync(refused, listen_port=False, fwmark=False)
        assert caught.value.errno == errno.EINVAL
        assert await get(iface) == before and old.native_mode


async def test_a_new_listen_port_keeps_counting_where_the_old_one_stopped(
    ns: testing.Netns,
) -> None:
    # the statistics (and `tunflow up`'s last line) counted only the socket bound last: what
    # came before a listen-port change was lost with the old socket
    async def send_junk(count: int, total: int) -> None:
        with udp_socket(ns) as s:
            for _ in range(count):
                s.sendto(b"junk", ("::1", iface.listen_port))
        with anyio.fail_after(10):
            while iface.statistics().transport.rx_datagrams < total:  # noqa: ASYNC110
                await anyio.sleep(0.01)

    async with interface(ns) as iface:
        await send_junk(3, 3)
        old = iface.listen_port
        assert await iface.apply_uapi(b"set=1\nlisten_port=0\n\n") == b"errno=0\n\n"
        assert iface.listen_port != old
        await send_junk(2, 5)
        t = iface.statistics().transport
        assert (t.rx_datagrams, t.rx_bytes) == (5, 20)
        assert iface.port.statistics().drops == t.drops


async def test_a_closed_interface_refuses_control_and_wakes_who_waits(ns: testing.Netns) -> None:
    # after the block (or close()), a set or sync bound a new UDP socket nobody would close
    # (the port stayed taken) and answered errno=0; wait_handshake sat out its timeout
    async def waits(iface: WireGuardInterface) -> None:
        with pytest.raises(anyio.ClosedResourceError):
            await iface.wait_handshake(OLD_PEER, timeout=60)

    # (the waiter outside the block: close() cancels the block, and a waiter cancelled with it
    # would leave its pytest.raises unchecked)
    with anyio.fail_after(10):  # woken by the close, not by its timeout
        async with anyio.create_task_group() as tg, interface(ns) as iface:
            tg.start_soon(waits, iface)
            await anyio.sleep(0.1)
            iface.close()
    port = udp_socket(ns)
    free = port.getsockname()[1]
    port.close()
    with pytest.raises(anyio.ClosedResourceError):
        await iface.apply_uapi(f"set=1\nlisten_port={free}\n\n".encode())
    config = InterfaceConfig(KEY, listen_port=free)
    with pytest.raises(anyio.ClosedResourceError):
        await iface.sync(config)
    with pytest.raises(anyio.ClosedResourceError):
        await iface.wait_handshake(OLD_PEER, timeout=60)
    with ns.entered():
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with probe:
        probe.bind(("::", free))  # nothing took the port


async def test_a_cancelled_sync_is_made_whole_or_not_at_all(ns: testing.Netns) -> None:
    # cancelled once the change was made (at the old socket's close), the change stayed but
    # Cancelled left before the routes followed it (and the new peers' keepalives were sent)
    peers = [
        PeerConfig(PrivateKey(bytes([i + 40]) * 32).public_key(), allowed_ips=f"10.{98 + i}.0.0/24")
        for i in range(3)
    ]
    async with interface(ns) as iface:
        before = await get(iface)
        with anyio.CancelScope() as scope:
            scope.cancel()  # cancelled before: nothing changes
            await iface.sync(InterfaceConfig(KEY, listen_port=0, peers=peers), routes=True)
        assert scope.cancelled_caught and await get(iface) == before
        for attempt in range(20):
            new = InterfaceConfig(KEY, listen_port=0, peers=peers if attempt % 2 == 0 else [])
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:

                    async def cancel(
                        scope: anyio.CancelScope = scope, delay: int = attempt
                    ) -> None:
                        for _ in range(delay % 4):
                            await anyio.lowlevel.checkpoint()
                        scope.cancel()

                    tg.start_soon(cancel)
                    await iface.sync(new, routes=True)
            routes = ns.run("ip", "route", "show", "dev", iface.name).stdout
            # (ip shows a /32 route without its prefix length)
            routed = {str(ipaddress.ip_network(r.split()[0])) for r in routes.splitlines()}
            have = {str(n) for p in iface.wg.peers for n in iface.peer(p).allowed_ips}
            # whatever peers are in force, their routes are there
            assert have <= routed, (attempt, have, routes)
            assert len(iface.wg.peers) in (0, 3, 1)


async def test_a_control_client_that_keeps_talking_is_not_cut_off(
    ns: testing.Netns, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the 30 s limit was for the whole connection: a client asking every 3 s was cut at 30 s,
    # and a set arriving just before was applied with no answer. Now it is for silence.
    from tunflow.wireguard import runtime

    monkeypatch.setattr(runtime, "UAPI_IDLE_TIMEOUT", 1.0)
    path = tmp_path / "wu.sock"
    config = InterfaceConfig(KEY, listen_port=0)
    async with open_interface(
        config, name=testing.unique_name("wu"), netns=ns.name, uapi=str(path)
    ) as iface:
        async with await anyio.connect_unix(path) as client:
            with anyio.fail_after(20):
                for _ in range(8):  # 2.4 s in all, more than the limit
                    await client.send(b"get=1\n\n")
                    got = b""
                    while not got.endswith(b"errno=0\n\n"):
                        got += await client.receive()
                    await anyio.sleep(0.3)
                # silent for longer than the limit: let go
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await client.receive()
        assert iface.stop_reason is None


async def test_apply_uapi_takes_the_end_of_the_bytes_as_the_end_of_a_set(
    ns: testing.Netns,
) -> None:
    # the end of the bytes is the end of the stream: a set=1 without its empty line is
    # applied and answered, as the control socket does at the end of a client's stream (and
    # wireguard-go); apply_uapi answered it with nothing and left it unapplied
    async with interface(ns) as iface:
        for port, tail in ((51866, b"\n"), (51867, b"")):
            request = f"set=1\nlisten_port={port}".encode() + tail
            assert await iface.apply_uapi(request) == b"errno=0\n\n"
            assert iface.listen_port == iface.wg.listen_port == port
        answer = await iface.apply_uapi(b"get=1\n\nset=1\nfwmark=9")
        assert answer.startswith(b"private_key=") and answer.endswith(b"errno=0\n\nerrno=0\n\n")
        assert iface.wg.fwmark == 9
        # a get=1 cut short is still nothing to answer
        assert await iface.apply_uapi(b"get=1\n") == b""


async def test_an_oversized_set_on_the_control_socket_is_answered(
    ns: testing.Netns, tmp_path: Path
) -> None:
    # the server closed on a set=1 past the limit while the client still wrote it: wg was
    # killed by SIGPIPE, saying nothing; now the rest is read and errno=-7 (E2BIG) answered
    from tunflow.wireguard.protocol.uapi import MAX_REQUEST_SIZE

    path = tmp_path / "wu.sock"
    config = InterfaceConfig(KEY, listen_port=0)
    line = b"allowed_ip=10.0.0.0/8\n"
    chunk = b"public_key=" + OLD_PEER.to_hex().encode() + b"\n" + line * (65536 // len(line))
    async with open_interface(
        config, name=testing.unique_name("wu"), netns=ns.name, uapi=str(path)
    ) as iface:
        async with await anyio.connect_unix(path) as client:
            with anyio.fail_after(60):
                await client.send(b"set=1\n")
                for _ in range(MAX_REQUEST_SIZE // len(chunk) + 8):
                    await client.send(chunk)
                await client.send(b"\nget=1\n\n")
                got = b""
                while not got.endswith(b"errno=0\n\n"):
                    got += await client.receive()
        assert got.startswith(b"errno=-7\n\nprivate_key=")
        assert not iface.wg.peers  # nothing of it applied


async def test_a_long_set_is_parsed_off_the_event_loop(ns: testing.Netns) -> None:
    # a set=1 of megabytes was cut and parsed on the loop (some 0.2 s a MiB: a full routing
    # table as AllowedIPs, 22 MiB, held the data path for 4.5 s); now one buffered past 1 MiB
    # is parsed in a worker thread
    body = b"listen_port=0\n" * ((12 << 20) // 14)
    async with interface(ns) as iface:
        during = await _ticks_while(iface.apply_uapi(b"set=1\n" + body + b"\n"))
    assert during > 1  # 0 when the parse ran on the loop


async def test_a_long_set_being_parsed_does_not_hold_up_the_way_down(
    ns: testing.Netns, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the parse's worker thread (anyio.to_thread) could not be cancelled: a way down (SIGTERM)
    # waited for its end — 2 s for 60 MiB, and systemd's stop timeout counts — now the
    # cancelled task gives it up at once (a daemon thread)
    started, held, returned = threading.Event(), threading.Event(), threading.Event()
    real = UapiConnection.next_request

    def slow(conn: UapiConnection) -> object:
        if conn.buffered > (1 << 20):
            started.set()
            held.wait(30)  # a parse that takes long
            returned.set()
        return real(conn)

    monkeypatch.setattr(UapiConnection, "next_request", slow)
    body = b"listen_port=0\n" * ((2 << 20) // 14)
    try:
        async with interface(ns) as iface, anyio.create_task_group() as tg:
            tg.start_soon(iface.apply_uapi, b"set=1\n" + body + b"\n")
            assert await anyio.to_thread.run_sync(started.wait, 30)  # it waits in the parse
            tg.cancel_scope.cancel()
        assert not returned.is_set()  # out, the parse still going
    finally:
        held.set()


async def _ticks_while(apply: Awaitable[bytes]) -> int:
    """How many times another task ran while ``apply`` (an ``apply_uapi``) was awaited; it
    must answer ``errno=0``."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0.01)
        before = ticks
        assert await apply == b"errno=0\n\n"
        during = ticks - before
        tg.cancel_scope.cancel()
    return during
