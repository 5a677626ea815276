"""``send()`` given something that is not a bytes-like object (a str, an int, None) raises a
TypeError that says what a packet is, not the internals its check tripped on ("unsupported
operand type(s) for >>"), on both faces and on TUN and TAP alike."""

from __future__ import annotations

from typing import Any

import pytest

from tunflow import DeviceBuilder, Layer, testing

pytestmark = [pytest.mark.needs_root]

NOT_BUFFERS: list[Any] = ["abc", 42, None]


@pytest.mark.parametrize("layer", [Layer.L3, Layer.L2])
def test_sync_send(netns: testing.Netns, layer: Layer) -> None:
    with DeviceBuilder().layer(layer).build_sync() as dev:
        for item in NOT_BUFFERS:
            with pytest.raises(TypeError, match="bytes-like object"):
                dev.send(item)


@pytest.mark.anyio
async def test_async_send(netns: testing.Netns) -> None:
    async with DeviceBuilder().build_async() as dev:
        for item in NOT_BUFFERS:
            with pytest.raises(TypeError, match="bytes-like object"):
                await dev.send(item)
