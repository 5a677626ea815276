"""DNS = as wg-quick applies it: the resolvconf input, the record name's prefix, the calls."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunflow import ConfigError
from tunflow.wireguard._dns import ResolvConf, interface_prefix, resolv_conf, resolvconf_input


def test_servers_and_search_domains() -> None:
    text = resolvconf_input(["10.0.0.53", "corp.example", "fd00::53", "lab.example"])
    assert text == ("nameserver 10.0.0.53\nnameserver fd00::53\nsearch corp.example lab.example\n")
    assert resolvconf_input(["1.1.1.1"]) == "nameserver 1.1.1.1\n"


def test_prefix_from_debians_interface_order(tmp_path: Path) -> None:
    order = tmp_path / "interface-order"
    assert interface_prefix(order) == ""  # no file (openresolv): no prefix
    order.write_text("# comment\nlo.inet6\nlo.inet\nlo\ntun*\ntap*\nhso*\nem+([0-9])\n")
    assert interface_prefix(order) == "tun."
    order.write_text("lo\n")
    assert interface_prefix(order) == ""


def recording_resolvconf(tmp_path: Path, status: int = 0) -> Path:
    """A stand-in ``resolvconf`` that records its arguments and input (the real one would
    rewrite this machine's /etc/resolv.conf)."""
    log = tmp_path / "calls"
    script = tmp_path / "resolvconf"
    script.write_text(
        f'#!/bin/sh\n{{ echo "ARGS $*"; cat; }} >> {log}\n'
        + (f"echo 'refused' >&2\nexit {status}\n" if status else "")
    )
    script.chmod(0o755)
    return script


def test_apply_and_remove_run_resolvconf_as_wg_quick_does(tmp_path: Path) -> None:
    program = recording_resolvconf(tmp_path)
    order = tmp_path / "order"
    order.write_text("tun*\n")
    dns = ResolvConf("wg7", ["10.0.0.53", "corp.example"], program=str(program), order_file=order)
    dns.remove()  # nothing applied: nothing run
    assert not (tmp_path / "calls").exists()
    dns.apply()
    dns.remove()
    dns.remove()  # once only
    calls = (tmp_path / "calls").read_text()
    assert calls == (
        "ARGS -a tun.wg7 -m 0 -x\nnameserver 10.0.0.53\nsearch corp.example\nARGS -d tun.wg7 -f\n"
    )


def test_missing_or_failing_resolvconf(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs resolvconf"):
        ResolvConf("wg7", ["10.0.0.53"], program=str(tmp_path / "nowhere"))
    failing = ResolvConf(
        "wg7", ["10.0.0.53"], program=str(recording_resolvconf(tmp_path, status=3))
    )
    with pytest.raises(ConfigError, match="exited 3: refused"):
        failing.apply()
    assert os.access(failing.program, os.X_OK)


def test_search_domains_without_a_server_are_not_applied(tmp_path: Path) -> None:
    # wg-quick's set_dns returns at once without a name server (`[[ ${#DNS[@]} -gt 0 ]] ||
    # return 0`): no resolvconf call, and none needed — the interface comes up
    nowhere = str(tmp_path / "nowhere")
    assert resolv_conf("wg7", ["corp.example", "lab.example"], program=nowhere) is None
    assert resolv_conf("wg7", [], program=nowhere) is None
    with pytest.raises(ConfigError, match="needs resolvconf"):
        resolv_conf("wg7", ["corp.example", "10.0.0.53"], program=nowhere)
    program = str(recording_resolvconf(tmp_path))
    found = resolv_conf("wg7", ["corp.example", "10.0.0.53"], program=program)
    assert found is not None
    assert found.text == "nameserver 10.0.0.53\nsearch corp.example\n"
