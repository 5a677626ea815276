"""The device layer's offload glue (``tunflow/device/_offload.py``), as docs/devices.md and the
device docstrings describe it, through the scripted vnet-header queue of
tests/unit/test_device_offload.py."""

from __future__ import annotations

from tests.unit.offload_packets import ACK, tcp4_packet, tcp_super_packet, udp4_packet
from tests.unit.test_device_offload import A, B, ScriptedQueue, device
from tunflow import PacketBatch
from tunflow.offload import VIRTIO_NET_HDR_GSO_UDP_L4
from tunflow.packet import HEADROOM


def test_a_split_read_that_filled_the_batch_leaves_the_device_readable() -> None:
    # the kernel queue is empty (ScriptedQueue.wait: nothing), but six segments of the
    # super-packet read into a batch of four wait in the device: a reader told "not readable"
    # would wait for the kernel, which has nothing more, and never get them
    queue = ScriptedQueue()
    dev = device(queue)
    queue.incoming.append(tcp_super_packet(A, B, 10 * 1000, 1000))
    small = PacketBatch(capacity=64 * 1024, max_packets=4)
    assert len(dev.recv_batch(small, timeout=0)) == 4
    assert dev.wait_readable(timeout=0)
    small.clear()
    assert len(dev.recv_batch(small, timeout=0)) == 4
    assert dev.wait_readable(timeout=0)
    small.clear()
    assert len(dev.recv_batch(small, timeout=0)) == 2
    assert not dev.wait_readable(timeout=0)


def test_a_plain_batch_of_more_bytes_than_the_coalescing_buffer_is_written_whole() -> None:
    # 24 flows of one 60000-byte segment each (an MTU-65535 TUN): 1.4 MB, few packets; the
    # coalesced copy must grow to the batch's bytes, not only to its packet count
    queue = ScriptedQueue()
    dev = device(queue)
    packets = [tcp4_packet(A, (B[0], 1000 + k), ACK, 60000, 1) for k in range(24)]
    batch = PacketBatch(capacity=2 * 1024 * 1024)
    batch.extend(packets)
    assert batch.end > 1 << 20 and len(batch) < batch.max_packets
    assert dev.send_batch(batch) == len(packets)
    assert [frame[HEADROOM:] for frame in queue.written] == packets
    assert dev.statistics().tx_dropped == {}


def test_a_refused_udp_write_switches_the_devices_udp_gro_off_and_leaves_tcp_on() -> None:
    # docs/devices.md: GRO is turned off for the device for the refused super-packet's
    # protocol only; ``dev.gro`` is the device's table, whose ``udp`` says so
    queue = ScriptedQueue(uso=True, refuse_types={VIRTIO_NET_HDR_GSO_UDP_L4})
    dev = device(queue)
    assert dev.gro is not None and dev.gro.tcp and dev.gro.udp
    dev.send_multiple(None, [udp4_packet(A, B, 100, start=100 * k) for k in range(6)])
    assert len(queue.written) == 6  # refused, written split
    stats = dev.statistics()
    assert (stats.gro_disabled, stats.gro_disabled_tcp, stats.gro_disabled_udp) == (1, 0, 1)
    assert dev.gro.tcp and not dev.gro.udp
