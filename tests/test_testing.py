from __future__ import annotations

import pytest

from tunflow import testing

pytestmark = pytest.mark.needs_root


def test_netns_is_entered_and_removed() -> None:
    with testing.netns() as ns:
        name = ns.name
        assert name in testing.leftover_namespaces()
        links = {link["ifname"] for link in testing.ip_json("link", "show")}
        assert links == {"lo"}  # the thread sees the new namespace, not the host's
    assert name not in testing.leftover_namespaces()
    assert "lo" in {link["ifname"] for link in testing.ip_json("link", "show")}


def test_netns_removed_when_body_fails() -> None:
    with pytest.raises(ZeroDivisionError), testing.netns() as ns:
        name = ns.name
        1 / 0  # noqa: B018
    assert name not in testing.leftover_namespaces()


def test_veth_pair_connects(netns_pair: tuple[testing.Netns, testing.Netns]) -> None:
    a, b = netns_pair
    testing.veth_pair(a, b, "192.0.2.1/24", "192.0.2.2/24")
    a.run("ping", "-c", "1", "-W", "5", "192.0.2.2")
