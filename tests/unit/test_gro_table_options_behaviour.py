"""``GROTable(max_segments=…)`` takes a whole number of segments, at least one."""

from __future__ import annotations

from typing import Any

import pytest

from tunflow import ConfigError
from tunflow.offload import GROTable


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "8", 2.0])
def test_a_max_segments_that_is_not_a_positive_whole_number_is_refused(bad: Any) -> None:
    # 1.5 and True were taken (a fractional or boolean limit on segments), "8" raised a bare
    # TypeError from the comparison
    with pytest.raises(ConfigError, match="max_segments"):
        GROTable(max_segments=bad)


@pytest.mark.parametrize("good", [1, 64, None])
def test_a_positive_whole_max_segments_is_taken(good: int | None) -> None:
    GROTable(max_segments=good)
