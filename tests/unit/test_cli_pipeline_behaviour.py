"""``tunflow run``/``check``/``stages`` and ``main``'s rules as a user sees them, without a
device: exit statuses, the ``--interval`` bounds, what ``check`` and ``stages`` print, how the
last report waits for a slow reader, and which signals stop ``run``."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import pytest

from tunflow.cli import anyio_backend, main, pipeline as cli
from tunflow.errors import ConfigError, PluginError

CONFIG = """
[devices.a]
name = "tf0"
[[stages]]
plugin = "stats"
name = "counter"
[[stages]]
plugin = "filter"
[pipeline]
source = "a"
sink = "a"
"""


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan"])
def test_run_refuses_an_interval_or_duration_that_is_not_positive_and_finite(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for option in ("--interval", "--duration"):
        with pytest.raises(SystemExit) as exited:
            main(["run", "x.toml", option, value])
        assert exited.value.code == 2
        assert "seconds" in capsys.readouterr().err


def test_configuration_and_plugin_errors_are_status_2_others_1() -> None:
    # main: 0 ok, 1 failure, 2 bad usage or configuration
    assert cli._error(ConfigError("bad")) == 2
    assert cli._error(PluginError("bad")) == 2
    assert cli._error(OSError("gone")) == 1


def test_check_names_each_stage_by_its_name_else_its_plugin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(CONFIG)
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out == (
        f"{path}: ok — 1 device(s), 0 transport(s), pipeline: counter → filter\n"
    )


@attrs.frozen
class _Option:
    name: str
    type: str
    default: Any
    required: bool
    help: str


@attrs.frozen
class _Plugin:
    target: str
    distribution: str | None
    fails: bool = False

    def summary(self) -> str:
        if self.fails:
            raise PluginError("cannot load it")
        return "a stage"

    def options(self) -> list[_Option]:
        return [_Option("rate", "int", None, True, "per second"), _Option("n", "int", 3, False, "")]


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    import tunflow.pipeline

    found = {"good": _Plugin("m:Good", "dist"), "bad": _Plugin("m:Bad", None, fails=True)}
    monkeypatch.setattr(tunflow.pipeline, "available_stages", lambda: found)


def test_stages_lists_a_plugin_that_fails_to_load_and_says_so_with_status_1(
    plugins: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stages"]) == 1
    assert capsys.readouterr().out == (
        "good  (m:Good, dist)\n"
        "    a stage\n"
        "    rate: int (required) — per second\n"
        "    n: int (default 3)\n"
        "bad  (m:Bad, unknown)\n"
        "    error: cannot load it\n"
    )
    assert main(["stages", "--json"]) == 1


def test_a_report_line_is_written_whole_after_what_was_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = os.write
    monkeypatch.setattr(cli.os, "write", lambda fd, data: write(fd, bytes(data[:3])))
    with open(tmp_path / "out", "w") as out:
        out.write("first\n")  # (buffered)
        cli._write_line(out, '{"elapsed": 1.0}\n')
    assert (tmp_path / "out").read_text() == 'first\n{"elapsed": 1.0}\n'


def test_the_last_report_waits_for_the_one_being_written() -> None:
    written: list[str] = []
    writer = cli._Writer()
    writer.write(lambda: (time.sleep(0.3), written.append("due")))
    writer.last(lambda: written.append("last"))
    assert written == ["due", "last"]


def test_no_last_report_after_a_reader_that_does_not_read_for_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "_LAST_WAIT", 0.1)
    stuck = threading.Event()
    written: list[str] = []
    writer = cli._Writer()
    writer.write(lambda: stuck.wait(10))
    try:
        writer.last(lambda: written.append("last"))
        assert written == []
    finally:
        stuck.set()


def test_no_last_report_after_a_write_failed() -> None:
    written: list[str] = []
    writer = cli._Writer()

    def broken() -> None:
        raise BrokenPipeError

    writer.write(broken)
    writer.last(lambda: written.append("last"))
    assert written == [] and isinstance(writer.failed, BrokenPipeError)


def test_interrupt_terminate_and_hangup_stop_run_unless_hangup_is_ignored() -> None:
    before = signal.getsignal(signal.SIGHUP)
    try:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        assert cli._stop_signals() == [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        assert cli._stop_signals() == [signal.SIGINT, signal.SIGTERM]
    finally:
        signal.signal(signal.SIGHUP, before)


def _stages_raising(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    import tunflow.pipeline

    def raising() -> dict[str, Any]:
        raise exc

    monkeypatch.setattr(tunflow.pipeline, "available_stages", raising)


def test_an_interrupted_command_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    _stages_raising(monkeypatch, KeyboardInterrupt())
    assert main(["stages"]) == 130  # 128 + SIGINT, as a shell reports it


@pytest.mark.parametrize("module", ["cryptography", "cryptography.hazmat.primitives"])
def test_a_missing_extra_is_status_2_and_named(
    module: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stages_raising(monkeypatch, ModuleNotFoundError(f"No module named {module!r}", name=module))
    assert main(["stages"]) == 2
    assert capsys.readouterr().err == (
        "tunflow: this needs cryptography, which tunflow's 'vpn' extra installs: "
        "pip install 'tunflow[vpn]'\n"
    )


def test_another_missing_module_is_a_bug_to_see(monkeypatch: pytest.MonkeyPatch) -> None:
    _stages_raising(monkeypatch, ModuleNotFoundError("No module named 'nope'", name="nope"))
    with pytest.raises(ModuleNotFoundError):
        main(["stages"])


def test_a_broken_pipe_that_is_not_standard_outputs_is_a_bug_to_see(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # (no descriptor: not gone)
    _stages_raising(monkeypatch, BrokenPipeError())
    with pytest.raises(BrokenPipeError):
        main(["stages"])


def test_backend_uvloop_is_asyncio_with_uvloop() -> None:
    assert anyio_backend("uvloop") == ("asyncio", {"use_uvloop": True})
    assert anyio_backend("asyncio") == ("asyncio", {})
    assert anyio_backend("trio") == ("trio", {})


def test_check_names_each_end_made_in_another_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ns.toml"
    path.write_text(
        CONFIG.replace('name = "tf0"', 'name = "tf0"\nnetns = "ns-a"')
        .replace("[[stages]]", '[transports.wan]\nnetns = "/run/netns/ns-b"\n[[stages]]', 1)
        .replace('sink = "a"', 'sink = "wan"')
    )
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out == (
        f"{path}: ok — 1 device(s), 1 transport(s), pipeline: counter → filter; "
        "netns: a in 'ns-a', wan in '/run/netns/ns-b'\n"
    )
