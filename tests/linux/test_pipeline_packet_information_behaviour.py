"""A device that keeps the OS's packet-information header (``packet_information()``) cannot be
a pipeline's port: stages read bare IP packets, and a worker process would have adopted the
fd without the header. Refused with ``ConfigError`` in both faces; a device built without it
is taken as always."""

from __future__ import annotations

import pytest

from tunflow import ConfigError, DeviceBuilder, testing
from tunflow.pipeline import as_ports

pytestmark = [pytest.mark.needs_root]


@pytest.mark.anyio
async def test_an_async_device_with_packet_information_is_refused(netns: testing.Netns) -> None:
    async with DeviceBuilder().ipv4("10.240.11.1", 24).packet_information().build_async() as dev:
        with pytest.raises(ConfigError, match="packet-information header"):
            as_ports(dev)
        assert dev.fileno() >= 0  # left as it was
    async with DeviceBuilder().ipv4("10.240.11.1", 24).build_async() as dev:
        assert len(as_ports(dev)) == 1


def test_a_sync_device_with_packet_information_is_refused(netns: testing.Netns) -> None:
    builder = DeviceBuilder().ipv4("10.240.12.1", 24).packet_information()
    with builder.build_sync() as dev, pytest.raises(ConfigError, match="packet-information"):
        as_ports(dev)
