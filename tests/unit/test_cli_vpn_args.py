"""The VPN commands' arguments, as the parser takes them (nothing here runs a command)."""

from __future__ import annotations

import math

import pytest

from tunflow.cli import build_parser


@pytest.mark.parametrize("command", ["down", "save", "reload"])
@pytest.mark.parametrize("value", ["nan", "-1", "-inf", "soon"])
def test_a_timeout_that_is_no_wait_is_refused(
    command: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # nan would pass no deadline: `down` of a process slow to stop waited for ever
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args([command, "wg0", f"--timeout={value}"])
    assert exit.value.code == 2
    assert "not a number of seconds" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "seconds"), [("0", 0.0), ("2.5", 2.5), ("inf", math.inf)])
def test_a_timeout_is_seconds(value: str, seconds: float) -> None:
    assert build_parser().parse_args(["down", "wg0", "--timeout", value]).timeout == seconds


@pytest.mark.parametrize(
    "arg",
    ["./wg0.txt", "./wg0", "/etc/wireguard/wg0.conf.bak", ".conf", "/x/.conf", "..conf", "...conf"],
)
def test_a_file_not_named_name_dot_conf_is_refused(arg: str) -> None:
    # wg-quick's rule: "The config file must be a valid interface name, followed by .conf";
    # the name was the file's stem, whatever its suffix (wg0.txt, wg0.conf.bak: 'wg0.conf'),
    # and '.conf' on its own was the name '.conf', '..conf' the name '.'
    from tunflow.cli.vpn import _interface_name
    from tunflow.errors import ConfigError

    with pytest.raises(ConfigError, match=r"name must be a valid interface name followed by"):
        _interface_name(arg)


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_and_dot_dot_are_no_interface_names(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # the kernel refuses them; they named the pid file and control socket '..pid', '...sock'
    from tunflow.cli import main

    for argv in (["down", name], ["save", name], ["show", name], ["strip", name]):
        assert main(argv) == 2
        assert f"'{name}' is not a valid interface name" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arg", "name"),
    [("wg0", "wg0"), ("wg0.conf", "wg0"), ("/etc/x/a.b.conf", "a.b"), ("./-=+_.conf", "-=+_")],
)
def test_the_interface_is_named_after_the_file(arg: str, name: str) -> None:
    from tunflow.cli.vpn import _interface_name

    assert _interface_name(arg) == name


def test_a_bare_name_with_a_dot_is_a_name_as_for_wg_quick() -> None:
    # no '/' and no .conf: a name, /etc/wireguard/NAME.conf's (wg-quick looks for
    # /etc/wireguard/wg0.txt.conf too)
    from tunflow.cli.vpn import _config_path, _interface_name

    assert _interface_name("wg0.txt") == "wg0.txt"
    assert str(_config_path("wg0.txt")) == "/etc/wireguard/wg0.txt.conf"
