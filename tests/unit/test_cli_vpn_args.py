"""The VPN commands' arguments, as the parser takes them (nothing here runs a command)."""

from __future__ import annotations

import math

import pytest

from tunflow.cli import build_parser


@pytest.mark.parametrize("command", ["down", "save", "reload"])
@pytest.mark.parametrize("value", ["nan", "-1", "-inf", "soon"])
def test_a_timeout_that_is_no_wait_is_refused(
    command: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # nan would pass no deadline: `down` of a process slow to stop waited for ever
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args([command, "wg0", f"--timeout={value}"])
    assert exit.value.code == 2
    assert "not a number of seconds" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "seconds"), [("0", 0.0), ("2.5", 2.5), ("inf", math.inf)])
def test_a_timeout_is_seconds(value: str, seconds: float) -> None:
    assert build_parser().parse_args(["down", "wg0", "--timeout", value]).timeout == seconds
