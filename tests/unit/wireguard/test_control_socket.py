"""The control socket's path at ``open_interface``: a stale socket (nobody listens: a killed
process's) is replaced, a live one refused, and a file that is not a socket refused and left
where it is — connecting to it is refused as to a stale socket, but it is nobody's socket."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from tunflow.errors import ConfigError
from tunflow.wireguard.runtime import _remove_if_stale, _socket_state, _uapi_listener

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="UNIX sockets")


def stale(path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))


def test_what_is_at_the_path(tmp_path: Path) -> None:
    assert _socket_state(tmp_path / "none.sock") == "absent"
    stale(tmp_path / "gone.sock")
    assert _socket_state(tmp_path / "gone.sock") == "stale"
    (tmp_path / "file.sock").touch()
    (tmp_path / "dir.sock").mkdir()
    assert _socket_state(tmp_path / "file.sock") == "not a socket"
    assert _socket_state(tmp_path / "dir.sock") == "not a socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(tmp_path / "live.sock"))
        live.listen(0)
        assert _socket_state(tmp_path / "live.sock") == "live"
        assert not _remove_if_stale(tmp_path / "live.sock")
    assert not _remove_if_stale(tmp_path / "file.sock")
    assert not _remove_if_stale(tmp_path / "dir.sock")
    assert _remove_if_stale(tmp_path / "gone.sock")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.sock", "file.sock", "live.sock"]


@pytest.mark.anyio
async def test_the_listener_replaces_a_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "wg9.sock"
    stale(path)
    listener = await _uapi_listener(str(path))
    async with listener:
        assert _socket_state(path) == "live"
        with pytest.raises(ConfigError, match="served by a running process"):
            await _uapi_listener(str(path))


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["file", "directory"])
async def test_the_listener_leaves_a_file_that_is_not_a_socket(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "wg9.sock"
    if kind == "file":
        path.write_text("somebody's\n")
    else:
        path.mkdir()
    with pytest.raises(ConfigError, match="is not a socket"):
        await _uapi_listener(str(path))
    if kind == "file":
        assert path.read_text() == "somebody's\n"
    else:
        assert path.is_dir()


@pytest.mark.skipif(sys.platform != "linux", reason="tunflow down's clean-up is Linux's")
@pytest.mark.parametrize("kind", ["stale", "file"])
def test_down_after_a_kill_removes_only_a_stale_socket(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    import logging

    import tunflow.wireguard
    from tunflow.cli import vpn

    run, sockets = tmp_path / "run", tmp_path / "sockets"
    run.mkdir()
    sockets.mkdir()
    monkeypatch.setattr(vpn, "PID_DIRECTORY", str(run))
    monkeypatch.setattr(tunflow.wireguard, "UAPI_DIRECTORY", str(sockets), raising=False)
    (run / "wg7.pid").write_text("4242\n")  # a killed up's: nobody holds its lock
    path = sockets / "wg7.sock"
    if kind == "stale":
        stale(path)
    else:
        path.write_text("somebody's\n")
    logger = logging.getLogger("tunflow")
    handlers, level = list(logger.handlers), logger.level
    try:
        assert vpn._down_killed("wg7") == 0
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
    out = capsys.readouterr().out
    if kind == "stale":
        assert not path.exists()
        assert f"the control socket {path}" in out
    else:
        assert path.read_text() == "somebody's\n"
        assert "control socket" not in out


@pytest.mark.anyio
async def test_a_client_cancelled_as_its_socket_turns_ready_is_let_go_quietly(
    tmp_path: Path,
) -> None:
    # the control socket's tasks cancelled (the interface closing, an idle timeout) in the
    # loop turn their socket turned ready — a client's end of stream, a client connecting:
    # under plain asyncio, anyio's UNIX stream and listener had the socket's reader set the
    # cancelled wait's future, and the loop logged "Exception in callback
    # Future.set_result(None) … InvalidStateError" (the anyio test runner raises it)
    from tunflow.wireguard.runtime import WireGuardInterface

    iface = object.__new__(WireGuardInterface)
    for waiting in ("accept", "receive"):
        path = tmp_path / f"{waiting}.sock"
        listener = await _uapi_listener(str(path))
        async with anyio.create_task_group() as tg:
            tg.start_soon(iface._uapi, listener)
            await anyio.sleep(0.05)  # accepting
            client = await anyio.connect_unix(path)
            if waiting == "receive":
                await anyio.sleep(0.05)  # the client's task receiving
                await client.aclose()  # its end readable at the next turn
            tg.cancel_scope.cancel()  # ... and the task cancelled before that reader ran
        if waiting == "accept":
            await client.aclose()


@pytest.mark.anyio
async def test_a_reply_cancelled_as_its_socket_turns_writable_is_let_go_quietly() -> None:
    # the same for a reply the client is slow to read (the stuck timeout, or the interface
    # closing just as the client reads)
    from tunflow.wireguard.runtime import _send_all

    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_send_all, a, b"x" * (4 << 20))
            await anyio.sleep(0.05)  # the buffer full: waiting to write
            b.recv(1 << 20)  # writable at the next turn
            await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
