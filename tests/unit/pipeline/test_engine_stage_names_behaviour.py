"""Each stage of a pipeline has a name of its own, however the names given collide; a stage's
failing hook is named in the log."""

from __future__ import annotations

import logging

import anyio
import pytest

from tests.unit.pipeline.test_engine import FailingTimer, packets
from tunflow import ConfigError
from tunflow.packet import PacketBatch
from tunflow.pipeline import (
    MemorySink,
    MemorySource,
    Pipeline,
    StageSpec,
    StageStatistics,
    open_pipeline,
)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["a", "a", "a#2"], ["a", "a#3", "a#2"]),
        (["a", "a#2", "a"], ["a", "a#2", "a#3"]),
        (["a", "a", "a"], ["a", "a#2", "a#3"]),
    ],
)
async def test_a_renamed_stage_does_not_take_a_name_another_stage_has(
    given: list[str], expected: list[str]
) -> None:
    # "a", "a", "a#2" became "a", "a#2", "a#2": statistics().stage("a#2") found only the
    # first of the two, and their error counts and logged-once marks were merged; a name
    # given to a stage stays its own ("a#2" is not renamed for the second "a" to take it)
    p = Pipeline(
        MemorySource(packets(3)),
        [StageSpec("stats", name=name) for name in given],
        MemorySink(),
    )
    await p.run()
    names = [s.name for s in p.statistics().stages]
    assert names == expected
    assert all(p.statistics().stage(n).packets_in == 3 for n in names)


@pytest.mark.anyio
async def test_a_timer_that_raises_is_logged_as_the_timer_not_as_a_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the one log line said "raised on a batch (dropped; ...)": no batch was dropped
    src = MemorySource(packets(1) * 10**5, batch_size=8)
    with caplog.at_level(logging.ERROR, logger="tunflow.pipeline"), anyio.fail_after(5):
        async with open_pipeline(src, [FailingTimer()], MemorySink(keep=0)) as p:
            while not p.statistics().stages[0].errors:  # noqa: ASYNC110
                await anyio.sleep(0.01)
    (line,) = [r.getMessage() for r in caplog.records if "failingtimer" in r.getMessage()]
    assert "on_timer()" in line and "on a batch" not in line, line


class FixedName:
    """A stage (the protocol's three members) whose name is read-only."""

    @property
    def name(self) -> str:
        return "fixed"

    def process(self, batch: PacketBatch) -> PacketBatch:
        return batch

    def statistics(self) -> StageStatistics:
        return StageStatistics(self.name)


def test_a_repeated_name_that_cannot_be_changed_is_refused() -> None:
    # the rename's AttributeError was swallowed: two stages called "fixed" shared their
    # statistics and error records
    with pytest.raises(ConfigError, match=r"stages\[1\] is named 'fixed'"):
        Pipeline(MemorySource(packets(1)), [FixedName(), FixedName()], MemorySink())
