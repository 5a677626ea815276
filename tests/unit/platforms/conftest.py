"""Fixtures for the non-Linux backend tests: fake system-call layers that clean up after
themselves."""

from __future__ import annotations

from collections.abc import Callable, Iterator

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
