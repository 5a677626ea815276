"""What docs/platforms.md promises, checked through the fake system-call layer."""

from __future__ import annotations

import pytest

from tunflow import AsyncDevice, SyncDevice, UnsupportedError
from tunflow.platform.fake import FakeSyscalls, pretend_platform


@pytest.mark.parametrize("face", [SyncDevice, AsyncDevice])
@pytest.mark.parametrize("adopt", ["from_fd", "borrow_fd"])
def test_android_refuses_packet_information_before_any_system_call(
    face: type[SyncDevice] | type[AsyncDevice], adopt: str
) -> None:
    # The matrix's "—" for Android: an Android TUN fd carries no header, so a device that
    # believed it did would refuse bare packets on send and write 4 stray bytes before each
    # packet given a header.
    with pretend_platform("android") as fake:
        assert isinstance(fake, FakeSyscalls)
        fd = fake.open("/fake/vpnservice", 2)
        calls = len(fake.calls)
        with pytest.raises(UnsupportedError, match="no packet-information header"):
            getattr(face, adopt)(fd, packet_information=True)
        assert len(fake.calls) == calls
        assert fake.open_fds() == {fd}
        fake.close_all()
