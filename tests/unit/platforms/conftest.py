"""Fixtures for the non-Linux backend tests: fake system-call layers that clean up after
themselves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tunflow.platform.fake import FakeSyscalls


@pytest.fixture
def make_fake() -> Iterator[Callable[[str], FakeSyscalls]]:
    """Make :class:`FakeSyscalls` for a platform; every real fd they hold is closed afterwards."""
    made: list[FakeSyscalls] = []

    def make(platform: str) -> FakeSyscalls:
        fake = FakeSyscalls(platform)
        made.append(fake)
        return fake

    yield make
    for fake in made:
        fake.close_all()


@pytest.fixture
def wintun_device(make_fake: Callable[[str], FakeSyscalls]) -> Iterator[Any]:
    """A Wintun device on the fake Windows layer: ``(fake, interface, queue)``, closed after."""
    from tunflow.platform import windows

    from .test_windows import tun_config

    fake = make_fake("windows")
    iface, queue = windows.open_device(tun_config(dns_servers=(), routes=()), syscalls=fake)
    yield fake, iface, queue
    queue.close()
    iface.close()
