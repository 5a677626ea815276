"""``skip_time`` takes a finite, non-negative number of seconds."""

from __future__ import annotations

import math

import pytest

from tunflow import testing
from tunflow.wireguard import InterfaceConfig, PrivateKey, open_interface

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("seconds", [math.nan, math.inf, -1.0])
async def test_a_skip_that_is_not_a_finite_forward_step_is_refused(
    netns: testing.Netns, seconds: float
) -> None:
    # NaN passed the `< 0` check and made the protocol's clock NaN for good (every deadline
    # compare false: no rekey, no keepalive, no expiry ever again); inf put every deadline in
    # the past at once, for ever.
    config = InterfaceConfig(PrivateKey.generate(), listen_port=0)
    async with open_interface(config, name=testing.unique_name("sk"), netns=netns.name) as iface:
        before = iface._clock()
        with pytest.raises(ValueError, match="finite"):
            iface.skip_time(seconds)
        assert math.isfinite(iface._clock()) and iface._clock() - before < 60
