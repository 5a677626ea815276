"""Ports over closed devices and transports: what a worker process cannot reopen, and a read
from a device closed while the port waited."""

from __future__ import annotations

import anyio
import pytest

from tunflow import ClosedDeviceError, ConfigError
from tunflow.device import Layer, OffloadInfo
from tunflow.packet import PacketBatch
from tunflow.pipeline import MemorySink, Pipeline, StageSpec, SyncDevicePort, TransportPort
from tunflow.transport import UDPTransport

pytestmark = pytest.mark.anyio


class _ClosedDevice:
    """A SyncDevice closed (by another thread, say) after its last read found nothing."""

    layer, offload_info = Layer.L3, OffloadInfo()

    def if_index(self) -> int:
        return 1

    def name(self) -> str:
        return "stub"

    def mtu(self) -> int:
        return 1500

    def new_batch(self, max_packets: int) -> PacketBatch:
        return PacketBatch(capacity=1 << 16, max_packets=max_packets)

    def fileno(self) -> int:
        return -1

    def recv_batch(self, batch: PacketBatch, *, timeout: float, whole: bool) -> PacketBatch:
        raise TimeoutError


async def test_a_closed_device_or_transport_is_no_port_a_worker_process_can_reopen() -> None:
    """A port says it cannot be handed to a worker process (``handle()`` is ``None``) once
    what it wraps is closed, so processes mode refuses it with a :class:`ConfigError` naming
    it rather than passing fd -1 to the child."""
    device = SyncDevicePort(_ClosedDevice())  # type: ignore[arg-type]
    assert device.handle() is None
    udp = UDPTransport.bind("127.0.0.1:0")
    await udp.aclose()
    transport = TransportPort(udp, name="closed-udp")
    assert transport.handle() is None
    for source in (device, transport):
        p = Pipeline(source, [StageSpec("stats")], MemorySink(), workers="processes")
        with anyio.fail_after(5), pytest.raises(ConfigError, match=f"port '{source.name}'"):
            await p.run()


async def test_a_sync_device_closed_while_its_port_waits_ends_the_read_as_closed() -> None:
    """The read raises :class:`ClosedDeviceError` (an ``anyio.ClosedResourceError``: the
    pipeline's lane ends quietly), not whatever waiting on fd -1 would raise."""
    port = SyncDevicePort(_ClosedDevice())  # type: ignore[arg-type]
    with anyio.fail_after(5), pytest.raises(ClosedDeviceError):
        await port.recv_batch(port.new_batch(), False)
