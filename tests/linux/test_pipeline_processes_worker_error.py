"""What a worker process's failure says about the error behind it: the class of what a stage's
``start()`` raised comes with the :class:`WorkerError`, which stays a ``WorkerError``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tunflow import DeviceBuilder, testing
from tunflow.pipeline import GROUP, StageSpec, WorkerError, _plugins, open_pipeline

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
    info = tmp_path / "tunflow_test_failing-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tunflow-test-failing\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(f"[{GROUP}]\nfails_to_start = {_MODULE}:FailsToStart\n")
    (tmp_path / f"{_MODULE}.py").write_text(_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_plugins, "_cache", None)
    monkeypatch.setattr(_plugins, "_loaded", {})
    monkeypatch.setattr(_plugins, "_clashes", {})
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
