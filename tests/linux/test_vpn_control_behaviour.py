"""The running interface's control (``apply_uapi``, the control socket's requests): what a
closed interface refuses, what a request that cannot be served ends, what a set leaves alone."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.linux.test_vpn_uapi import KEY, NEW_PEER, OLD_PEER, interface, so_mark
from tunflow import testing
from tunflow.wireguard import (
    InterfaceConfig,
    PeerConfig,
    open_interface,
)

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


@pytest.fixture
def ns() -> Iterator[testing.Netns]:
    with testing.netns(enter=False) as ns:
        yield ns


async def test_a_closed_interface_answers_no_get(ns: testing.Netns) -> None:
    # apply_uapi: "Raises anyio.ClosedResourceError: the interface is closed" — a get too
    async with interface(ns) as iface:
        assert b"errno=0\n" in await iface.apply_uapi(b"get=1\n\n")
        iface.close()
        with pytest.raises(anyio.ClosedResourceError):
            await iface.apply_uapi(b"get=1\n\n")


async def test_nothing_after_an_invalid_operation_is_answered(ns: testing.Netns) -> None:
    # wireguard-go ends the connection at an operation it does not know: a request after it
    # in the same stream is not served
    async with interface(ns) as iface:
        assert await iface.apply_uapi(b"bogus=1\n\nget=1\n\n") == b""
        assert b"errno=0\n" in await iface.apply_uapi(b"get=1\n\n")


async def test_a_link_local_endpoint_of_no_link_is_refused_whole(ns: testing.Netns) -> None:
    # as wg and wireguard-go: EINVAL, and the set changes nothing (the peer is not added)
    async with interface(ns) as iface:
        reply = await iface.apply_uapi(
            f"set=1\npublic_key={NEW_PEER.to_hex()}\nendpoint=[fe80::1%nolink0]:51820\n"
            "allowed_ip=10.97.0.3/32\n\n".encode()
        )
        assert reply == f"errno=-{errno.EINVAL}\n\n".encode()
        assert NEW_PEER.to_hex().encode() not in await iface.apply_uapi(b"get=1\n\n")


async def test_setting_the_port_it_listens_on_keeps_its_socket(ns: testing.Netns) -> None:
    # `wg set wg0 listen-port <its port>` (wg syncconf of an unchanged file, too): nothing to
    # bind; the socket that holds the port stays
    async with interface(ns) as iface:
        before = iface.transport
        port = iface.listen_port
        reply = await iface.apply_uapi(f"set=1\nlisten_port={port}\n\n".encode())
        assert reply == b"errno=0\n\n"
        assert iface.transport is before and iface.listen_port == port


async def read_to_the_end(client: anyio.abc.SocketStream) -> bytes:
    """What the server sends until it closes the connection."""
    got = b""
    with anyio.fail_after(10):  # the idle limit is 30 s: well before it
        while True:
            try:
                got += await client.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return got


async def test_the_control_socket_ends_each_kind_of_client(
    ns: testing.Netns, tmp_path: Path
) -> None:
    # a client that ends its stream after a get is answered and let go; one whose stream ends a
    # set=1 without its empty line has it applied and answered (as wireguard-go); one that sends
    # an operation wireguard-go does not know is let go at once, its next request unanswered
    path = tmp_path / "wc.sock"
    config = InterfaceConfig(KEY, listen_port=0)
    async with open_interface(
        config, name=testing.unique_name("wc"), netns=ns.name, uapi=str(path)
    ) as iface:
        async with await anyio.connect_unix(path) as client:
            await client.send(b"get=1\n\n")
            await client.send_eof()
            assert (await read_to_the_end(client)).endswith(b"errno=0\n\n")
        async with await anyio.connect_unix(path) as client:
            await client.send(f"set=1\npublic_key={NEW_PEER.to_hex()}\n".encode())
            await client.send_eof()
            assert await read_to_the_end(client) == b"errno=0\n\n"
        assert NEW_PEER in iface.wg.peers
        async with await anyio.connect_unix(path) as client:
            await client.send(b"bogus=1\n\nget=1\n\n")
            assert await read_to_the_end(client) == b""


async def test_the_control_socket_is_its_owners_alone(ns: testing.Netns, tmp_path: Path) -> None:
    # its owner's alone, as wireguard-go's (made under umask 077): whoever may connect may
    # set the private key
    path = tmp_path / "wc.sock"
    config = InterfaceConfig(KEY, listen_port=0)
    async with open_interface(
        config, name=testing.unique_name("wc"), netns=ns.name, uapi=str(path)
    ):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_a_new_port_keeps_the_fwmark(ns: testing.Netns) -> None:
    # a set of the port alone leaves the fwmark as it is: the new socket has it too
    async with interface(ns) as iface:
        assert await iface.apply_uapi(b"set=1\nfwmark=9\n\n") == b"errno=0\n\n"
        before = iface.transport
        assert await iface.apply_uapi(b"set=1\nlisten_port=0\n\n") == b"errno=0\n\n"
        assert iface.transport is not before
        assert so_mark(iface.transport) == iface.wg.fwmark == 9


async def test_sync_keeps_the_port_or_the_fwmark_it_is_told_to_keep(ns: testing.Netns) -> None:
    # sync(listen_port=False): "the configuration gave none, keep it"; fwmark=False likewise
    async with interface(ns) as iface:
        assert await iface.apply_uapi(b"set=1\nfwmark=9\n\n") == b"errno=0\n\n"
        port = iface.listen_port
        config = InterfaceConfig(KEY, peers=[PeerConfig(OLD_PEER, allowed_ips="10.97.0.2/32")])
        await iface.sync(config, listen_port=False)
        assert iface.listen_port == port and iface.wg.fwmark == 0
        assert await iface.apply_uapi(b"set=1\nfwmark=9\n\n") == b"errno=0\n\n"
        await iface.sync(config, fwmark=False)
        assert iface.wg.fwmark == 9 and so_mark(iface.transport) == 9
