"""The API pages say which members each class shows: Sphinx ignores a directive's member list
when ``members`` is a default (sphinx-doc/sphinx#9709), and a directive without one shows
none of them once it is not."""

from __future__ import annotations

import ast
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_members_is_not_an_autodoc_default() -> None:
    tree = ast.parse((DOCS / "conf.py").read_text())
    (defaults,) = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "autodoc_default_options" for t in node.targets)
    ]
    assert "members" not in ast.literal_eval(defaults)


def test_every_autoclass_says_which_members_it_shows() -> None:
    missing = []
    for page in sorted(DOCS.glob("*.md")):
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if not re.match(r"\s*\.\. autoclass::", line):
                continue
            options = []
            for following in lines[i + 1 :]:
                if not re.match(r"\s+:[\w-]+:", following):
                    break
                options.append(following.strip())
            if not any(o.startswith((":members:", ":no-members:")) for o in options):
                missing.append(f"{page.name}:{i + 1}: {line.strip()}")
    assert not missing, "\n".join(missing)
