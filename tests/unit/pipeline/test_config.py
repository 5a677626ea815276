"""The TOML configuration: structure, errors that name the file and the key, Python-built."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tunflow import ConfigError
from tunflow.config import (
    Config,
    DeviceSpec,
    PipelineSpec,
    StageSpec,
    TransportSpec,
    TunnelSpec,
    load_config,
    loads_config,
)
from tunflow.pipeline import ErrorPolicy

GOOD = """
[devices.lan]
name = "tf0"
addresses = ["10.0.0.1/24", "fd00::1/64"]
routes = ["192.0.2.0/24"]
queues = 2
offload = true

[transports.wan]
listen = "0.0.0.0:51820"
peer = "192.0.2.7:51820"

[[stages]]
plugin = "filter"
name = "firewall"
on_error = "stop"
[stages.options]
default = "deny"
rules = [{ action = "allow", protocol = "udp", dst_ports = [53, "1000-2000"] }]

[[stages]]
plugin = "ratelimit"
options = { rate = "10mbit", per_flow = true }

[tunnel]
local = "lan"
remote = "wan"
workers = "processes"
buffer = 2
"""


def test_good_file(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    cfg = load_config(path)
    assert cfg.file == str(path)
    assert cfg.devices["lan"].queues == 2 and cfg.devices["lan"].offload
    assert cfg.transports["wan"].peer == "192.0.2.7:51820"
    assert [s.plugin for s in cfg.stages] == ["filter", "ratelimit"]
    assert cfg.stages[0].name == "firewall" and cfg.stages[0].on_error is ErrorPolicy.STOP
    assert cfg.tunnel is not None and cfg.tunnel.workers == "processes" and cfg.pipeline is None
    assert cfg.devices["lan"].builder().config().multi_queue


def test_built_from_python_equals_the_file() -> None:
    cfg = Config(
        devices={
            "lan": DeviceSpec(
                name="tf0",
                addresses=["10.0.0.1/24", "fd00::1/64"],
                routes=["192.0.2.0/24"],
                queues=2,
                offload=True,
            )
        },
        transports={"wan": TransportSpec(listen="0.0.0.0:51820", peer="192.0.2.7:51820")},
        stages=[
            StageSpec(
                "filter",
                {
                    "default": "deny",
                    "rules": [
                        {"action": "allow", "protocol": "udp", "dst_ports": [53, "1000-2000"]}
                    ],
                },
                name="firewall",
                on_error=ErrorPolicy.STOP,
            ),
            StageSpec("ratelimit", {"rate": "10mbit", "per_flow": True}),
        ],
        tunnel=TunnelSpec(local="lan", remote="wan", workers="processes", buffer=2),
    ).check()
    assert cfg == loads_config(GOOD)


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (("queues = 2", "queues = 0"), "devices.lan.queues", "within 1..256"),
        (("queues = 2", 'queues = "two"'), "devices.lan.queues", "must be an integer"),
        # (cattrs took int(): a fraction was cut, true was 1)
        (("queues = 2", "queues = 1.5"), "devices.lan.queues", "must be an integer, not 1.5"),
        (("queues = 2", "queues = true"), "devices.lan.queues", "must be an integer, not True"),
        (("offload = true", "offload = true\nmtuu = 1"), "devices.lan", "mtuu"),
        (('"10.0.0.1/24"', '"10.0.0.300/24"'), "devices.lan", "10.0.0.300"),
        (("offload = true", "offload = true\nmtu = 1000"), "devices.lan", "1280"),
        (('peer = "192.0.2.7:51820"', 'peer = "nowhere"'), "transports.wan", "host:port"),
        (('plugin = "filter"', 'plugin = "fitler"'), "stages[0].plugin", "did you mean filter"),
        (('rate = "10mbit"', 'rate = "fast"'), "stages[1].options", "not a rate"),
        (('action = "allow"', 'action = "allow", prot = 1'), "stages[0].options.rules[0]", "prot"),
        # a string or a table where a list belongs is refused, not split into its characters
        (
            ('dst_ports = [53, "1000-2000"]', 'dst_ports = "80"'),
            "stages[0].options.rules[0].dst_ports",
            "must be a list, not '80'",
        ),
        (
            ('protocol = "udp"', 'protocol = "udp", src = "10.0.0.0/8"'),
            "stages[0].options.rules[0].src",
            "must be a list, not '10.0.0.0/8'",
        ),
        (
            (
                'rules = [{ action = "allow", protocol = "udp", dst_ports = [53, "1000-2000"] }]',
                'rules = { action = "allow" }',
            ),
            "stages[0].options.rules",
            "must be a list, not {'action': 'allow'}",
        ),
        (
            ('addresses = ["10.0.0.1/24", "fd00::1/64"]', 'addresses = "10.0.0.1/24"'),
            "devices.lan.addresses",
            "must be a list, not '10.0.0.1/24'",
        ),
        # a choice or a string said plainly: not cattrs' internals, not str(5)
        (
            ("per_flow = true", 'per_flow = true, mode = "drop"'),
            "stages[1].options.mode",
            "must be one of 'police', 'shape', not 'drop'",
        ),
        (
            ('protocol = "udp"', 'protocol = "udp", name = 5'),
            "stages[0].options.rules[0].name",
            "must be a string, not 5",
        ),
        (('name = "tf0"', "name = true"), "devices.lan.name", "must be a string, not True"),
        # a value where a table belongs: cattrs called .keys() on it, "unknown error ('str'
        # object has no attribute 'keys')"
        (
            ("\n[devices.lan]", '\npipeline = "lan"\n[devices.lan]'),
            "pipeline",
            "a table, not 'lan'",
        ),
        (("[transports.wan]", "[[transports.wan]]"), "transports.wan", "must be a table, not ["),
        (
            (
                'rules = [{ action = "allow", protocol = "udp", dst_ports = [53, "1000-2000"] }]',
                'rules = ["allow"]',
            ),
            "stages[0].options.rules[0]",
            "must be a table, not 'allow'",
        ),
        # (an IPv6 scope was dropped without a word)
        (
            ('addresses = ["10.0.0.1/24", "fd00::1/64"]', 'addresses = ["fe80::1%eth0/64"]'),
            "devices.lan",
            "addresses[0] 'fe80::1%eth0/64': no scope here",
        ),
        (
            ('routes = ["192.0.2.0/24"]', 'routes = ["fd00::%eth0/64"]'),
            "devices.lan",
            "routes[0] 'fd00::%eth0/64': no scope here",
        ),
        # (left out without a name: a new device was made)
        (('name = "tf0"', "attach = true"), "devices.lan", "attaching to an existing device needs"),
        (('remote = "wan"', 'remote = "wna"'), "tunnel.remote", "not a device"),
        # (both directions read the one device: BusyResourceError out of tunflow run)
        (('remote = "wan"', 'remote = "lan"'), "tunnel.remote", "'lan' is tunnel.local too"),
        (('workers = "processes"', 'workers = "threads"'), "tunnel.workers", "threads"),
        (("[tunnel]", "[pipeline]\nsource='lan'\nsink='lan'\n[tunnel]"), None, "exactly one"),
        (('on_error = "stop"', 'on_error = "explode"'), "stages[0]", "explode"),
        (("buffer = 2", "buffer = -1"), "tunnel.buffer", "within 0..1024, not -1"),
        # (each batch in flight was made as the lane started: 10**11 ran into the OOM killer)
        (("buffer = 2", "buffer = 100000000000"), "tunnel.buffer", "within 0..1024"),
        (("buffer = 2", "batch_size = -5"), "tunnel.batch_size", "within 1..65536, not -5"),
        (("buffer = 2", "batch_size = 0"), "tunnel.batch_size", "within 1..65536, not 0"),
        (("buffer = 2", "statistics_interval = 0"), "tunnel.statistics_interval", "positive"),
        (("buffer = 2", "statistics_interval = -1.5"), "tunnel.statistics_interval", "positive"),
        # (cattrs took float(): true was 1.0, a string its number)
        (
            ("buffer = 2", "statistics_interval = true"),
            "tunnel.statistics_interval",
            "must be a number, not True",
        ),
        (
            ("per_flow = true", 'per_flow = true, idle_timeout = "30"'),
            "stages[1].options.idle_timeout",
            "must be a number, not '30'",
        ),
        # (`tunflow check` passed it; `tunflow run` refused it once the devices were made)
        (
            ("per_flow = true", "per_flow = false"),
            "stages[1]",
            "stage 'ratelimit' keeps one state for every lane, which 2 worker processes",
        ),
    ],
)
def test_errors_name_file_and_path(change: tuple[str, str], path: str | None, message: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(ConfigError) as info:
        loads_config(text, file="bad.toml")
    err = info.value
    assert err.file == "bad.toml"
    assert str(err).startswith("bad.toml: ")
    assert err.path == path, str(err)
    assert message in str(err)


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bad.toml: not valid TOML"):
        loads_config("x = [", file="bad.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('[devices.a]\nname = "café"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xe9 at offset 23\)") as info:
        load_config(latin1)
    assert info.value.file == str(latin1)


@pytest.mark.parametrize(
    "text", ["a = " + "[" * 100000 + "]" * 100000, "a = " + "{b=" * 5000 + "1" + "}" * 5000]
)
def test_toml_nested_too_deeply_is_a_config_error(text: str) -> None:
    # the TOML parser recurses: a RecursionError escaped, a traceback from `tunflow check`
    with pytest.raises(ConfigError, match=r"deep.toml: not valid TOML: nested too deeply"):
        loads_config(text, file="deep.toml")


def test_an_integer_is_taken_where_a_float_belongs() -> None:
    cfg = loads_config(GOOD.replace("buffer = 2", "statistics_interval = 2"))
    assert cfg.tunnel is not None
    assert cfg.tunnel.statistics_interval == 2.0
    assert type(cfg.tunnel.statistics_interval) is float


def test_pipeline_spec_defaults() -> None:
    cfg = loads_config('[devices.a]\n[pipeline]\nsource = "a"\nsink = "a"\n')
    assert cfg.pipeline == PipelineSpec(source="a", sink="a")


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        (lambda: PipelineSpec(source="a", sink="a", batch_size=0), "batch_size"),
        (lambda: TunnelSpec(local="a", remote="b", statistics_interval=0), "statistics_interval"),
        (lambda: TunnelSpec(local="a", remote="b", buffer=-1), "buffer"),
        (lambda: DeviceSpec(queues=300), "queues"),
        # (unchecked: 0 dropped every datagram as truncated, a huge one a bare MemoryError)
        (lambda: TransportSpec(max_datagram=0), "max_datagram"),
        (lambda: TransportSpec(max_datagram=99999999999), "max_datagram"),
    ],
)
def test_specs_built_in_python_are_checked_too(spec: Callable[[], object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        spec()
    assert info.value.path == key and str(info.value).startswith(f"{key}: must be")


def test_the_wireguard_plugins_example_is_a_valid_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tunflow_plugins.wireguard
    from tunflow.wireguard import PrivateKey

    monkeypatch.chdir(tmp_path)  # the example names "wg0.conf"
    (tmp_path / "wg0.conf").write_text(
        f"[Interface]\nPrivateKey = {PrivateKey.generate().to_base64()}\n"
        f"[Peer]\nPublicKey = {PrivateKey.generate().public_key().to_base64()}\n"
        "AllowedIPs = 10.9.0.0/24\n"
    )
    doc = tunflow_plugins.wireguard.__doc__ or ""
    example = doc.split("::\n\n", 1)[1].split("\n\nFor ", 1)[0]
    text = "\n".join(line.removeprefix("    ") for line in example.splitlines())
    cfg = loads_config("[devices.tun]\n[transports.peer]\n" + text)
    assert [s.plugin for s in cfg.stages] == ["wireguard"]
    assert cfg.tunnel is not None and (cfg.tunnel.local, cfg.tunnel.remote) == ("tun", "peer")


TWO_DEVICES = """
[devices.a]
name = "tf0"
[devices.b]
name = "tf1"
[pipeline]
source = "a"
sink = "b"
"""


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (
            ('name = "tf1"', 'name = "tf1"\nlayer = "tap"'),
            "pipeline.sink",
            "cannot join a TAP (L2) device to a TUN (L3) device",
        ),
        # (the second device failed to open: "the device is already in use by another process")
        (('name = "tf1"', 'name = "tf0"'), "devices.b.name", "'tf0' is devices.a's name too"),
    ],
)
def test_what_run_refuses_check_refuses(change: tuple[str, str], path: str, message: str) -> None:
    """What ``tunflow run`` refuses without a device made, ``tunflow check`` refuses too."""
    text = TWO_DEVICES.replace(*change)
    assert text != TWO_DEVICES
    with pytest.raises(ConfigError) as info:
        loads_config(text, file="bad.toml")
    assert info.value.path == path, str(info.value)
    assert message in str(info.value)


def test_one_name_in_two_namespaces_is_two_devices() -> None:
    text = TWO_DEVICES.replace('name = "tf1"', 'name = "tf0"\nnetns = "other"')
    assert loads_config(text).devices["b"].name == "tf0"


@pytest.mark.parametrize(
    ("spec", "key", "top"),
    [
        (lambda v: DeviceSpec(queues=v), "queues", 256),
        (lambda v: TransportSpec(max_datagram=v), "max_datagram", 65535),
        (lambda v: PipelineSpec(source="a", sink="a", buffer=v), "buffer", 1024),
        (lambda v: TunnelSpec(local="a", remote="b", batch_size=v), "batch_size", 65536),
    ],
)
def test_a_range_holds_its_last_value(spec: Callable[[int], object], key: str, top: int) -> None:
    # the documented ranges (queues 1..256, buffer 0..1024, batch_size 1..65536, max_datagram
    # 1..65535) include their ends
    assert getattr(spec(top), key) == top
    with pytest.raises(ConfigError, match=rf"^{key}: must be within \d+\.\.{top}, not {top + 1}$"):
        spec(top + 1)


def test_the_last_values_of_the_ranges_are_read_from_a_file() -> None:
    cfg = loads_config(
        GOOD.replace("queues = 2", "queues = 256")
        .replace("buffer = 2", "buffer = 1024\nbatch_size = 65536")
        .replace('workers = "processes"', 'workers = "tasks"')
        .replace("[transports.wan]", "[transports.wan]\nmax_datagram = 65535")
    )
    assert cfg.devices["lan"].queues == 256 and cfg.transports["wan"].max_datagram == 65535
    assert cfg.tunnel is not None and (cfg.tunnel.buffer, cfg.tunnel.batch_size) == (1024, 65536)


@pytest.mark.parametrize("value", ["nan", "-nan", "+nan"])
def test_nan_is_not_a_positive_interval(value: str) -> None:
    # NaN compares false to everything: `value <= 0` alone let it through
    text = GOOD.replace("buffer = 2", f"statistics_interval = {value}")
    with pytest.raises(ConfigError) as info:
        loads_config(text, file="bad.toml")
    assert info.value.path == "tunnel.statistics_interval"
    assert str(info.value).endswith(": must be a positive number, not nan")
    with pytest.raises(ConfigError, match=r"^statistics_interval: must be a positive number"):
        TunnelSpec(local="a", remote="b", statistics_interval=float("nan"))
    with pytest.raises(ConfigError, match=r"^batch_size: must be within 1\.\.65536, not nan"):
        TunnelSpec(local="a", remote="b", batch_size=float("nan"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        (lambda: DeviceSpec(queues=True), "queues"),
        (lambda: TransportSpec(max_datagram=True), "max_datagram"),
        (lambda: PipelineSpec(source="a", sink="a", batch_size=True), "batch_size"),
        (
            lambda: TunnelSpec(local="a", remote="b", statistics_interval=True),
            "statistics_interval",
        ),
        (lambda: TunnelSpec(local="a", remote="b", buffer=False), "buffer"),
        (lambda: TunnelSpec(local="a", remote="b", buffer="2"), "buffer"),  # type: ignore[arg-type]
    ],
)
def test_a_bool_or_a_string_built_in_python_is_not_a_number(
    spec: Callable[[], object], key: str
) -> None:
    # (True is an int to Python: queues=True was one queue, buffer=False no buffer)
    with pytest.raises(ConfigError, match=rf"^{key}: must be a number, not ") as info:
        spec()
    assert info.value.path == key


def test_one_name_for_a_device_and_a_transport_is_refused() -> None:
    text = GOOD.replace("[transports.wan]", "[transports.lan]").replace(
        'remote = "wan"', 'remote = "lan"'
    )
    with pytest.raises(ConfigError) as info:
        loads_config(text, file="bad.toml")
    assert info.value.path is None
    assert str(info.value) == "bad.toml: 'lan' names a device and a transport"


def test_two_devices_may_both_leave_the_number_to_the_kernel() -> None:
    # "tf%d" is a pattern the kernel fills in with a free number: two such devices are two
    # interfaces, not one name given twice
    text = TWO_DEVICES.replace('name = "tf0"', 'name = "tf%d"').replace(
        'name = "tf1"', 'name = "tf%d"'
    )
    cfg = loads_config(text)
    assert [d.name for d in cfg.devices.values()] == ["tf%d", "tf%d"]


ONE_STATE_TUNNEL = """
[devices.a]
[devices.b]
queues = 2
[[stages]]
plugin = "ratelimit"
options = { rate = "1mbit" }
[tunnel]
local = "a"
remote = "b"
workers = "processes"
"""


def test_a_tunnel_counts_the_processes_of_its_remote_side_too() -> None:
    # a tunnel reads both ends: its inbound direction's two queues are two worker processes,
    # each with its own rate limiter, though the local side has one queue
    with pytest.raises(ConfigError) as info:
        loads_config(ONE_STATE_TUNNEL, file="bad.toml")
    assert info.value.path == "stages[0]"
    assert "which 2 worker processes would each build for themselves" in str(info.value)
    # a pipeline only reads its source: a 2-queue sink is written by the one process
    pipeline = ONE_STATE_TUNNEL.replace(
        '[tunnel]\nlocal = "a"\nremote = "b"', '[pipeline]\nsource = "a"\nsink = "b"'
    )
    assert loads_config(pipeline).pipeline is not None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("options = 5", "options must be a table, not 5"),
        ('options = ["rate"]', "options must be a table, not ['rate']"),
        ("name = 5", "name must be a string, not 5"),
        ("name = false", "name must be a string, not False"),
    ],
)
def test_a_stage_s_options_and_name_have_their_types(line: str, message: str) -> None:
    text = GOOD.replace(
        'plugin = "ratelimit"\noptions = { rate = "10mbit", per_flow = true }',
        'plugin = "stats"\n' + line,
    )
    assert text != GOOD
    with pytest.raises(ConfigError) as info:
        loads_config(text, file="bad.toml")
    assert info.value.path == "stages[1]"
    assert str(info.value) == f"bad.toml: stages[1]: {message}"


def test_a_stage_option_error_names_its_key_once() -> None:
    text = GOOD.replace('rate = "10mbit"', 'rate = "fast"')
    with pytest.raises(ConfigError) as info:
        loads_config(text, file="bad.toml")
    assert info.value.path == "stages[1].options"
    assert str(info.value).startswith("bad.toml: stages[1].options: 'fast' is not a rate")
    assert str(info.value).count("stages[1]") == 1
