"""The ``stats`` stage at its edges: its interval, a clock that has not moved, a version that is
neither 4 nor 6, and ``protocols = false``."""

from __future__ import annotations

import pytest

from tests.helpers import ipv4_udp
from tests.unit.pipeline.test_stages import Clock, batch_of
from tunflow import ConfigError
from tunflow.pipeline import Lane, StageSpec
from tunflow_plugins import stats as stats_module
from tunflow_plugins.stats import StatsStage


@pytest.mark.parametrize("interval", [0, -1.0])
def test_an_interval_that_is_not_positive_is_refused(interval: float) -> None:
    with pytest.raises(ConfigError, match="interval"):
        StageSpec("stats", {"interval": interval}).build()


def test_rates_are_measured_every_interval() -> None:
    assert StatsStage(interval=5.0).timer_interval == 5.0


@pytest.mark.anyio
async def test_a_timer_at_the_same_instant_keeps_the_rates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = Clock()
    monkeypatch.setattr(stats_module.time, "monotonic", c)
    stage = StatsStage()
    stage.bind(Lane())(batch_of([bytes(100)] * 10))
    c.now += 1.0
    await stage.on_timer()
    await stage.on_timer()  # (a coarse clock: no time passed)
    assert stage.gauges() == {"pps": 10.0, "bps": 8000.0}


def test_a_version_neither_4_nor_6_is_not_ip() -> None:
    udp = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")
    stage = StatsStage()
    stage.bind(Lane())(batch_of([udp, b"\x55" + udp[1:], b"\x05" + udp[1:]]))
    c = stage.statistics().counters
    assert (c["ipv4"], c["ipv6"], c["udp"], c["not_ip"], c["other"]) == (1, 0, 1, 2, 0)


def test_without_protocols_only_packets_and_bytes_are_counted() -> None:
    udp = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")
    stage = StatsStage(protocols=False)
    stage.bind(Lane())(batch_of([udp] * 3))
    c = stage.statistics().counters
    assert (c["packets"], c["bytes"]) == (3, 3 * len(udp))
    assert c["ipv4"] == c["udp"] == c["not_ip"] == 0
