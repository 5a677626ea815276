"""Small behaviours reviewers noticed: the builder's ``ipv6_tuple``, a run's missing ends,
a cleared ``DatagramBatch``'s origin."""

from __future__ import annotations

from ipaddress import IPv6Interface

import pytest

from tunflow import ConfigError, DeviceBuilder
from tunflow.config import loads_config
from tunflow.datagram import DatagramBatch


def test_ipv6_tuple_takes_an_address_with_its_prefix_alone() -> None:
    b = DeviceBuilder().ipv6_tuple(
        ["fd00::1/64", IPv6Interface("fd01::1/80"), ("fd02::1", 96), ["fd03::1", "112"]]
    )
    assert b.config().ipv6 == (
        IPv6Interface("fd00::1/64"),
        IPv6Interface("fd01::1/80"),
        IPv6Interface("fd02::1/96"),
        IPv6Interface("fd03::1/112"),
    )


@pytest.mark.parametrize(
    ("addresses", "message"),
    [
        (["fd00::1"], "needs a prefix"),
        ([("fd00::1/64", 64)], "already has a prefix"),
        ([("fd00::1",)], "pairs"),
        ([("fd00::1", 64, 1)], "pairs"),
        ([64], "pairs"),
        (["ab"], "needs a prefix"),  # (not unpacked as the pair ("a", "b"))
        ("fd00::1/64", "a list"),  # (one address, not a list of them)
        (IPv6Interface("fd00::1/64"), "a list"),
        (None, "a list"),
        (64, "a list"),
    ],
)
def test_ipv6_tuple_refuses_with_a_config_error(addresses: object, message: str) -> None:
    b = DeviceBuilder()
    with pytest.raises(ConfigError, match=message):
        b.ipv6_tuple(addresses)  # type: ignore[arg-type]


def test_ipv6_tuple_adds_nothing_when_one_address_is_bad() -> None:
    b = DeviceBuilder().ipv6("fd00::1/64")
    with pytest.raises(ConfigError):
        b.ipv6_tuple([("fd01::1", 64), ("nonsense", 64)])
    assert b.config().ipv6 == (IPv6Interface("fd00::1/64"),)


ENDS = """
[devices.a]
[devices.b]
[[stages]]
plugin = "stats"
"""


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ('[pipeline]\nsink = "a"\n', "pipeline.source"),
        ('[pipeline]\nsource = "b"\n', "pipeline.sink"),
        ('[tunnel]\nremote = "b"\n', "tunnel.local"),
        ('[tunnel]\nlocal = "a"\n', "tunnel.remote"),
    ],
)
def test_a_missing_end_is_called_missing_at_its_key(section: str, path: str) -> None:
    # (it said "'' is not a device or transport (defined: a, b)")
    with pytest.raises(ConfigError) as info:
        loads_config(ENDS + section, file="bad.toml")
    assert info.value.path == path
    assert (
        str(info.value) == f"bad.toml: {path}: missing: name a device or transport (defined: a, b)"
    )
    assert "''" not in str(info.value)


def test_a_wrong_end_is_still_named() -> None:
    with pytest.raises(ConfigError) as info:
        loads_config(ENDS + '[pipeline]\nsource = "c"\nsink = "a"\n', file="bad.toml")
    assert info.value.path == "pipeline.source"
    assert str(info.value).endswith("'c' is not a device or transport (defined: a, b)")


def test_a_cleared_datagram_batch_has_no_origin() -> None:
    # ``origin`` is the transport a received batch came from, "None otherwise"; a batch
    # cleared and filled by hand must not carry the last receive's transport into the
    # WireGuard stage, which answers through any origin that is not None
    b = DatagramBatch(4096)
    b.append(b"abc", address=("192.0.2.1", 51820))
    b.origin = object()
    b.clear()
    assert b.origin is None
    assert len(b) == 0
