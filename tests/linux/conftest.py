"""Fixtures the real-kernel netlink tests share (test_netlink, test_netlink_behaviour)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import pytest

from tunflow import testing
from tunflow.platform.linux.netlink import RtNetlink


class Link(NamedTuple):
    index: int
    name: str
    peer: str


@pytest.fixture
def nl(netns: testing.Netns) -> Iterator[RtNetlink]:
    with RtNetlink() as sock:
        yield sock


@pytest.fixture
def link(netns: testing.Netns, nl: RtNetlink) -> Link:
    """One end of a veth pair whose other end (``peer``) is up (so this end gets a carrier when
    up)."""
    name, peer = testing.unique_name("v"), testing.unique_name("p")
    testing.run("ip", "link", "add", name, "type", "veth", "peer", "name", peer)
    testing.run("ip", "link", "set", peer, "up")
    return Link(nl.link_by_name(name).index, name, peer)
