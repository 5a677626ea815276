"""Native fast mode against hostile reads on a running port: what a forged ``UDP_GRO`` read
makes the receiver do is bounded by what the read brought."""

from __future__ import annotations

import anyio
import pytest
from test_wg_port import native_port, send_one, tcp_super_packet

from tunflow.transport import DatagramBatch
from tunflow.wireguard.protocol import native as N

pytestmark = pytest.mark.anyio


async def test_a_forged_read_claiming_a_larger_chunk_opens_nothing_it_did_not_bring() -> None:
    # Two datagrams read as one (a UDP_GRO read at our stride) whose headers agree but claim
    # a chunk of 65000 bytes. Their chunks lie at our stride, so they are not one whole
    # message — but the scattered open was handed the whole chunk buffer and took the
    # header's word for the layout: it ran the AEAD over 65 KB of that buffer, nearly all
    # of it left there by the message read before, and stored it for more tries (130 KB).
    async with native_port() as (port, sender, far):
        assert port._scatter is not None
        await send_one(sender, far, tcp_super_packet("10.0.0.2", 40))  # the long list
        batch = port.new_batch()
        with anyio.fail_after(5):
            await port.recv_batch(batch, True)
        assert len(batch) == 1 and port._scatter.bulk
        session = port.wg.peer(sender.public_key).current
        opened: list[int] = []
        real_open = session.native_open

        def counting_open(nonce: bytes, sealed: memoryview, *rest: object) -> None:
            opened.append(len(sealed))
            real_open(nonce, sealed, *rest)

        session.native_open = counting_open
        stride = port.wg.native_fragment_size
        counter = session.native_replay.highest + 1
        wire = DatagramBatch(1 << 16)
        for index, size in ((0, stride), (1, 60)):
            header = N.NATIVE_HEADER.pack(
                0x7F, index, 2, N.NATIVE_VERSION, session.local_index, counter, 65000, 0
            )
            wire.append(
                header + bytes(size - N.NATIVE_HEADER_SIZE), address=port.transport.local_address
            )
        await far.send_batch(wire)  # one UDP_SEGMENT send: one read
        await anyio.sleep(0.1)
        batch.clear()
        with anyio.move_on_after(0.5):
            await port.recv_batch(batch, True)
        assert len(batch) == 0
        assert all(n <= stride + 60 for n in opened), opened
        stats = port.wg.statistics()
        assert stats.dropped_malformed == 1  # the first fragment: shorter than its chunk
        assert stats.dropped_bad_aead == 0
