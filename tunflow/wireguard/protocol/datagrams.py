"""Batches of UDP datagrams: :class:`DatagramBatch` lives in :mod:`tunflow.datagram`.

Re-exported here because the WireGuard batch data path speaks in them: the encrypt path writes
header and ciphertext of each datagram straight into the arena, back to back, so a run of
equal-sized datagrams to one address is one ``UDP_SEGMENT`` send
(:meth:`DatagramBatch.gso_groups`); the decrypt path reads datagrams from it, e.g. a
``UDP_GRO`` read registered with :meth:`DatagramBatch.add_segments`.
"""

from __future__ import annotations

from ...datagram import UDP_MAX_SEGMENTS, Address, DatagramBatch

__all__ = ["Address", "DatagramBatch", "UDP_MAX_SEGMENTS"]
