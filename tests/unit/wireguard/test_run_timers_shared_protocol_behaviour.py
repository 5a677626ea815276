"""``WireGuardPort.run_timers`` holds the protocol object's timer hook: a second port's timer
task on the same ``WireGuard`` (or a hook the user installed) is refused with RuntimeError,
instead of taking the hook and leaving the first task never woken (an idle interface's
handshake retry then missed)."""

from __future__ import annotations

import anyio
import pytest

from tunflow.transport import UDPTransport
from tunflow.wireguard import PrivateKey, WireGuard, WireGuardPort

pytestmark = pytest.mark.anyio


async def test_a_second_timer_task_on_one_protocol_object_is_refused() -> None:
    wg = WireGuard(PrivateKey.generate())
    async with UDPTransport.bind("127.0.0.1:0") as one, UDPTransport.bind("127.0.0.1:0") as two:
        first, second = WireGuardPort(wg, one), WireGuardPort(wg, two)
        async with anyio.create_task_group() as tg:
            await tg.start(first.run_timers)
            with pytest.raises(RuntimeError, match="timer hook is taken"), anyio.fail_after(5):
                await second.run_timers()
            tg.cancel_scope.cancel()
        # the first let go of it: another may run now
        with anyio.move_on_after(0.05):
            await second.run_timers()


async def test_a_users_hook_is_not_taken() -> None:
    wg = WireGuard(PrivateKey.generate())
    wg.on_earlier_timer(lambda: None)
    async with UDPTransport.bind("127.0.0.1:0") as one:
        with pytest.raises(RuntimeError, match="timer hook is taken"), anyio.fail_after(5):
            await WireGuardPort(wg, one).run_timers()
