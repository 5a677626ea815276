"""What ``tunflow up``, ``reload`` and ``save`` tell their user, as docs/vpn.md says: the hooks
run when the device goes away under ``up``, a failing ``PreDown`` on the way down, what
``SaveConfig`` writes back, and the status of a reload or save the running ``up`` refused; in
throw-away namespaces, as separate processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import Up
from tunflow import testing
from tunflow.wireguard import genkey, pubkey

pytestmark = pytest.mark.needs_root

TUNFLOW = [sys.executable, "-m", "tunflow.cli"]


def conf(tmp_path: Path, extra: str = "") -> Path:
    """A file of one peer (never reached) with ``extra`` [Interface] lines."""
    path = tmp_path / f"{testing.unique_name('out')}.conf"
    path.write_text(
        f"[Interface]\nPrivateKey = {genkey()}\nAddress = 10.93.0.1/24\nMTU = 1420\n{extra}\n"
        f"[Peer]\nPublicKey = {pubkey(genkey())}\nAllowedIPs = 10.93.0.2/32\n"
        "Endpoint = 192.0.2.1:51820\n"
    )
    return path


def test_a_deleted_device_runs_pre_down_and_post_down_in_order(tmp_path: Path) -> None:
    # docs/vpn.md: the device gone under it, `up` "runs PreDown and PostDown (so PostUp's
    # changes are undone)" and exits 1
    ran = tmp_path / "ran"
    hooks = "".join(f"{h} = echo {h} >> {ran}\n" for h in ("PostUp", "PreDown", "PostDown"))
    with testing.netns(enter=False) as a:
        path = conf(tmp_path, hooks)
        up = Up(a, path)
        with up:
            a.run("ip", "link", "del", path.stem)
            assert up.proc is not None
            assert up.proc.wait(10) == 1, up.out
    assert ran.read_text() == "PostUp\nPreDown\nPostDown\n", up.out


def test_a_failing_pre_down_on_the_way_down_is_status_2(tmp_path: Path) -> None:
    # "A failing hook is reported in one line (… status 2)": on the way down too, after the
    # SIGTERM that started it — not a clean exit 0 with the failure unsaid
    with testing.netns(enter=False) as a:
        path = conf(tmp_path, "PreDown = exit 3")
        up = Up(a, path)
        with up:
            status = up.stop()
        assert status == 2, up.out
        assert "PreDown command exited 3: exit 3" in up.out and "Traceback" not in up.out, up.out
        assert a.run("ip", "link", "show", path.stem, check=False).returncode != 0


def test_save_config_writes_what_pre_down_left_back_to_the_file(tmp_path: Path) -> None:
    # SaveConfig = true: the interface is written back on the way down, after PreDown (as
    # wg-quick's cmd_down saves after its PreDown hooks): an address added then is in the file
    from tunflow.wireguard.wgquick import load_wgquick

    with testing.netns(enter=False) as a:
        path = conf(tmp_path, "SaveConfig = true\nPreDown = ip addr add 10.93.7.1/24 dev %i")
        up = Up(a, path)
        with up:
            a.run("ip", "addr", "add", "10.93.5.1/24", "dev", path.stem)
            assert up.stop() == 0, up.out
    # a stop once up is not one "while coming up" (that line is for a start undone)
    assert f"{path.stem} down (SIGTERM)" in up.out and "while coming up" not in up.out, up.out
    saved = load_wgquick(path)
    assert {str(x) for x in saved.addresses} == {"10.93.0.1/24", "10.93.5.1/24", "10.93.7.1/24"}
    assert saved.save_config and saved.pre_down == ("ip addr add 10.93.7.1/24 dev %i",)


@pytest.mark.parametrize("command", ["reload", "save"])
def test_a_reload_or_save_the_up_refused_is_status_1(tmp_path: Path, command: str) -> None:
    # docs/vpn.md: `tunflow reload` says how it went — "or status 1 and the reason it was
    # refused"; a save of a file that no longer parses is refused the same way (not
    # overwritten)
    with testing.netns(enter=False) as a:
        path = conf(tmp_path)
        with Up(a, path) as up:
            damaged = path.read_text() + "\n[Peer]\nPublicKey = not a key\n"
            path.write_text(damaged)
            done = a.run(*TUNFLOW, command, path.stem, check=False)
            assert done.returncode == 1, done.stdout + done.stderr
            assert done.stdout == "" and f"tunflow: {path.stem}: " in done.stderr, done.stderr
            assert path.read_text() == damaged
            assert up.stop() == 0, up.out
