"""A device port's statistics count the packets the kernel cut short (``rx_truncated``)."""

from __future__ import annotations

import pytest

from tests.helpers import no_ipv6, udp_send
from tunflow import DeviceBuilder, PacketTooLargeError, testing
from tunflow.pipeline import as_ports

pytestmark = pytest.mark.needs_root


def test_a_packet_the_kernel_cut_short_is_among_the_ports_drops(netns: testing.Netns) -> None:
    # The MTU raised behind tunflow's back: a read sized for the MTU it knows gets a cut packet,
    # which the device drops and counts. The port left that count out, so a pipeline's
    # statistics (and `tunflow run`) showed the packet as never read and never dropped.
    no_ipv6(netns)
    name = testing.unique_name("tr")
    with DeviceBuilder().name(name).ipv4("10.158.0.1/24").mtu(1400).build_sync() as dev:
        (port,) = as_ports(dev)
        assert port.statistics().drops == {}
        netns.run("ip", "link", "set", name, "mtu", "9000")
        udp_send("10.158.0.2", 5000, bytes(5000))
        with pytest.raises(PacketTooLargeError):
            dev.recv_into(bytearray(dev.max_size), timeout=10)
        assert dev.statistics().rx_truncated == 1
        assert port.statistics().drops == {"truncated": 1}
