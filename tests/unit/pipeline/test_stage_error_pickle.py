"""A pipeline's errors survive pickling: a pipeline run in a process pool raises them there, and
the pool sends them back pickled."""

from __future__ import annotations

import copy
import pickle

from tunflow.pipeline import StageError, WorkerError


def test_a_stage_error_pickles_with_its_stage() -> None:
    """``StageError.__init__`` takes ``stage`` by keyword only, and unpickling called it with
    the message alone: TypeError (a process pool that got one back broke)."""
    error = StageError("stage 'stats' raised ValueError: boom", stage="stats")
    for back in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(back) is StageError
        assert str(back) == str(error) and back.stage == "stats"


def test_a_worker_error_pickles_with_the_class_it_names() -> None:
    error = WorkerError("worker process 0: KeyError: 'x'", exception_type="KeyError")
    back = pickle.loads(pickle.dumps(error))
    assert str(back) == str(error) and back.exception_type == "KeyError"
