"""The bounded log lines of a running interface over more than one run of trouble: a peer's
handshakes are logged at info level at most once a minute in every minute (not only the
first); each run of failed control-socket accepts says once what failed (the errno's text)
and, once an accept succeeds, how many failed; a link watch that cannot be made is logged and
the tunnel runs on. Namespaces and peer as in test_log_flood_behaviour."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import anyio
import pytest

from tests.linux.test_log_flood_behaviour import (
    OB,
    handshake,
    out_of_descriptors,
    pair,
    peer_at_ua,
    uapi_get,
)
from tests.linux.test_vpn_routing_behaviour import until
from tunflow import testing
from tunflow.wireguard import InterfaceConfig, PrivateKey, _routing, open_interface

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]
__all__ = ["pair"]  # (the fixture, imported)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_each_minute_of_repeated_handshakes_gets_one_info_line(
    pair: tuple[testing.Netns, testing.Netns], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    ka, kb, config, sock = peer_at_ua(a)
    rounds = 3

    def lines() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno >= logging.INFO and "handshake with" in r.getMessage()
        ]

    with sock, caplog.at_level(logging.INFO, logger="tunflow.wireguard"), anyio.fail_after(60):
        async with open_interface(
            config, name=testing.unique_name("lf"), addresses=[f"{OB}/24"], netns=b.name, uapi=False
        ) as iface:
            done = 0
            for minute in range(3):  # a burst in each of three minutes an hour apart
                for _ in range(rounds):
                    await handshake(sock, ka, kb, anyio.current_time())
                    done += 1
                    await until(
                        lambda n=done: iface.statistics().wireguard.handshakes_completed == n
                    )
                    await anyio.sleep(0.025)  # (the flood check: one initiation per 20 ms)
                assert len(lines()) == minute + 1, lines()
                iface.skip_time(3600)
    assert all(f"({rounds - 1} more since" in line for line in lines()[1:]), lines()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_each_run_of_failed_accepts_is_logged_once_with_its_cause_and_its_end(
    pair: tuple[testing.Netns, testing.Netns], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    _, b = pair
    path = str(tmp_path / "wg.sock")
    config = InterfaceConfig(PrivateKey.generate(), listen_port=51820)
    with caplog.at_level(logging.INFO, logger="tunflow.wireguard"), anyio.fail_after(30):
        async with open_interface(config, name=testing.unique_name("lf"), netns=b.name, uapi=path):
            await anyio.sleep(0.2)
            for _ in range(2):  # two runs of descriptors lacking, served in between
                await out_of_descriptors(path, 0.5)
                reply = await uapi_get(path)
                assert reply.startswith("private_key=") and reply.endswith("errno=0\n\n")
            await uapi_get(path)  # (no failure since: nothing more said)
    failed = [r.getMessage() for r in caplog.records if "UAPI accept failed" in r.getMessage()]
    again = [r.getMessage() for r in caplog.records if "UAPI accepts again" in r.getMessage()]
    assert len(failed) == 2, failed
    assert all(os.strerror(24) in m for m in failed), failed  # EMFILE's text
    assert len(again) == 2, again


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_link_watch_that_cannot_be_made_is_logged_and_the_tunnel_runs_on(
    pair: tuple[testing.Netns, testing.Netns],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, b = pair

    def link_watch(*args: object) -> None:
        raise OSError(105, os.strerror(105))  # ENOBUFS

    monkeypatch.setattr(_routing, "link_watch", link_watch)
    config = InterfaceConfig(PrivateKey.generate(), listen_port=51820)
    with caplog.at_level(logging.INFO, logger="tunflow.wireguard"), anyio.fail_after(30):
        async with open_interface(
            config, name=testing.unique_name("lf"), addresses=[f"{OB}/24"], netns=b.name, uapi=False
        ) as iface:
            await until(
                lambda: any("cannot watch the link" in r.getMessage() for r in caplog.records)
            )
            await anyio.sleep(0.2)
            assert iface.stop_reason is None
            assert await iface.device.is_running()
