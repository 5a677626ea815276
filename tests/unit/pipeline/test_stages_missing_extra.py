"""``tunflow stages`` after a plain ``pip install tunflow`` (no ``vpn`` extra): a plugin that
lacks only a module one of its distribution's extras installs is listed as not installed,
with the ``pip install`` that brings it, and is not a broken plugin (exit status 0); a plugin
that fails to import for any other reason still makes the status 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunflow import PluginError
from tunflow.cli import main
from tunflow.pipeline import _plugins, load_stage_class

GROUP = "tunflow.stages"


def _install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, broken: bool) -> None:
    info = tmp_path / "needs_extra-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: needs-extra\nVersion: 1.0\nProvides-Extra: fancy\n"
        "Requires-Dist: Not-Installed.Dep>=1; extra == 'fancy'\n"
    )
    entry_points = f"[{GROUP}]\nzz_needs_extra = needs_extra_mod:Stage\n"
    if broken:
        entry_points += "zz_broken = broken_mod:Stage\n"
    (info / "entry_points.txt").write_text(entry_points)
    (tmp_path / "needs_extra_mod.py").write_text("import not_installed_dep\n")
    (tmp_path / "broken_mod.py").write_text("import not_a_requirement_either\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_plugins, "_cache", None)
    monkeypatch.setattr(_plugins, "_loaded", {})
    monkeypatch.setattr(_plugins, "_clashes", {})


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
