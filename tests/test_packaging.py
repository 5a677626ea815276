"""What ``pip install tunflow`` from a wheel gives a user: the wheel is built from this tree as pip
builds it (its build backend fetched from the configured index; skipped when that cannot be had
offline) and its file list and metadata are checked, not the editable install the suite runs on."""

from __future__ import annotations

import configparser
import json
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator

import pytest

from tests.helpers import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DIST_INFO = f"tunflow-{PYPROJECT['project']['version']}.dist-info"
_OFFLINE = (
    "No matching distribution found",
    "Could not find a version that satisfies",
    "NewConnectionError",
    "Temporary failure in name resolution",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0 and any(s in done.stderr for s in _OFFLINE):
        pytest.skip(f"the build backend cannot be fetched: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("tunflow-*.whl")
    with zipfile.ZipFile(path) as whl:
        yield whl


def test_the_wheel_holds_the_two_packages_and_nothing_else(wheel: zipfile.ZipFile) -> None:
    top = {name.split("/")[0] for name in wheel.namelist()}
    assert top == {"tunflow", "tunflow_plugins", DIST_INFO}


@pytest.mark.parametrize("package", ["tunflow", "tunflow_plugins"])
def test_both_packages_are_marked_typed(wheel: zipfile.ZipFile, package: str) -> None:
    """Without ``py.typed`` mypy stops at ``from tunflow_plugins.filter import Rule`` in a
    user's code ("module is installed, but missing library stubs or py.typed marker")."""
    assert f"{package}/py.typed" in wheel.namelist()


def test_every_entry_point_names_a_module_the_wheel_holds(wheel: zipfile.ZipFile) -> None:
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(wheel.read(f"{DIST_INFO}/entry_points.txt").decode())
    project = PYPROJECT["project"]
    assert dict(parser["console_scripts"]) == project["scripts"]
    assert dict(parser["tunflow.stages"]) == project["entry-points"]["tunflow.stages"]
    names = set(wheel.namelist())
    for section in ("console_scripts", "tunflow.stages"):
        for target in parser[section].values():
            module = target.partition(":")[0].replace(".", "/")
            assert {f"{module}.py", f"{module}/__init__.py"} & names, target


def test_the_license_text_travels_with_the_wheel(wheel: zipfile.ZipFile) -> None:
    """The metadata says Apache-2.0, whose section 4(a) asks that a copy of the licence go
    with every redistribution."""
    metadata = wheel.read(f"{DIST_INFO}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "License-File: LICENSE" in metadata
    text = wheel.read(f"{DIST_INFO}/licenses/LICENSE").decode()
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_python_dash_m_tunflow_is_the_command() -> None:
    """``python -m tunflow`` (where the console script is not on PATH, or to pick the
    interpreter) said "'tunflow' is a package and cannot be directly executed"."""
    done = subprocess.run(
        [sys.executable, "-m", "tunflow", "stages", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert {"filter", "stats"} <= {e["name"] for e in json.loads(done.stdout)}
