"""``tunflow check`` and ``tunflow stages`` (``run`` needs root: tests/linux/test_cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import example_environment
from tunflow.cli import COMMAND_MODULES, build_parser, main

CONFIG = """
[devices.a]
name = "tf0"
[[stages]]
plugin = "stats"
[pipeline]
source = "a"
sink = "a"
"""


def test_check_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(CONFIG)
    assert main(["check", str(path)]) == 0
    assert "ok" in capsys.readouterr().out


def test_check_names_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        CONFIG.replace('plugin = "stats"', 'plugin = "stats"\noptions = { interval = -1 }')
    )
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: stages[0].options" in err and "interval" in err


def test_check_a_file_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\xff\xfe")
    assert main(["check", str(path)]) == 2
    assert capsys.readouterr().err == f"tunflow: {path}: not UTF-8 text (byte 0xff at offset 0)\n"


def test_stages_lists_plugins_with_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stages", "--json"]) == 0
    listing = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert {"gro", "gso", "filter", "capture", "ratelimit", "stats"} <= set(listing)
    assert "rate" in [o["name"] for o in listing["ratelimit"]["options"]]
    assert main(["stages"]) == 0
    assert "ratelimit" in capsys.readouterr().out


def test_commands_are_pluggable() -> None:
    assert COMMAND_MODULES[0] == "tunflow.cli.pipeline"
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args([])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interval", "0"], "argument --interval: must be a positive number of seconds, not 0"),
        (["--interval", "-1"], "argument --interval: must be a positive number of seconds"),
        (["--interval", "soon"], "argument --interval: 'soon' is not a number of seconds"),
        (["--duration", "-2"], "argument --duration: must be a positive number of seconds"),
    ],
)
def test_run_refuses_a_non_positive_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(CONFIG)
    with pytest.raises(SystemExit) as info:
        main(["run", str(path), *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def _hidden(
    modules: list[str], argv: list[str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """``tunflow argv`` in a fresh interpreter where ``modules`` cannot be imported."""
    code = (
        "import sys\n"
        f"for m in {modules!r}: sys.modules[m] = None\n"
        "from tunflow.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        env=example_environment(),  # this tree's tunflow, not an installed one
    )


def test_a_missing_extra_is_named_not_a_traceback(tmp_path: Path) -> None:
    # installed without the `vpn` extra, every VPN command died with a ModuleNotFoundError
    done = _hidden(["cryptography"], ["genkey"], tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "tunflow: this needs cryptography, which tunflow's 'vpn' extra installs: "
        "pip install 'tunflow[vpn]'\n"
    )


def test_the_command_runs_where_there_is_no_fcntl(tmp_path: Path) -> None:
    # (Windows) the VPN's module imported fcntl at the top, and every command loads it: not even
    # `tunflow check` or `tunflow stages` started
    (tmp_path / "ok.toml").write_text(CONFIG)
    for argv in (["check", "ok.toml"], ["stages"]):
        done = _hidden(["fcntl"], argv, tmp_path)
        assert done.returncode == 0, done.stderr


def test_the_pipeline_example_is_a_valid_config(capsys: pytest.CaptureFixture[str]) -> None:
    # (tests/linux/test_examples.py runs the Python examples; this one is a config)
    path = Path(__file__).parents[3] / "examples" / "pipeline.toml"
    assert main(["check", str(path)]) == 0, capsys.readouterr().err


def test_run_on_a_terminal_without_rich_prints_json_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Installed without the ``cli`` extra, ``tunflow run`` on a terminal falls back to JSON
    lines instead of failing on ``import rich``."""
    import contextlib
    import io
    from collections.abc import AsyncIterator

    import anyio
    import attrs

    from tunflow.cli import pipeline as cli_pipeline

    @attrs.frozen
    class Stats:
        packets: int = 3

    class Running:
        def statistics(self) -> Stats:
            return Stats()

    class Config:
        @contextlib.asynccontextmanager
        async def open(self) -> AsyncIterator[Running]:
            yield Running()

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for name in ("rich", "rich.console", "rich.live", "rich.table"):
        monkeypatch.setitem(sys.modules, name, None)
    parser = build_parser()
    args = parser.parse_args(["run", "x.toml", "--duration", "0.01"])
    out = Terminal()
    anyio.run(cli_pipeline._run, args, Config(), out)
    assert json.loads(out.getvalue().splitlines()[-1])["packets"] == 3
