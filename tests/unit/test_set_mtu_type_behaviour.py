"""``set_mtu('x')`` / ``set_mtu_v6(1.5)`` on a built device say the value is not an int, as the
builder's ``mtu()`` does, instead of "MTU 'x' is outside 68..65535" (through the fake Windows
platform, which has both calls)."""

from __future__ import annotations

from typing import Any

import pytest

from tunflow import ConfigError, DeviceBuilder
from tunflow.platform.fake import pretend_platform


@pytest.mark.parametrize("value", ["x", 1.5, True, None])
def test_a_value_that_is_not_an_int(value: Any) -> None:
    with pretend_platform("windows") as fake:
        with DeviceBuilder().name("tf0").build_sync() as dev:
            with pytest.raises(ConfigError, match=rf"^MTU must be an int, not {value!r}$"):
                dev.set_mtu(value)
            with pytest.raises(ConfigError, match=rf"^IPv6 MTU must be an int, not {value!r}$"):
                dev.set_mtu_v6(value)
            with pytest.raises(ConfigError, match=r"^MTU 67 is outside 68\.\.65535$"):
                dev.set_mtu(67)
        fake.close_all()
