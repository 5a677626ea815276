"""PacketBatch refusing what it cannot hold, before anything is copied."""

from __future__ import annotations

import pytest

from tunflow.packet import HEADROOM, PacketBatch


@pytest.mark.parametrize("size", [0, 4, HEADROOM + 1])
def test_a_header_not_of_the_headroom_size_is_refused_and_nothing_added(size: int) -> None:
    # a slice of another length resized the arena: a cryptic BufferError, mid-copy
    batch = PacketBatch(capacity=4096, max_packets=4)
    batch.vnet_hdr = True
    batch.append(b"\x45" + bytes(19), header=bytes(HEADROOM))
    before = (batch.end, list(batch.offsets), len(batch.buffer))
    with pytest.raises(ValueError, match="virtio-net header is 10 bytes"):
        batch.append(b"\x45" + bytes(19), header=bytes(size))
    assert (batch.end, list(batch.offsets), len(batch.buffer)) == before
    batch.append(b"\x45" + bytes(39), header=bytes(HEADROOM))  # and the batch goes on
    assert batch.lengths == [20, 40]
