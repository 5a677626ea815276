"""Device edges on the real kernel: what a closed device says whatever it is given."""

from __future__ import annotations

import anyio
import pytest

from tunflow import ClosedDeviceError, DeviceBuilder, testing

pytestmark = pytest.mark.needs_root

#: packets a TUN's send refuses when open: a wrong version nibble, one over the MTU, nothing
BAD_PACKETS = [b"\x00" * 20, b"\x45" + bytes(70_000), b""]


@pytest.mark.parametrize("how", ["shutdown", "close"])
@pytest.mark.parametrize("packet", BAD_PACKETS, ids=["malformed", "too-large", "empty"])
def test_a_closed_sync_device_refuses_a_bad_packet_as_closed(
    netns: testing.Netns, how: str, packet: bytes
) -> None:
    # (it raised MalformedPacketError / PacketTooLargeError: a sender's loop that ends on
    # ClosedResourceError, as on the async face, took the device for still open)
    dev = DeviceBuilder().ipv4("10.44.10.1", 24).build_sync()
    getattr(dev, how)()
    with pytest.raises(ClosedDeviceError):
        dev.send(packet)
    with pytest.raises(ClosedDeviceError):
        dev.send_vectored([packet])
    with pytest.raises(ClosedDeviceError):
        dev.send_many([packet])
    dev.close()


@pytest.mark.anyio
@pytest.mark.parametrize("packet", BAD_PACKETS, ids=["malformed", "too-large", "empty"])
async def test_a_closed_async_device_refuses_a_bad_packet_as_closed(
    netns: testing.Netns, packet: bytes
) -> None:
    dev = DeviceBuilder().ipv4("10.44.10.1", 24).build_async()
    await dev.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await dev.send(packet)
    with pytest.raises(anyio.ClosedResourceError):
        dev.send_nowait(packet)
    with pytest.raises(anyio.ClosedResourceError):
        await dev.send_vectored([packet])
