"""An adopted macOS utun fd (configurable: its interface is learnt) is a utun all the same: the
kernel destroys it with its control socket, so persist() cannot keep it and persist(False)
has nothing to destroy at close — least of all a borrowed fd's utun, which its maker owns."""

from __future__ import annotations

import pytest

from tunflow import SyncDevice, UnsupportedError
from tunflow.platform import darwin
from tunflow.platform.fake import FakeSyscalls, pretend_platform

SIOCIFDESTROY = darwin.FLAVOR.SIOCIFDESTROY


def _destroys(fake: FakeSyscalls) -> list[object]:
    return [c for c in fake.calls if c.name == "ioctl" and c.args[1] == SIOCIFDESTROY]


@pytest.mark.parametrize("borrow", [False, True])
def test_an_adopted_utun_refuses_persist_and_is_not_destroyed(borrow: bool) -> None:
    with pretend_platform("darwin") as fake:
        assert isinstance(fake, FakeSyscalls)
        fd, name = darwin.open_utun(fake, None)
        dev = SyncDevice.borrow_fd(fd) if borrow else SyncDevice.from_fd(fd)
        assert dev.name() == name
        with pytest.raises(UnsupportedError, match="destroys"):
            dev.persist()
        dev.persist(False)  # (what a utun is)
        fake.calls.clear()
        dev.close()
        assert _destroys(fake) == []
        fake.close_all()
