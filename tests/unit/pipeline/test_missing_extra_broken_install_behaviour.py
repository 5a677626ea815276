"""A plugin's missing module is a missing *extra* only when the package is absent and its
distribution requires it for an extra alone. A module missing from an installed package (a
submodule an older release lacks), or a base requirement that happens to be named again under
an extra (``Requires-Dist: dep`` and ``Requires-Dist: dep[x]; extra == 'x'``), is a broken
install: "failed to load", and ``tunflow stages`` exits with status 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import install_stage_plugins
from tunflow import PluginError
from tunflow.cli import main
from tunflow.pipeline import load_stage_class


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A distribution ``zz-dist`` whose ``fancy`` extra requires ``present_dep`` (installed
    here, without a ``sub`` module) and ``base_dep`` (also a base requirement, not
    installed)."""
    install_stage_plugins(
        tmp_path,
        monkeypatch,
        "zz-dist",
        "zz_old_dep = zz_old_dep_mod:Stage\nzz_no_base = zz_no_base_mod:Stage\n",
        {
            "present_dep/__init__.py": "",
            "zz_old_dep_mod.py": "import present_dep.sub\n",
            "zz_no_base_mod.py": "import base_dep\n",
        },
        metadata="Provides-Extra: fancy\n"
        "Requires-Dist: base_dep>=1\n"
        "Requires-Dist: base_dep[speed]>=1; extra == 'fancy'\n"
        "Requires-Dist: present_dep>=2; extra == 'fancy'\n",
    )
    return tmp_path


def test_a_module_missing_from_an_installed_package_is_not_a_missing_extra(
    install: Path,
) -> None:
    """``present_dep`` is installed: telling the user its extra is not installed (and to
    pip install what is there) hides the broken import."""
    with pytest.raises(PluginError, match=r"failed to load: ModuleNotFoundError") as caught:
        load_stage_class("zz_old_dep")
    assert caught.value.missing_extra is None


def test_a_missing_base_requirement_is_not_a_missing_extra(install: Path) -> None:
    """``base_dep`` is required by every install of ``zz-dist``: its absence is a broken
    install, not an extra the user chose not to install."""
    with pytest.raises(PluginError, match=r"failed to load: ModuleNotFoundError") as caught:
        load_stage_class("zz_no_base")
    assert caught.value.missing_extra is None


def test_tunflow_stages_says_such_plugins_are_broken(
    install: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stages"]) == 1
    out = capsys.readouterr().out
    assert "    error: stage plugin 'zz_old_dep'" in out
    assert "    error: stage plugin 'zz_no_base'" in out
    assert "not installed:" not in out
