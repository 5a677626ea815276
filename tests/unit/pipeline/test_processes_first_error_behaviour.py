"""Processes mode, parent side, against children faked with socket pairs: the first failure a
worker reports is the one ``run()`` raises. Reports already waiting when it comes are still
read (a receive that finds data is no checkpoint, so the cancellation has not reached the
supervising tasks yet) — another worker failing in the same turn, say — and must not replace
it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tests.unit.pipeline.test_processes_behaviour import (
    _ENDED,
    _FakeChildren,
    _pipeline,
    children,  # noqa: F401 - the fixture
)
from tunflow import ConfigError
from tunflow.pipeline import StageError

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "then",
    [
        ("error", "worker", "RuntimeError: the lane's sink is gone", None),
        ("error", "config", "stages[0] (boom): bad option", None),
        ("error", "stage", "stages[0] (other): RuntimeError: y", "other"),
        ("no such message",),
    ],
    ids=["worker-error", "config-error", "another-stage-error", "garbled"],
)
async def test_the_first_error_a_worker_reports_is_the_one_run_raises(
    children: _FakeChildren,  # noqa: F811
    then: tuple[Any, ...],
) -> None:
    """A stage failed under ``on_error="stop"``, and more comes on the same socket before the
    parent stops the worker (an error, a garbled message): ``run()`` raises the
    :class:`StageError` naming the stage that failed first, not what was read after it."""
    children.said.append(
        [("error", "stage", "stages[0] (boom): RuntimeError: x", "boom"), then, _ENDED]
    )
    with anyio.fail_after(5), pytest.raises(StageError, match="RuntimeError: x") as info:
        await _pipeline().run()
    assert info.value.stage == "boom"


async def test_a_config_error_reported_first_stands_over_a_later_stage_error(
    children: _FakeChildren,  # noqa: F811
) -> None:
    children.said.append(
        [
            ("error", "config", "stages[0] (boom): bad option", None),
            ("error", "stage", "stages[0] (boom): RuntimeError: x", "boom"),
            _ENDED,
        ]
    )
    with anyio.fail_after(5), pytest.raises(ConfigError, match="bad option"):
        await _pipeline().run()


async def test_of_two_workers_failing_in_one_turn_the_first_read_is_raised(
    children: _FakeChildren,  # noqa: F811
    anyio_backend: tuple[str, dict[str, Any]],
) -> None:
    """Two workers whose failures arrive together: both are read before the cancellation
    reaches the supervising tasks, and ``run()`` raises the one read first — on asyncio and
    uvloop worker 0's, whose task runs first (trio runs ready tasks in no set order)."""
    if anyio_backend[0] == "trio":
        pytest.skip("trio runs ready tasks in no set order")
    children.said.extend(
        [
            [("error", "stage", "stages[0] (boom): RuntimeError: x", "boom"), _ENDED],
            [("error", "worker", "RuntimeError: the lane's sink is gone", None), _ENDED],
        ]
    )
    with anyio.fail_after(5), pytest.raises(StageError, match="RuntimeError: x"):
        await _pipeline().run()
