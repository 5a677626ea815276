"""The pipeline TOML held to docs/pipeline.md: what it accepts, and where its errors point."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Interface, IPv6Interface, ip_network

import pytest

from tunflow import ConfigError, Layer
from tunflow.config import DeviceSpec, PipelineSpec, TransportSpec, TunnelSpec, loads_config
from tunflow.transport import UDPTransport

TWO_DEVICES = """
[devices.a]
[devices.b]
queues = 2
[[stages]]
plugin = "stats"
[pipeline]
source = "b"
sink = "a"
"""


@pytest.mark.parametrize(("queues", "multi"), [(1, False), (2, True), (256, True)])
def test_only_more_than_one_queue_makes_a_multi_queue_device(queues: int, multi: bool) -> None:
    # docs/pipeline.md: "queues = 2  # > 1: a multi-queue device"
    assert DeviceSpec(queues=queues).builder().config().multi_queue is multi


def test_a_device_spec_builds_the_device_it_describes() -> None:
    config = (
        DeviceSpec(
            name="tf7",
            mtu=1400,
            addresses=["10.0.0.1/24", "fd00::1/64"],
            routes=["192.0.2.0/24", "fd01::/64"],
            offload=True,
            tx_queue_len=500,
            netns="ns1",
        )
        .builder()
        .config()
    )
    assert (config.name, config.layer, config.mtu) == ("tf7", Layer.L3, 1400)
    assert [s.interface for s in config.ipv4] == [IPv4Interface("10.0.0.1/24")]
    assert config.ipv6 == (IPv6Interface("fd00::1/64"),)
    assert config.routes == (ip_network("192.0.2.0/24"), ip_network("fd01::/64"))
    assert (config.offload, config.tx_queue_len, config.netns) == (True, 500, "ns1")
    assert not config.attach and not config.multi_queue
    tap = DeviceSpec(name="tf8", layer="tap", mac="02:00:00:00:00:01").builder().config()
    assert (tap.layer, tap.mac) == (Layer.L2, bytes.fromhex("020000000001"))
    attached = DeviceSpec(name="tf9", attach=True).builder().config()
    assert attached.attach and attached.name == "tf9"


def test_a_one_state_stage_runs_in_task_workers_over_many_queues() -> None:
    # a stage keeping one state for every lane is refused in more than one worker *process*;
    # task workers share it, whatever the number of queues
    text = TWO_DEVICES.replace(
        'plugin = "stats"', 'plugin = "ratelimit"\noptions = { rate = "1mbit" }'
    )
    cfg = loads_config(text)
    assert cfg.pipeline is not None and cfg.pipeline.workers == "tasks"
    with pytest.raises(ConfigError, match="keeps one state for every lane"):
        loads_config(text.replace('sink = "a"', 'sink = "a"\nworkers = "processes"'))


@pytest.mark.parametrize("key", ["optoins", "plugins", "on-error"])
def test_an_unknown_key_of_a_stage_is_refused_by_name(key: str) -> None:
    # the schema refuses unknown keys: a misspelt one is not dropped without a word
    text = TWO_DEVICES.replace('plugin = "stats"', f'plugin = "stats"\n{key} = {{}}')
    with pytest.raises(ConfigError) as info:
        loads_config(text, file="bad.toml")
    assert info.value.path == "stages[0]"
    assert key in str(info.value)


def test_a_pipeline_without_a_source_is_refused_at_its_key() -> None:
    # (left unchecked, `tunflow check` passed it and `tunflow run` failed looking it up)
    with pytest.raises(ConfigError) as info:
        loads_config(TWO_DEVICES.replace('source = "b"\n', ""), file="bad.toml")
    assert info.value.path == "pipeline.source"
    with pytest.raises(ConfigError) as info:
        loads_config(TWO_DEVICES.replace('sink = "a"\n', ""), file="bad.toml")
    assert info.value.path == "pipeline.sink"


def test_an_unknown_end_is_answered_with_the_names_defined() -> None:
    text = TWO_DEVICES + '[transports.wan]\nlisten = "127.0.0.1:0"\n'
    with pytest.raises(ConfigError) as info:
        loads_config(text.replace('sink = "a"', 'sink = "c"'), file="bad.toml")
    assert info.value.path == "pipeline.sink"
    assert str(info.value).endswith("'c' is not a device or transport (defined: a, b, wan)")


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        (lambda: DeviceSpec(queues=1.5), "queues"),
        (lambda: TransportSpec(max_datagram=1400.0), "max_datagram"),
        (lambda: PipelineSpec(source="a", sink="a", batch_size=2.5), "batch_size"),
        (lambda: TunnelSpec(local="a", remote="b", buffer=2.0), "buffer"),
    ],
)
def test_a_fraction_built_in_python_is_not_an_integer(spec: Callable[[], object], key: str) -> None:
    # a file's `queues = 1.5` is "must be an integer"; the same checks run in Python, where a
    # float passed and `Config.open` failed on it (range(0.5) for the queues)
    with pytest.raises(ConfigError, match=rf"^{key}: must be an integer, not ") as info:
        spec()
    assert info.value.path == key
    assert TunnelSpec(local="a", remote="b", statistics_interval=2).statistics_interval == 2


TWO_TRANSPORTS = """
[transports.a]
listen = "127.0.0.1:0"
netns = "/proc/1/ns/net"
[transports.b]
listen = "127.0.0.1:0"
peer = "127.0.0.1:9"
netns = "ns-b"
[pipeline]
source = "a"
sink = "b"
"""


def test_a_transport_takes_a_network_namespace_by_name_or_path() -> None:
    # docs/pipeline.md: [transports.X] netns = "name", as a device's
    transports = loads_config(TWO_TRANSPORTS).transports
    assert [t.netns for t in transports.values()] == ["/proc/1/ns/net", "ns-b"]
    assert TransportSpec().netns is None
    assert TransportSpec(netns="ns-b").netns == "ns-b"


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        ('""', "transports.b", "netns must be a namespace name or path, not ''"),
        ('".."', "transports.b", "netns must be a namespace name or path, not '..'"),
        ("5", "transports.b.netns", "must be a string, not 5"),
        ("true", "transports.b.netns", "must be a string, not True"),
    ],
)
def test_a_transport_namespace_is_refused_as_a_device_one_is(
    value: str, path: str, message: str
) -> None:
    text = TWO_TRANSPORTS.replace('netns = "ns-b"', f"netns = {value}")
    with pytest.raises(ConfigError) as info:
        loads_config(text, file="bad.toml")
    assert info.value.path == path
    assert str(info.value) == f"bad.toml: {path}: {message}"
    as_device = TWO_DEVICES.replace("[devices.b]", f"[devices.b]\nnetns = {value}")
    with pytest.raises(ConfigError) as device:
        loads_config(as_device, file="bad.toml")
    assert str(device.value) == str(info.value).replace("transports.b", "devices.b")


def test_a_transport_namespace_built_in_python_is_checked() -> None:
    for bad in ("", ".", "..", "a\0b", 5):
        with pytest.raises(ConfigError, match="netns must be a namespace name or path"):
            TransportSpec(netns=bad)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_open_binds_a_transport_in_its_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str | None]] = []

    def bind(local: str, **kwargs: object) -> UDPTransport:
        seen.append((kwargs["name"], kwargs["netns"]))  # type: ignore[arg-type]
        raise OSError("not here")

    monkeypatch.setattr(UDPTransport, "bind", bind)
    with pytest.raises(OSError, match="not here"):
        async with loads_config(TWO_TRANSPORTS).open():
            raise AssertionError("opened")
    assert seen == [("a", "/proc/1/ns/net")]
