"""The public surface is curated (trio's test_exports): every exported name exists, is
documented, and appears in the API reference."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

import tunflow

DOCS = Path(__file__).resolve().parent.parent / "docs"
PUBLIC_MODULES = [
    "tunflow",
    "tunflow.offload",
    "tunflow.packet",
    "tunflow.errors",
    "tunflow.testing",
    "tunflow.pipeline",
    "tunflow.transport",
    "tunflow.wireguard",
]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_names_exist_and_are_documented(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__doc__, f"{module_name} has no module docstring"
    names = getattr(module, "__all__", None)
    assert names, f"{module_name} has no __all__"
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{module_name}.__all__ names what it lacks: {missing}"
    # its own docstring: inspect.getdoc gives a class without one its base's (an error class
    # would pass with ValueError's "Inappropriate argument value (of correct type).")
    undocumented = [
        n
        for n in names
        if (inspect.isclass(getattr(module, n)) or inspect.isfunction(getattr(module, n)))
        and not (getattr(module, n).__doc__ or "").strip()
    ]
    assert not undocumented, f"{module_name}: no docstring on {undocumented}"


def test_every_top_level_name_is_in_the_docs() -> None:
    text = "\n".join(p.read_text() for p in DOCS.glob("*.md"))
    # names pulled in whole by ``.. automodule:: X`` with ``:members:`` count as documented
    documented = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    for module_name in re.findall(r"automodule:: ([\w.]+)\n(?:   :[^\n]*\n)*?   :members:\n", text):
        documented.update(getattr(importlib.import_module(module_name), "__all__", []))
    absent = [n for n in tunflow.__all__ if n not in documented]
    assert not absent, f"not mentioned in docs/: {absent}"


def test_version() -> None:
    assert tunflow.__version__.count(".") == 2
