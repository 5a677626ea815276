"""Processes mode with a third-party plugin found only on a directory the program put on its
sys.path at run time: its option values reach the worker, and what does not is said."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.helpers import child_processes, install_stage_plugins
from tunflow import ConfigError, DeviceBuilder, testing
from tunflow.pipeline import StageSpec, open_pipeline

from .pipeline_topology import wait_until

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]

_MODULE = "tunflow_test_modal_plugin"

_SOURCE = """
import enum
from typing import Any

import attrs

from tunflow.pipeline import StageBase


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class Modal(StageBase):
    plugin = "modal"

    @attrs.frozen
    class Options:
        mode: Mode = Mode.SLOW
        tag: Any = None

    async def start(self, context):
        self.count(f"mode_{self.options.mode.value}")
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """The ``modal`` stage plugin, installed (a dist-info) in ``tmp_path``, which only this
    process's sys.path names; its module, imported."""
    install_stage_plugins(
        tmp_path,
        monkeypatch,
        "tunflow-test-modal",
        f"modal = {_MODULE}:Modal\n",
        {f"{_MODULE}.py": _SOURCE},
    )
    try:
        yield __import__(_MODULE)
    finally:
        sys.modules.pop(_MODULE, None)


async def test_an_option_of_a_plugins_own_class_reaches_the_worker(
    netns: testing.Netns, plugin: Any
) -> None:
    """The worker unpickled its job before it put the parent's sys.path on its own: the
    plugin's ``Mode`` was not found, and the worker "exited with status 1 without reporting"."""
    stage = StageSpec("modal", {"mode": plugin.Mode.FAST})
    async with DeviceBuilder().ipv4("10.240.21.1", 24).build_async() as dev:
        with anyio.fail_after(30):
            async with open_pipeline(
                dev, [stage], dev, workers="processes", statistics_interval=0.05
            ) as p:
                await wait_until(
                    lambda: p.statistics().stage("modal").counters.get("mode_fast") == 1,
                    "the worker's report of the mode it was given",
                )


async def test_a_job_the_worker_cannot_unpickle_is_a_config_error(
    netns: testing.Netns, plugin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An option value of a class whose module the worker cannot import (here one made in
    memory): said as such, not as a worker that exited without a word."""
    ghost = types.ModuleType("tunflow_test_ghost")
    exec("class Ghost:\n    pass\n", ghost.__dict__)
    ghost.Ghost.__module__ = ghost.__name__
    monkeypatch.setitem(sys.modules, ghost.__name__, ghost)
    stage = StageSpec("modal", {"tag": ghost.Ghost()})
    stage.build()  # the options fit: only the worker cannot read them
    async with DeviceBuilder().ipv4("10.240.21.1", 24).build_async() as dev:
        before = child_processes()
        with (
            anyio.fail_after(30),
            pytest.raises(
                ConfigError,
                match=r"cannot be read in a worker process.*"
                r"ModuleNotFoundError: No module named 'tunflow_test_ghost'",
            ),
        ):
            async with open_pipeline(dev, [stage], dev, workers="processes"):
                pass
        assert child_processes() == before
