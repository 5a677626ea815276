"""What a reload does to an interface's routes (``_routing.route_diff``) and how it is said
(``RouteChanges.describe``): pure logic, no kernel (the kernel side is in
``tests/linux/test_vpn_cli.py``)."""

from __future__ import annotations

from ipaddress import ip_network

from tunflow.wireguard._routing import Network, RouteChanges, route_diff


def nets(*text: str) -> set[Network]:
    return {ip_network(t) for t in text}


def test_new_prefixes_are_added_and_gone_ones_removed() -> None:
    add, remove, restart = route_diff(
        nets("10.1.1.0/24", "10.1.3.0/24"),
        (),
        nets("10.1.1.0/24", "10.1.2.0/24", "fd01::/64"),
        "auto",
    )
    assert add == (ip_network("10.1.2.0/24"), ip_network("fd01::/64"))
    assert remove == (ip_network("10.1.3.0/24"),)
    assert restart == ()


def test_only_what_was_routed_is_removed() -> None:
    # 10.1.0.0/24 was in AllowedIPs but its route was there already (the interface's own
    # prefix): not routed here, so not removed when it leaves the file; while it is in the
    # file it is tried again (and found there)
    add, remove, _ = route_diff(nets("10.1.1.0/24"), (), nets("10.1.0.0/24"), "auto")
    assert add == (ip_network("10.1.0.0/24"),)
    assert remove == (ip_network("10.1.1.0/24"),)


def test_default_routes_under_auto_are_apart() -> None:
    # 0.0.0.0/0 appears, ::/0 (in the policy table since up) goes: not prefix routes, they
    # come and go with their policy rules (Routes.update)
    add, remove, restart = route_diff(
        nets("10.1.1.0/24"), nets("::/0"), nets("10.1.1.0/24", "0.0.0.0/0"), "auto"
    )
    assert (add, remove) == ((), ())
    assert restart == (ip_network("0.0.0.0/0"), ip_network("::/0"))
    # unchanged, they are no change
    assert route_diff((), nets("::/0"), nets("::/0"), "auto") == ((), (), ())


def test_a_table_number_takes_default_routes_as_any_prefix() -> None:
    add, remove, restart = route_diff(nets("10.1.1.0/24"), (), nets("0.0.0.0/0", "::/0"), 1234)
    assert add == (ip_network("0.0.0.0/0"), ip_network("::/0"))
    assert remove == (ip_network("10.1.1.0/24"),)
    assert restart == ()


def test_table_off_changes_nothing() -> None:
    assert route_diff(nets("10.1.1.0/24"), (), nets("10.1.2.0/24"), "off") == ((), (), ())


def test_changes_described_in_one_line() -> None:
    assert not RouteChanges() and RouteChanges().describe() == ""
    changes = RouteChanges(
        added=(ip_network("10.1.2.0/24"), ip_network("fd01::/64")),
        removed=(ip_network("10.1.3.0/24"),),
        refused=("add 10.1.4.0/24: Network is unreachable",),
        restart=(ip_network("0.0.0.0/0"),),
    )
    assert changes.describe() == (
        "routes added 10.1.2.0/24, fd01::/64; routes removed 10.1.3.0/24; "
        "routes refused: add 10.1.4.0/24: Network is unreachable; "
        "default route change (0.0.0.0/0) needs a restart (tunflow down, up)"
    )
