"""set_name's fallback for a kernel that refuses to rename a running link (EBUSY): only the
rename's own EINVAL is "the kernel refuses this name"."""

from __future__ import annotations

import errno
import os
from typing import Any

import pytest

from tests.helpers import refuse_renames_while_up
from tunflow import ConfigError, DeviceBuilder, DeviceError, testing

pytestmark = pytest.mark.needs_root


def _einval(*args: Any, **kw: Any) -> None:
    raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))


def test_an_einval_putting_routes_back_is_not_blamed_on_the_name(netns: testing.Netns) -> None:
    # The rename worked; putting the route back failed with EINVAL, and the caller was told
    # the kernel refuses the name — a ConfigError for a name the link now has.
    with DeviceBuilder().ipv4("10.64.0.1", 24).route("198.51.100.0/24").build_sync() as dev:
        nl = dev._shared.interface._nl  # type: ignore[union-attr]
        refuse_renames_while_up(nl)
        nl.add_route = _einval
        new = testing.unique_name("r")
        try:
            with pytest.raises(DeviceError) as info:
                dev.set_name(new)
        finally:
            del nl.set_link, nl.add_route
        assert not isinstance(info.value, ConfigError)
        assert info.value.errno == errno.EINVAL
        assert "put back its addresses and routes" in str(info.value)
        assert dev.name() == new
        assert dev.is_running()


def test_the_renames_own_einval_after_ebusy_still_names_the_name(netns: testing.Netns) -> None:
    with DeviceBuilder().ipv4("10.64.0.1", 24).build_sync() as dev:
        nl = dev._shared.interface._nl  # type: ignore[union-attr]
        set_link = nl.set_link
        old = dev.name()

        def refusing(index: int, **kw: Any) -> None:
            if "name" in kw:
                up = nl.link(index).is_up
                raise OSError(errno.EBUSY if up else errno.EINVAL, "refused")
            set_link(index, **kw)

        nl.set_link = refusing
        try:
            with pytest.raises(ConfigError, match="refuses this name"):
                dev.set_name(testing.unique_name("r"))
        finally:
            del nl.set_link
        assert dev.name() == old
        assert dev.is_running()
