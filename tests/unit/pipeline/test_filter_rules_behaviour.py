"""The ``filter`` stage's rules at their edges: option bounds, a port given as text, protocol
names in any case, and drop counters that add up over batches."""

from __future__ import annotations

import pytest

from tests.helpers import ipv4_udp
from tests.unit.pipeline.test_filter import batch_of
from tunflow import ConfigError
from tunflow.device import Layer
from tunflow.pipeline import Lane, StageSpec
from tunflow_plugins.filter import FilterStage


@pytest.mark.parametrize(
    "rule",
    [
        {"action": "deny", "protocol": 256},
        {"action": "deny", "dst_ports": [65536]},
        {"action": "deny", "src_ports": ["1-65536"]},
        {"action": "deny", "icmp_types": [256]},
    ],
)
def test_a_value_one_past_its_range_is_refused(rule: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        StageSpec("filter", {"rules": [rule]}).build()


@pytest.mark.parametrize(
    "rule",
    [
        {"action": "deny", "protocol": 255},
        {"action": "deny", "dst_ports": [65535, "0-65535"]},
        {"action": "deny", "icmp_types": [255]},
    ],
)
def test_the_last_value_of_a_range_is_taken(rule: dict[str, object]) -> None:
    StageSpec("filter", {"rules": [rule]}).build()


def test_a_port_given_as_text_is_that_port_alone() -> None:
    f = FilterStage(rules=[{"action": "deny", "dst_ports": ["80"]}])
    pk = [ipv4_udp("10.0.0.1", "10.0.0.2", 1, p, b"") for p in (80, 81, 65535)]
    assert f.bind(Lane())(batch_of(pk)).to_list() == pk[1:]


def test_a_protocol_name_is_taken_in_any_case() -> None:
    f = FilterStage(rules=[{"action": "deny", "protocol": "UDP"}])
    pk = [ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")]
    assert len(f.bind(Lane())(batch_of(pk))) == 0
    assert f.statistics().drops == {"denied": 1}


def test_drops_add_up_over_batches() -> None:
    f = FilterStage(rules=[{"action": "deny", "dst_ports": [1]}], default="deny", non_ip="deny")
    proc = f.bind(Lane(layer=Layer.L2))
    eth = bytes(12) + b"\x08\x00"
    frames = [
        eth + ipv4_udp("10.0.0.1", "10.0.0.2", 1, 1, b""),  # denied by the rule
        eth + ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b""),  # denied by the default
        bytes(12) + b"\x08\x06" + bytes(28),  # ARP
        eth + b"\x45\x00",  # truncated
    ]
    for _ in range(3):
        assert len(proc(batch_of(frames))) == 0
    s = f.statistics()
    assert s.drops == {"denied": 3, "default": 3, "non_ip": 3, "malformed:truncated": 3}
    assert s.counters == {"rule0": 3, "default": 3}
