"""``tunflow stages`` after a plain ``pip install tunflow`` (no ``vpn`` extra): a plugin that
lacks only a module one of its distribution's extras installs is listed as not installed,
with the ``pip install`` that brings it, and is not a broken plugin (exit status 0); a plugin
that fails to import for any other reason still makes the status 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import install_stage_plugins
from tunflow import PluginError
from tunflow.cli import main
from tunflow.pipeline import load_stage_class


def _install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, broken: bool) -> None:
    entry_points = "zz_needs_extra = needs_extra_mod:Stage\n"
    if broken:
        entry_points += "zz_broken = broken_mod:Stage\n"
    install_stage_plugins(
        tmp_path,
        monkeypatch,
        "needs-extra",
        entry_points,
        {
            "needs_extra_mod.py": "import not_installed_dep\n",
            "broken_mod.py": "import not_a_requirement_either\n",
        },
        metadata="Provides-Extra: fancy\nRequires-Dist: Not-Installed.Dep>=1; extra == 'fancy'\n",
    )


def test_the_error_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install(tmp_path, monkeypatch, broken=True)
    with pytest.raises(PluginError) as caught:
        load_stage_class("zz_needs_extra")
    assert caught.value.missing_extra == "needs-extra[fancy]"
    with pytest.raises(PluginError) as caught:
        load_stage_class("zz_broken")
    assert caught.value.missing_extra is None


def test_a_missing_extra_is_listed_as_not_installed_and_is_status_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _install(tmp_path, monkeypatch, broken=False)
    assert main(["stages", "--json"]) == 0
    listing = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert listing["zz_needs_extra"]["needs"] == "needs-extra[fancy]"
    assert "pip install 'needs-extra[fancy]'" in listing["zz_needs_extra"]["error"]
    assert "stats" in listing and "needs" not in listing["stats"]
    assert main(["stages"]) == 0
    out = capsys.readouterr().out
    assert "    not installed: stage plugin 'zz_needs_extra'" in out
    assert "error:" not in out


def test_a_broken_plugin_beside_it_is_still_status_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _install(tmp_path, monkeypatch, broken=True)
    assert main(["stages"]) == 1
    out = capsys.readouterr().out
    assert "    error: stage plugin 'zz_broken'" in out
    assert "    not installed: stage plugin 'zz_needs_extra'" in out
