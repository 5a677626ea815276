"""What a worker process's failure says about the error behind it: the class of what a stage's
``start()`` raised comes with the :class:`WorkerError`, which stays a ``WorkerError``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.helpers import install_stage_plugins
from tunflow import DeviceBuilder, testing
from tunflow.pipeline import StageSpec, WorkerError, open_pipeline

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]

_MODULE = "tunflow_test_failing_plugin"

_SOURCE = """
from tunflow.pipeline import StageBase


class TableMissing(LookupError):
    pass


class FailsToStart(StageBase):
    plugin = "fails_to_start"

    async def start(self, context):
        raise TableMissing("no table 'main'")
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The ``fails_to_start`` stage plugin, installed (a dist-info) in ``tmp_path``."""
    install_stage_plugins(
        tmp_path,
        monkeypatch,
        "tunflow-test-failing",
        f"fails_to_start = {_MODULE}:FailsToStart\n",
        {f"{_MODULE}.py": _SOURCE},
    )
    try:
        yield
    finally:
        sys.modules.pop(_MODULE, None)


async def test_a_worker_error_names_the_class_of_what_start_raised(
    netns: testing.Netns, plugin: None
) -> None:
    """In tasks mode the error comes as itself; in processes mode it came as a WorkerError whose
    text alone said what it was."""
    async with DeviceBuilder().ipv4("10.240.22.1", 24).build_async() as dev:
        with anyio.fail_after(30), pytest.raises(WorkerError, match="no table") as caught:
            async with open_pipeline(dev, [StageSpec("fails_to_start")], dev, workers="processes"):
                pass
    assert type(caught.value) is WorkerError
    assert caught.value.exception_type == "TableMissing"
    assert caught.value.exception_module == _MODULE


def test_a_worker_error_without_an_error_behind_it_names_no_class() -> None:
    error = WorkerError("worker process 0 (pid 1) exited with status 1 without reporting")
    assert error.exception_type is None and error.exception_module is None
