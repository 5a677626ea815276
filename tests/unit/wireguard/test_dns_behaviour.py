"""DNS = as wg-quick applies it: the record name's prefix as wg-quick reads the order file, the
way down that ignores resolvconf's failures, and the journal's record read back after a kill."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunflow import ConfigError
from tunflow.wireguard._dns import (
    ResolvConf,
    interface_prefix,
    parse_record,
    remove_record,
    resolv_conf,
)


def script(tmp_path: Path, body: str) -> Path:
    """A stand-in ``resolvconf`` running ``body`` (with ``$LOG``, a file its calls go to)."""
    program = tmp_path / "resolvconf"
    program.write_text(f"#!/bin/sh\nLOG={tmp_path / 'calls'}\n{body}")
    program.chmod(0o755)
    return program


def test_the_prefix_is_read_as_wg_quick_reads_the_order_file(tmp_path: Path) -> None:
    # wg-quick: `while read -r iface` (blanks around a line are dropped), then
    # `[[ $iface =~ ^([A-Za-z0-9-]+)\*$ ]]`: a whole line of letters, digits and dashes and a star
    order = tmp_path / "interface-order"
    order.write_text("lo\n  tun*  \ntap*\n")
    assert interface_prefix(order) == "tun."
    order.write_text("lo\nwg*[0-9]\nppp*.x\nvpn-1*\n")
    assert interface_prefix(order) == "vpn-1."


def test_a_network_is_not_a_name_server(tmp_path: Path) -> None:
    # only an address is a server: an entry like 10.0.0.0/24 is no server, so nothing is set
    assert resolv_conf("wg7", ["10.0.0.0/24"], program=str(tmp_path / "nowhere")) is None


def test_the_way_down_ignores_a_failing_resolvconf(tmp_path: Path) -> None:
    # wg-quick ignores resolvconf -d's failure on the way down; the way up keeps its message,
    # whether resolvconf wrote it to standard error or output
    program = script(tmp_path, 'case "$1" in -d) echo gone; exit 1;; esac\ncat > /dev/null\n')
    dns = ResolvConf("wg7", ["10.0.0.53"], program=str(program), order_file=tmp_path / "no")
    dns.apply()
    dns.remove()
    with pytest.raises(ConfigError, match="exited 1: gone"):
        remove_record(str(program), "wg7")


def test_remove_record_forces_and_reports_a_program_gone(tmp_path: Path) -> None:
    program = script(tmp_path, 'echo "$*" >> "$LOG"\n')
    remove_record(str(program), "tun.wg7")
    assert (tmp_path / "calls").read_text() == "-d tun.wg7 -f\n"
    program.unlink()
    with pytest.raises(ConfigError, match="cannot run"):
        remove_record(str(program), "tun.wg7")


@pytest.mark.parametrize(
    "journal",
    [
        {"program": "/sbin/resolvconf", "record": ""},
        {"program": "/sbin/resolvconf", "record": "wg0 wg1"},
        {"program": "/sbin/resolvconf", "record": "../wg0"},
        {"program": "/sbin/resolvconf", "record": "wg0\n"},
        {"program": "/sbin/resolvconf", "record": "wg0", "extra": "x"},
        {"program": "/sbin/resolvconf", "record": 7},
    ],
)
def test_a_journal_record_that_is_not_a_record_name_is_refused(journal: object) -> None:
    # read back from a file after a kill, then passed to resolvconf -d: only what
    # ResolvConf.journal makes (a prefix and an interface name) is taken
    with pytest.raises(ValueError):
        parse_record(journal)


def test_a_journal_record_is_read_back() -> None:
    made = ResolvConf.__new__(ResolvConf)
    made.program, made.record = "/sbin/resolvconf", "tun.wg0"
    assert parse_record(made.journal) == ("/sbin/resolvconf", "tun.wg0")
