"""Starting another Python process that runs this tunflow."""

from __future__ import annotations

import os

__all__ = ["child_environment"]


def child_environment() -> dict[str, str]:
    """The environment of a child Python process (a pipeline worker, ``tunflow up --daemon``'s
    background ``up``): this one's, with the directory this tunflow was imported from first on
    ``PYTHONPATH`` — and the child started with ``-P``, which keeps the working directory off
    ``sys.path`` — so the child runs this tunflow, not another checkout where it starts (nor,
    as root, a module of a stdlib name planted there)."""
    import tunflow

    root = os.path.dirname(os.path.dirname(os.path.abspath(tunflow.__file__)))
    path = [root, os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
