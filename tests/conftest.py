"""Shared fixtures: anyio backends, root detection, throw-away namespaces, leak checks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tunflow import testing

IS_ROOT = os.geteuid() == 0 and os.path.exists("/dev/net/tun")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="needs root and /dev/net/tun")
    for item in items:
        if "needs_root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def netns() -> Iterator[testing.Netns]:
    """A fresh namespace the test thread runs in; deleted (with its interfaces) afterwards."""
    with testing.netns(enter=True) as ns:
        yield ns


@pytest.fixture
def netns_pair() -> Iterator[tuple[testing.Netns, testing.Netns]]:
    """Two fresh namespaces, not entered; deleted afterwards."""
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        yield a, b


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers() -> Iterator[None]:
    """Fail the session if any test left an interface or namespace behind."""
    if not IS_ROOT:
        yield
        return
    # Only this process's names: other test runs may share the machine.
    pid = os.getpid()
    yield
    links = set(testing.leftover_interfaces(pid))
    spaces = set(testing.leftover_namespaces(pid))
    assert not links, f"tests left interfaces behind: {sorted(links)}"
    assert not spaces, f"tests left namespaces behind: {sorted(spaces)}"
    # control sockets and pid/log files of VPN interfaces the tests named
    files = [
        str(p)
        for d in ("/var/run/wireguard", "/run/tunflow")
        if os.path.isdir(d)
        for p in Path(d).iterdir()
        if testing._ours(p.name.split(".")[0], pid)
    ]
    assert not files, f"tests left files behind: {files}"
