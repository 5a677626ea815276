"""The journal ``tunflow up`` keeps of what it changed outside its device (``<name>.undo``): read
back field by field, and a damaged one is reported and left alone, never half-trusted (a
temporary directory stands in for ``/run/tunflow``; nothing here reaches the kernel)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tunflow.cli import vpn
from tunflow.errors import ConfigError
from tunflow.wireguard._routing import RoutingRecord

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="network namespaces")

RULES: list[dict[str, Any]] = [
    {"family": 2, "table": 51820, "fwmark": 51820, "invert": True, "suppress_prefixlength": None},
    {"family": 2, "table": 254, "fwmark": None, "invert": False, "suppress_prefixlength": 0},
]


def journal(**changes: Any) -> dict[str, Any]:
    """A journal as ``up`` writes it in this namespace, with ``changes``."""
    st = os.stat("/proc/self/ns/net")
    data: dict[str, Any] = {
        "version": 1,
        "pid": 4242,
        "netns": {"dev": st.st_dev, "ino": st.st_ino},
        "routes": {"rules": RULES, "nft_tables": ["ip wg-quick-wg0"]},
        "dns": {"program": "/sbin/resolvconf", "record": "tun.wg0"},
    }
    data.update(changes)
    return data


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(vpn, "PID_DIRECTORY", str(tmp_path))
    # `down` logs to stderr as a command does: leave the logger as it was found
    logger = logging.getLogger("tunflow")
    handlers, level = list(logger.handlers), logger.level
    try:
        yield tmp_path
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)


def test_a_journal_reads_back_as_written(run_dir: Path) -> None:
    (run_dir / "wg0.undo").write_text(json.dumps(journal()))
    read = vpn._read_journal(run_dir / "wg0.undo")
    assert read is not None
    assert read.pid == 4242 and read.dns == ("/sbin/resolvconf", "tun.wg0")
    assert read.routes.to_json() == {"rules": RULES, "nft_tables": ["ip wg-quick-wg0"]}
    assert read.routes.describe() == [
        "ip -4 rule not fwmark 51820 table 51820",
        "ip -4 rule table main suppress_prefixlength 0",
        "nftables table ip wg-quick-wg0",
    ]
    assert RoutingRecord.from_json(read.routes.to_json()) == read.routes
    assert vpn._read_journal(run_dir / "wg1.undo") is None  # none: nothing to undo


DAMAGED = {
    "not JSON": "{",
    "cut short": json.dumps(journal())[:-40],
    "NULs": "\0" * 64,
    "another version": json.dumps(journal(version=2)),
    "no netns": json.dumps({k: v for k, v in journal().items() if k != "netns"}),
    "a table that is true": json.dumps(
        journal(routes={"rules": [{**RULES[0], "table": True}], "nft_tables": []})
    ),
    "a negative fwmark": json.dumps(
        journal(routes={"rules": [{**RULES[0], "fwmark": -1}], "nft_tables": []})
    ),
    "a rule of another family": json.dumps(
        journal(routes={"rules": [{**RULES[0], "family": 7}], "nft_tables": []})
    ),
    # it would go into an nft script: only wg-quick's tables, nothing else
    "an nft command": json.dumps(
        journal(routes={"rules": [], "nft_tables": ["ip wg-quick-wg0\nflush ruleset"]})
    ),
    "a relative resolvconf": json.dumps(journal(dns={"program": "resolvconf", "record": "wg0"})),
}


@pytest.mark.parametrize("text", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_journal_that_does_not_parse_is_reported_and_left(
    text: str, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = run_dir / "wg0.undo"
    path.write_text(text)
    # `down` (no live `up`: nobody holds the pid file): one clear line, status 1, file kept
    status = vpn.down(argparse.Namespace(name="wg0", timeout=1.0))
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith(f"tunflow: {path} (what a killed tunflow up left to undo) does not parse")
    assert "nothing was undone" in err and "Traceback" not in err
    assert err.count("\n") == 1, err
    assert path.read_text() == text
    # `up` finds it before it makes anything, and refuses alike
    with pytest.raises(ConfigError, match="does not parse"):
        vpn._undo_leftovers("wg0")
    assert path.read_text() == text


def test_a_journal_of_another_namespace_is_left(run_dir: Path) -> None:
    path = run_dir / "wg0.undo"
    text = json.dumps(journal(netns={"dev": 4, "ino": 1}))
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"net:\[1\], not in this one .*tunflow down wg0 there"):
        vpn._undo_leftovers("wg0")
    assert path.read_text() == text
