"""``tunflow/pipeline/_stage.py``: StageBase's options and counters, a stage's spec, and the
merge of two workers' statistics, as their docstrings and docs/pipeline.md describe them."""

from __future__ import annotations

import attrs
import pytest

from tunflow.pipeline import ErrorPolicy, StageBase, StageSpec, StageStatistics


class Count(StageBase):
    plugin = "count"

    @attrs.frozen
    class Options:
        limit: int = 10


def test_options_given_both_as_an_object_and_as_keywords_are_refused() -> None:
    # one or the other: keywords beside an Options object would be silently ignored
    with pytest.raises(TypeError):
        Count(Count.Options(limit=3), limit=5)


def test_options_of_another_class_are_refused() -> None:
    with pytest.raises(TypeError):
        Count({"limit": 3})
    with pytest.raises(TypeError):
        Count(StageSpec("count"))


def test_count_adds_n_to_its_counter() -> None:
    stage = Count()
    stage.count("files", 3)
    stage.count("files")
    stage.count("rules", 0)
    assert stage.statistics().counters == {"files": 4, "rules": 0}


def test_a_stages_spec_keeps_its_error_policy_for_a_worker_process() -> None:
    # processes mode rebuilds every stage from its spec: a stage told to stop the pipeline on
    # an error must still be so in each worker process
    stage = StageSpec("ratelimit", {"rate": "10mbit"}, name="shaper").build()
    assert isinstance(stage, StageBase)
    stage.on_error = ErrorPolicy.STOP
    spec = stage.spec
    assert spec.on_error is ErrorPolicy.STOP
    rebuilt = spec.build()
    assert rebuilt.name == "shaper"
    assert getattr(rebuilt, "on_error", None) is ErrorPolicy.STOP


def test_a_specs_options_are_its_own_and_cannot_change() -> None:
    options = {"rate": "10mbit"}
    spec = StageSpec("ratelimit", options)
    options["rate"] = "1mbit"
    assert spec.options == {"rate": "10mbit"}
    with pytest.raises(TypeError):
        spec.options["rate"] = "1mbit"  # type: ignore[index]
    assert spec.options == {"rate": "10mbit"}


def test_merge_sums_every_count_of_two_workers_records() -> None:
    a = StageStatistics(
        "f",
        packets_in=1,
        bytes_in=10,
        packets_out=2,
        bytes_out=20,
        batches=3,
        errors=4,
        drops={"denied": 1},
        counters={"rule": 2},
        gauges={"rate": 1.5},
    )
    b = StageStatistics(
        "f",
        plugin="filter",
        packets_in=100,
        bytes_in=1000,
        packets_out=200,
        bytes_out=2000,
        batches=300,
        errors=400,
        drops={"denied": 5, "error": 7},
        counters={"rule": 1, "other": 3},
        gauges={"rate": 2.0},
    )
    assert a.merge(b) == StageStatistics(
        "f",
        plugin="filter",
        packets_in=101,
        bytes_in=1010,
        packets_out=202,
        bytes_out=2020,
        batches=303,
        errors=404,
        drops={"denied": 6, "error": 7},
        counters={"rule": 3, "other": 3},
        gauges={"rate": 3.5},
    )
    # (the plugin name is the same in both, or known to one: a record built without it)
    assert b.merge(a).plugin == "filter"


def test_merge_keeps_the_last_error_of_the_record_merged_in() -> None:
    earlier = StageStatistics("f", errors=1, last_error="ValueError: first")
    later = StageStatistics("f", errors=1, last_error="KeyError: second")
    clean = StageStatistics("f")
    assert earlier.merge(later).last_error == "KeyError: second"
    assert earlier.merge(clean).last_error == "ValueError: first"
    assert clean.merge(earlier).last_error == "ValueError: first"
