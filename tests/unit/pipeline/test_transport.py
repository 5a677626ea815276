"""The UDP transport over loopback (no root needed), on asyncio, uvloop and trio."""

from __future__ import annotations

import socket

import anyio
import pytest

from tunflow import ConfigError
from tunflow.packet import PacketBatch
from tunflow.pipeline import MemorySink, MemorySource, Pipeline, TransportPort
from tunflow.transport import DatagramBatch, Transport, UDPTransport, parse_endpoint

pytestmark = pytest.mark.anyio


async def test_batches_with_addresses() -> None:
    async with (
        UDPTransport.bind("127.0.0.1:0") as a,
        UDPTransport.bind(("127.0.0.1", 0), peer=a.local_address) as b,
    ):
        assert isinstance(a, Transport)
        out = b.new_batch()
        for i in range(50):
            out.append(bytes([i]) * 100)
        assert await b.send_batch(out) == 50
        got: list[bytes] = []
        with anyio.fail_after(5):
            while len(got) < 50:
                batch = await a.recv_batch()
                assert isinstance(batch, DatagramBatch)
                assert set(batch.addresses) == {b.local_address}
                got += batch.to_list()
        assert got == out.to_list()
        # reply to each sender by address, from an unconnected transport
        back = DatagramBatch()
        back.append(b"pong", address=b.local_address)
        back.append(b"lost")  # no address, no peer: dropped and counted
        assert await a.send_batch(back) == 1
        assert a.statistics().drops == {"no_address": 1}
        with anyio.fail_after(5):
            assert (await b.recv_batch()).to_list() == [b"pong"]
        s = a.statistics()
        assert (s.rx_datagrams, s.tx_datagrams) == (50, 1)


async def test_unreachable_peer_is_counted_not_raised() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()
    async with UDPTransport.bind("127.0.0.1:0", peer=dead) as t:
        batch = PacketBatch()
        batch.append(b"x")
        for _ in range(5):
            await t.send_batch(batch)
            await anyio.sleep(0.01)
        assert t.statistics().drops.get("unreachable", 0) >= 1


async def test_close_wakes_receiver() -> None:
    t = UDPTransport.bind("127.0.0.1:0")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def receive() -> None:
                with pytest.raises(anyio.ClosedResourceError):
                    await t.recv_batch()

            tg.start_soon(receive)
            await anyio.sleep(0.05)
            await t.aclose()


async def test_pipeline_into_a_transport() -> None:
    async with (
        UDPTransport.bind("127.0.0.1:0") as rx,
        UDPTransport.bind("127.0.0.1:0", peer=rx.local_address) as tx,
    ):
        pk = [b"\x45" + bytes([i]) * 30 for i in range(20)]
        await Pipeline(MemorySource(pk), [], tx).run()
        sink = MemorySink()
        with anyio.move_on_after(0.5):
            await Pipeline(TransportPort(rx), [], sink).run()
        assert sink.packets == pk


def test_parse_endpoint() -> None:
    assert parse_endpoint(":80") == ("0.0.0.0", 80)
    assert parse_endpoint("[::1]:5") == ("::1", 5)
    # other scripts' digits, signs, spaces, "_": int() reads them, wg refuses them
    for bad in ("nohost", "h:99999", "h:x", "h:٥١٨٢٠", "h:+80", "h: 80", "h:8_0", "h:²"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)
    # a NUL in the host passed, and was bind()'s TypeError out of tunflow run
    with pytest.raises(ConfigError, match="is not host:port"):
        parse_endpoint("[fe80::1%\0]:5")
