"""The wg-quick file format: what wg(8)/wg-quick(8) accept, typed, and errors that name the line."""

from __future__ import annotations

import base64
import ipaddress
import shutil
from pathlib import Path

import pytest

from tunflow import ConfigError
from tunflow.wireguard import PrivateKey
from tunflow.wireguard.protocol import InterfaceConfig, WireGuard
from tunflow.wireguard.wgquick import (
    QuickConfig,
    hooks,
    load_wgquick,
    parse_wgquick,
    strip_wgquick,
)

KEY_A = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
PUB_B = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
PUB_C = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="
PSK = "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE="

FULL = f"""
# a comment line
[Interface]
PrivateKey = {KEY_A}
ListenPort = 51820
Address = 10.0.0.1/24, fd00::1/64   # trailing comment
Address = 10.9.0.1/16
MTU = 1380
DNS = 10.0.0.53, example.internal
FwMark = 0x1234
Table = off
PostUp = echo up %i
PreDown = echo down %i

[Peer]
PublicKey = {PUB_B}
PresharedKey = {PSK}
AllowedIPs = 10.0.0.2/32, fd00::2/128
AllowedIPs = 192.168.50.0/24
Endpoint = 192.0.2.7:51820
PersistentKeepalive = 25

[peer]
publickey = {PUB_C}
allowedips = 10.0.0.3/32
endpoint = [2001:db8::3]:4000
native = yes
persistentkeepalive = off
"""


def test_full_file() -> None:
    cfg = parse_wgquick(FULL, file="wg0.conf")
    assert cfg.private_key == PrivateKey.from_base64(KEY_A)
    assert cfg.listen_port == 51820 and cfg.mtu == 1380 and cfg.fwmark == 0x1234
    assert cfg.addresses == tuple(
        ipaddress.ip_interface(a) for a in ("10.0.0.1/24", "fd00::1/64", "10.9.0.1/16")
    )
    assert cfg.dns == ("10.0.0.53", "example.internal")
    assert cfg.table == "off"
    assert hooks(cfg.post_up, "wg0") == ["echo up wg0"]
    assert hooks(cfg.pre_down, "wg0") == ["echo down wg0"]
    b, c = cfg.peers
    assert b.public_key.to_base64() == PUB_B and b.preshared_key is not None
    assert [str(n) for n in b.allowed_ips] == ["10.0.0.2/32", "fd00::2/128", "192.168.50.0/24"]
    assert (b.endpoint, b.persistent_keepalive, b.native) == ("192.0.2.7:51820", 25, False)
    assert (c.endpoint, c.persistent_keepalive, c.native) == ("[2001:db8::3]:4000", 0, True)
    assert (b.line, c.line) == (15, 23)


def test_address_and_dns_lists_may_be_separated_by_spaces() -> None:
    # wg-quick reads them as ${value//,/ } word-split: spaces separate items as commas do
    # (AllowedIPs is wg's, which drops every space, so there only commas separate)
    cfg = parse_wgquick(
        f"[Interface]\nPrivateKey = {KEY_A}\nAddress = 10.0.0.1/24 fd00::1/64\n"
        "DNS = 1.1.1.1 8.8.8.8,  corp.example\tlab.example\n"
    )
    assert cfg.addresses == (
        ipaddress.ip_interface("10.0.0.1/24"),
        ipaddress.ip_interface("fd00::1/64"),
    )
    assert cfg.dns == ("1.1.1.1", "8.8.8.8", "corp.example", "lab.example")


def test_interface_config_resolves_names_and_sets_native() -> None:
    text = f"""[Interface]
PrivateKey = {KEY_A}
[Peer]
PublicKey = {PUB_B}
Endpoint = vpn.example.net:51820
AllowedIPs = 10.0.0.2/32
[Peer]
PublicKey = {PUB_C}
Endpoint = [2001:DB8::3]:4000
"""
    looked_up: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> tuple[str, int]:
        looked_up.append((host, port))
        return ("198.51.100.9", port)

    ic = parse_wgquick(text).interface_config(resolve=resolve)
    assert looked_up == [("vpn.example.net", 51820)]  # IP literals are not looked up
    assert [p.endpoint for p in ic.peers] == [("198.51.100.9", 51820), ("2001:db8::3", 4000)]
    assert ic.listen_port == 0 and ic.mtu == 1420
    assert not any(p.native_mode for p in ic.peers)
    assert all(
        p.native_mode
        for p in parse_wgquick(text).interface_config(native=True, resolve=resolve).peers
    )


def test_unresolvable_endpoint_names_the_line() -> None:
    # the Endpoint's own line, not its section's
    text = (
        f"[Interface]\nPrivateKey = {KEY_A}\n[Peer]\nPublicKey = {PUB_B}\n"
        "AllowedIPs = 10.0.0.2/32\nEndpoint = nx.invalid:1\n"
    )

    def fail(host: str, port: int) -> tuple[str, int]:
        raise OSError("Name or service not known")

    with pytest.raises(ConfigError, match=r"f.conf: line 6: endpoint 'nx.invalid:1' does not"):
        parse_wgquick(text, file="f.conf").interface_config(resolve=fail)


@pytest.mark.parametrize("host", ["a..b", "a" * 64 + ".example"])
def test_a_malformed_endpoint_name_names_the_line(host: str) -> None:
    # the idna codec refuses an empty label or one over 63 characters with UnicodeError (a
    # ValueError) before any lookup: one line naming the file and line, not a traceback
    text = f"[Interface]\nPrivateKey = {KEY_A}\n[Peer]\nPublicKey = {PUB_B}\nEndpoint = {host}:1\n"
    with pytest.raises(ConfigError, match=r"^f.conf: line 5: endpoint .* not a valid host name"):
        parse_wgquick(text, file="f.conf").interface_config()


@pytest.mark.parametrize(
    ("written", "endpoint"),
    [
        ("fd00::1:51820", ("fd00::1", 51820)),
        ("fe80::1%lo:4000", ("fe80::1%lo", 4000)),
        ("::ffff:192.0.2.1:7", ("::ffff:c000:201", 7)),
    ],
)
def test_a_bare_ipv6_endpoint_is_split_at_its_last_colon(
    written: str, endpoint: tuple[str, int]
) -> None:
    # wg setconf (and so wg-quick) splits an unbracketed endpoint at its last colon and takes
    # what is before as the host: `wg set … endpoint fd00::1:51820` is accepted (run here)
    text = f"[Interface]\nPrivateKey = {KEY_A}\n[Peer]\nPublicKey = {PUB_B}\nEndpoint = {written}\n"
    (peer,) = parse_wgquick(text).interface_config(resolve=_no_lookup).peers
    assert peer.endpoint == endpoint


@pytest.mark.parametrize("written", ["fd00::1", "2001:db8::51820", "fd00::1:", "a:b:1"])
def test_an_endpoint_whose_host_is_no_ipv6_address_before_its_last_colon_is_refused(
    written: str,
) -> None:
    # "fd00::1" is host "fd00:" and port 1, as wg reads it: no address (wg: "Name or service
    # not known")
    text = f"[Interface]\nPrivateKey = {KEY_A}\n[Peer]\nPublicKey = {PUB_B}\nEndpoint = {written}\n"
    with pytest.raises(ConfigError, match="endpoint"):
        parse_wgquick(text).interface_config(resolve=_no_lookup)


def _no_lookup(host: str, port: int) -> tuple[str, int]:
    raise OSError(f"{host!r} looked up")


def test_ports_are_ascii_decimal_and_a_scope_is_kept() -> None:
    # as wg(8) reads them: "08" is 8 (int(v, 0) refused it), other scripts' digits are no port
    text = (
        f"[Interface]\nPrivateKey = {KEY_A}\nListenPort = 08\n[Peer]\nPublicKey = {PUB_B}\n"
        "Endpoint = [fe80::1%lo]:051820\nPersistentKeepalive = 025\n"
    )
    quick = parse_wgquick(text)
    assert quick.listen_port == 8 and quick.peers[0].persistent_keepalive == 25
    [peer] = quick.interface_config().peers
    assert peer.endpoint == ("fe80::1%lo", 51820)
    for bad in ("ListenPort = \u0665", "ListenPort = 0x10", "ListenPort = 5_1"):
        with pytest.raises(ConfigError, match=r"line 3: ListenPort: .* is not a number"):
            parse_wgquick(text.replace("ListenPort = 08", bad))
    with pytest.raises(ConfigError, match=r"line 6: Endpoint: .* with a port in"):
        parse_wgquick(text.replace(":051820", ":\u0665"))


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("[Interface]\nPrivateKey = nope\n", 2, "PrivateKey: .*private key"),
        ("[Interface]\nPrivateKey = {k}\nListenPort = 70000\n", 3, "ListenPort: 70000 is outside"),
        ("[Interface]\nPrivateKey = {k}\nMTU = big\n", 3, "MTU: 'big' is not a number"),
        ("[Interface]\nPrivateKey = {k}\nAddress = 10.0.0.300/24\n", 3, "not an address"),
        (
            "[Interface]\nPrivateKey = {k}\nColour = blue\n",
            3,
            "unknown key 'Colour' in \\[Interface\\]",
        ),
        (
            "[Interface]\nPrivateKey = {k}\n[Peer]\nPublicKey = {p}\nAllowedIPs = 10.0.0/33\n",
            5,
            "not an IP prefix",
        ),
        (
            "[Interface]\nPrivateKey = {k}\n[Peer]\nPublicKey = {p}\nEndpoint = 1.2.3.4\n",
            5,
            "Endpoint: endpoint",
        ),
        (
            "[Interface]\nPrivateKey = {k}\n[Peer]\nPublicKey = {p}\nNative = maybe\n",
            5,
            "not true or false",
        ),
        (
            "[Interface]\nPrivateKey = {k}\n[Peer]\nAllowedIPs = 10.0.0.2/32\n",
            3,
            "\\[Peer\\] has no PublicKey",
        ),
        ("[Interface]\nPrivateKey = {k}\n[Peers]\n", 3, "unknown section \\[Peers\\]"),
        ("[Interface]\nPrivateKey = {k}\njust words\n", 3, "expected 'Key = Value'"),
        ("PrivateKey = {k}\n", 1, "outside a section"),
        ("[Interface]\nPrivateKey =\nListenPort = 1\n", 2, "PrivateKey: .*private key"),
        ("[Interface]\nPrivateKey = {k}\nTable = vpn\n", 3, "Table: 'vpn' is not auto, off, main"),
        ("[Interface]\nPrivateKey = {k}\nTable = 0\n", 3, "table 0 is not in 1…4294967295"),
        ("[Interface]\nPrivateKey = {k}\nTable = 255\n", 3, "local table"),
        ("[Interface]\nPrivateKey = {k}\nTable = 4294967296\n", 3, "table 4294967296"),
        ("[Interface]\nPrivateKey = {k}\nTable = -1\n", 3, "table -1"),
        (
            "[Interface]\nPrivateKey = {k}\n[Peer]\nPublicKey = {p}\n[Peer]\nPublicKey = {p}\n",
            5,
            "second \\[Peer\\].*line 3",
        ),
        ("[Interface]\nPrivateKey = {k}\n[Interface]\n", 3, "second \\[Interface\\]"),
        ("[Interface\n", 1, "must end with"),
    ],
)
def test_errors_name_file_and_line(body: str, line: int, message: str) -> None:
    text = body.format(k=KEY_A, p=PUB_B)
    with pytest.raises(ConfigError, match=f"^wg1.conf: line {line}: .*{message}") as info:
        parse_wgquick(text, file="wg1.conf")
    assert info.value.file == "wg1.conf" and info.value.path == f"line {line}"


@pytest.mark.parametrize(
    ("value", "table"),
    [
        ("auto", "auto"),
        ("AUTO", "auto"),
        ("off", "off"),
        ("main", 254),
        ("Main", 254),
        ("1234", 1234),
        ("0x10", 16),
        ("51820", 51820),
        ("253", 253),
        ("4294967295", 2**32 - 1),
    ],
)
def test_table_values(value: str, table: str | int) -> None:
    cfg = parse_wgquick(f"[Interface]\nPrivateKey = {KEY_A}\nTable = {value}\n")
    assert cfg.table == table


def test_table_defaults_to_auto() -> None:
    assert parse_wgquick(f"[Interface]\nPrivateKey = {KEY_A}\n").table == "auto"


def test_no_interface_section() -> None:
    with pytest.raises(ConfigError, match=r"wg\.conf: no \[Interface\]"):
        parse_wgquick(f"[Peer]\nPublicKey = {PUB_B}\n", file="wg.conf")


def test_load_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "wg7.conf"
    path.write_text(FULL)
    assert isinstance(load_wgquick(path), QuickConfig)
    with pytest.raises(ConfigError, match=r"missing\.conf: cannot read"):
        load_wgquick(tmp_path / "missing.conf")
    (tmp_path / "bin.conf").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not a UTF-8"):
        load_wgquick(tmp_path / "bin.conf")
    # (a NUL in the path — from a TOML string — let open()'s ValueError out: the wireguard
    # stage's options reported it as the plugin failing to build)
    with pytest.raises(ConfigError, match="cannot read the file: embedded null byte"):
        load_wgquick(f"{tmp_path}/a\x00b.conf")


def test_saved_file_reads_back_as_the_running_interface(tmp_path: Path) -> None:
    from tunflow.wireguard.protocol import PresharedKey, PublicKey
    from tunflow.wireguard.protocol.uapi import DeviceInfo, PeerInfo
    from tunflow.wireguard.wgquick import render_saved, save_wgquick

    quick = parse_wgquick(FULL.replace("[Peer]", "SaveConfig = true\n\n[Peer]", 1))
    # the running interface: one peer changed by `wg set`, one added; another port and mark
    running = DeviceInfo(
        PrivateKey.from_base64(KEY_A),
        listen_port=51999,
        fwmark=0xCA6C,
        peers=(
            PeerInfo(
                PublicKey.from_base64(PUB_B),
                preshared_key=PresharedKey.from_base64(PSK),
                endpoint=("198.51.100.9", 40000),
                allowed_ips=(ipaddress.ip_network("10.0.0.2/32"),),
                persistent_keepalive_interval=15,
            ),
            PeerInfo(
                PublicKey.from_base64(PUB_C),
                endpoint=("2001:db8::7", 51820),
                allowed_ips=(ipaddress.ip_network("10.0.0.3/32"),),
            ),
        ),
    )
    addresses = [
        ipaddress.ip_interface("10.0.0.1/24"),
        ipaddress.ip_interface("fd00::1/64"),
        ipaddress.ip_interface("fe80::1/64"),  # a TUN's link-local address: not saved
    ]
    text = render_saved(
        quick, running, addresses=addresses, mtu=1380, native=[PublicKey.from_base64(PUB_C)]
    )
    path = tmp_path / "wg0.conf"
    path.write_text(FULL)
    path.chmod(0o644)
    save_wgquick(path, text)
    assert path.stat().st_mode & 0o777 == 0o600  # it holds the private key
    assert not (tmp_path / "wg0.conf.tmp").exists()
    saved = load_wgquick(path)
    assert saved.save_config and saved.table == "off" and saved.mtu == 1380
    assert [str(a) for a in saved.addresses] == ["10.0.0.1/24", "fd00::1/64"]
    assert saved.dns == quick.dns
    assert (saved.post_up, saved.pre_down) == (quick.post_up, quick.pre_down)
    assert (saved.listen_port, saved.fwmark) == (51999, 0xCA6C)
    assert saved.private_key.to_base64() == KEY_A
    b, c = saved.peers
    assert b.public_key.to_base64() == PUB_B and b.preshared_key is not None
    assert b.preshared_key.to_base64() == PSK
    assert (b.endpoint, b.persistent_keepalive, b.native) == ("198.51.100.9:40000", 15, False)
    assert [str(n) for n in b.allowed_ips] == ["10.0.0.2/32"]
    assert c.preshared_key is None and c.native
    assert c.endpoint == "[2001:db8::7]:51820"
    # saving what was saved changes nothing
    again = render_saved(
        saved, running, addresses=addresses, mtu=1380, native=[PublicKey.from_base64(PUB_C)]
    )
    assert again == text
    # `tunflow save` of a file without SaveConfig does not add it (as wg-quick save)
    assert "SaveConfig" not in render_saved(parse_wgquick(FULL), running)


def test_a_file_without_private_key_comes_up_keyless_and_saves_back_so(tmp_path: Path) -> None:
    # as wg-quick: `wg setconf`/`addconf` of such a file leaves the new interface without a
    # key (the all-zero one wg sends), `wg set … private-key FILE` gives it one later; what
    # `tunflow save` writes of a keyless interface (no PrivateKey, as `wg showconf`) reads back
    from tunflow.wireguard.protocol import PublicKey
    from tunflow.wireguard.protocol.uapi import DeviceInfo, PeerInfo, device_info
    from tunflow.wireguard.wgquick import render_saved

    text = (
        f"[Interface]\nListenPort = 51820\n[Peer]\nPublicKey = {PUB_B}\nAllowedIPs = 10.0.0.2/32\n"
    )
    quick = parse_wgquick(text, file="wg0.conf")
    assert quick.private_key is None
    config = quick.interface_config()
    assert config.private_key is None
    wg = WireGuard.from_config(config)
    assert wg.private_key is None and wg.public_key is None
    assert device_info(wg).private_key is None
    wg.set_private_key(PrivateKey.from_base64(KEY_A))
    assert wg.public_key == PrivateKey.from_base64(KEY_A).public_key()
    assert strip_wgquick(text) == text
    running = DeviceInfo(
        None,
        listen_port=51820,
        peers=(
            PeerInfo(
                PublicKey.from_base64(PUB_B), allowed_ips=(ipaddress.ip_network("10.0.0.2/32"),)
            ),
        ),
    )
    saved = render_saved(quick, running)
    assert "PrivateKey" not in saved
    path = tmp_path / "wg0.conf"
    path.write_text(saved)
    again = load_wgquick(path)
    assert again.private_key is None and again.peers == parse_wgquick(saved).peers
    assert render_saved(again, running) == saved
    # the all-zero key (what wg sends for none) is no key either
    zero = base64.b64encode(bytes(32)).decode()
    config = parse_wgquick(f"[Interface]\nPrivateKey = {zero}\n").interface_config()
    assert WireGuard.from_config(config).private_key is None
    assert InterfaceConfig(None).private_key is None


@pytest.mark.parametrize(
    ("written", "saved"),
    [
        ("Table = auto\n", "Table = auto"),  # was left out: auto is the default
        ("Table = 0x10\n", "Table = 0x10"),
        ("Table = 254\n", "Table = 254"),
        ("Table = main\n", "Table = main"),
        ("", None),
    ],
)
def test_a_saved_file_keeps_table_as_the_file_wrote_it(written: str, saved: str | None) -> None:
    # wg-quick's save_config writes `Table = $TABLE`, the value as the file spelled it, when
    # the file had one — `Table = auto` included
    from tunflow.wireguard.protocol.uapi import DeviceInfo
    from tunflow.wireguard.wgquick import render_saved

    quick = parse_wgquick(f"[Interface]\nPrivateKey = {KEY_A}\n{written}")
    lines = render_saved(quick, DeviceInfo(PrivateKey.from_base64(KEY_A))).splitlines()
    assert [line for line in lines if line.startswith("Table")] == ([saved] if saved else [])


def test_a_failed_save_leaves_the_old_file(tmp_path: Path) -> None:
    from tunflow.wireguard.wgquick import save_wgquick

    path = tmp_path / "wg0.conf"
    path.write_text("old\n")
    (tmp_path / "wg0.conf.tmp").mkdir()  # the temporary file cannot be made
    with pytest.raises(OSError):
        save_wgquick(path, "new\n")
    assert path.read_text() == "old\n"


def test_saving_through_a_symbolic_link_writes_the_file_it_points_to(tmp_path: Path) -> None:
    # wg-quick saves to `readlink -f` of the file: /etc/wireguard/wg0.conf may be a link into
    # a managed directory, and must stay one
    from tunflow.wireguard.wgquick import save_wgquick

    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "wg0.conf"
    target.write_text("old\n")
    link = tmp_path / "wg0.conf"
    link.symlink_to(target)
    save_wgquick(link, "new\n")
    assert link.is_symlink() and link.resolve() == target
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real", "wg0.conf"]


def test_a_save_is_readable_by_its_owner_only_whatever_a_stale_tmp_file_allowed(
    tmp_path: Path,
) -> None:
    # the file holds the private key: a wg0.conf.tmp left world-readable (by a crash, by hand)
    # keeps its mode through O_CREAT, and the saved file must not take it
    from tunflow.wireguard.wgquick import save_wgquick

    path = tmp_path / "wg0.conf"
    stale = tmp_path / "wg0.conf.tmp"
    stale.write_text("stale\n")
    stale.chmod(0o644)
    save_wgquick(path, "new\n")
    assert path.read_text() == "new\n" and path.stat().st_mode & 0o777 == 0o600
    assert not stale.exists()


def test_strip_leaves_what_wg_setconf_takes() -> None:
    text = f"""# wg0, by hand
[Interface]
PrivateKey = {KEY_A}
address = 10.0.0.1/24   # any case
ListenPort = 51820
MTU = 1380
DNS = 10.0.0.53
Table = off
PreUp = echo a
PostUp = echo b
PreDown = echo c
PostDown = echo d
SaveConfig = true
FwMark = 0x10

[Peer]  # the hub
PublicKey = {PUB_B}
Native = true
AllowedIPs = 10.0.0.2/32
Endpoint = 192.0.2.7:51820
"""
    assert (
        strip_wgquick(text)
        == f"""# wg0, by hand
[Interface]
PrivateKey = {KEY_A}
ListenPort = 51820
FwMark = 0x10

[Peer]  # the hub
PublicKey = {PUB_B}
AllowedIPs = 10.0.0.2/32
Endpoint = 192.0.2.7:51820
"""
    )
    # FULL (two peers, repeated keys, lower-case sections): the same peers and wg keys remain
    back, before = parse_wgquick(strip_wgquick(FULL)), parse_wgquick(FULL)
    assert (back.private_key, back.listen_port, back.fwmark) == (
        before.private_key,
        before.listen_port,
        before.fwmark,
    )
    assert [(p.public_key, p.allowed_ips, p.endpoint) for p in back.peers] == [
        (p.public_key, p.allowed_ips, p.endpoint) for p in before.peers
    ]
    assert any(p.native for p in before.peers) and not any(p.native for p in back.peers)
    assert (back.addresses, back.dns, back.post_up, back.table) == ((), (), (), "auto")


def test_strip_checks_the_file_first() -> None:
    bad = f"[Interface]\nPrivateKey = {KEY_A}\nAdress = 10.0.0.1/24\n"
    with pytest.raises(ConfigError, match="line 3"):
        strip_wgquick(bad, file="wg0.conf")
    # a last line without a newline gets one (wg reads it either way)
    assert (
        strip_wgquick(f"[Interface]\nPrivateKey = {KEY_A}")
        == f"[Interface]\nPrivateKey = {KEY_A}\n"
    )


def test_a_bare_name_is_read_from_etc_wireguard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunflow.cli import main, vpn

    monkeypatch.setattr(vpn, "CONFIG_DIRECTORY", str(tmp_path))
    (tmp_path / "wg7.conf").write_text(FULL)
    assert main(["strip", "wg7"]) == 0  # /etc/wireguard/wg7.conf, here tmp_path/wg7.conf
    assert capsys.readouterr().out == strip_wgquick(FULL)
    assert main(["strip", "wg8"]) == 2
    assert f"{tmp_path}/wg8.conf: cannot read the file" in capsys.readouterr().err
    # a path or a .conf name is taken as given
    assert vpn._config_path("wg0.conf") == Path("wg0.conf")
    assert vpn._config_path("./wg0") == Path("./wg0")


def test_a_world_accessible_file_is_warned_about_as_wg_quick_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # wg-quick: "Warning: `FILE' is world accessible" when the file's and its directory's
    # modes share an "other" bit (the file holds the private key); the output is unchanged
    from tunflow.cli import main

    d = tmp_path / "etc"
    d.mkdir()
    path = d / "wg7.conf"
    path.write_text(FULL)
    for file_mode, dir_mode, warned in (
        (0o644, 0o755, True),
        (0o600, 0o755, False),
        (0o644, 0o750, False),  # others cannot reach it
        (0o604, 0o701, False),  # as wg-quick: no bit in common
        (0o602, 0o703, True),  # any "other" bit (& 0007): writable is as bad as readable
        (0o601, 0o711, True),
    ):
        path.chmod(file_mode)
        d.chmod(dir_mode)
        assert main(["strip", str(path)]) == 0
        out, err = capsys.readouterr()
        assert out == strip_wgquick(FULL)
        assert err == (f"Warning: `{path}' is world accessible\n" if warned else "")


@pytest.mark.parametrize(
    ("value", "mark"),
    [
        ("off", 0),
        ("OFF", 0),
        ("0", 0),
        ("51820", 51820),
        ("010", 10),
        ("0x10", 16),
        ("0xCA6C", 0xCA6C),
    ],
)
def test_fwmark_is_read_as_wg_reads_it(value: str, mark: int) -> None:
    # wg's parse_fwmark: "off", or strtoul base 10 — base 16 after "0x" — of a leading digit
    cfg = parse_wgquick(f"[Interface]\nPrivateKey = {KEY_A}\nFwMark = {value}\n")
    assert cfg.fwmark == mark


@pytest.mark.parametrize("value", ["1_0", "0b1", "0o7", "0X10", "+5", " 5x", "4294967296", "0x"])
def test_fwmark_wg_refuses_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="line 3: FwMark"):
        parse_wgquick(f"[Interface]\nPrivateKey = {KEY_A}\nFwMark = {value}\n")


def test_numbers_past_int_s_4300_digits_are_out_of_range() -> None:
    # int() refuses a string of more than 4300 digits with a ValueError of its own: the file's
    # error said "Exceeds the limit (4300 digits) for integer string conversion"
    text = f"[Interface]\nPrivateKey = {KEY_A}\n[Peer]\nPublicKey = {PUB_B}\nEndpoint = 1.2.3.4:1\n"
    for line, value, message in (
        ("FwMark", "9" * 5000, r"line 3: FwMark: 999999999999… \(5000 digits\) is outside 0…"),
        ("FwMark", "0x" + "f" * 5000, r"line 3: FwMark: 0xffffffffff… \(5002 digits\) is outs"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_wgquick(text.replace("[Peer]", f"{line} = {value}\n[Peer]"))
    with pytest.raises(ConfigError, match=r"line 5: Endpoint: .* with a port in 1…65535"):
        parse_wgquick(text.replace(":1\n", ":" + "9" * 5000 + "\n"))
    # leading zeros count for nothing, however many
    assert parse_wgquick(text.replace(":1\n", ":" + "0" * 5000 + "1\n")).peers[0].endpoint


def test_fwmark_off_is_told_from_no_fwmark() -> None:
    # a reload keeps the running mark for a file without FwMark and clears it for `off`
    assert parse_wgquick(f"[Interface]\nPrivateKey = {KEY_A}\n").fwmark is None
    cfg = parse_wgquick(f"[Interface]\nPrivateKey = {KEY_A}\nFwMark = off\n")
    assert cfg.fwmark == 0 and cfg.interface_config().fwmark == 0


@pytest.mark.parametrize(
    ("line", "where"),
    [
        ("AllowedIPs = 10.0.0.0/8, fd16::%eth0/64", "line 5"),
        ("Address = fd16::1%eth0/64", "line 3"),
    ],
)
def test_a_prefix_with_a_scope_is_refused(line: str, where: str) -> None:
    # Python's ipaddress keeps "%eth0" on an IPv6 prefix or interface; wg and ip refuse it
    # (and `wg show` could not read such an AllowedIPs back from the control socket)
    peer = f"[Peer]\nPublicKey = {PUB_B}\n"
    text = f"[Interface]\nPrivateKey = {KEY_A}\n"
    text += f"{line}\n{peer}" if line.startswith("Address") else f"{peer}{line}\n"
    with pytest.raises(ConfigError, match=f"{where}: .*fd16::"):
        parse_wgquick(text)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_hooks_run_in_bash_as_wg_quick_runs_them(tmp_path: Path) -> None:
    # wg-quick is a bash script and evals its hooks in bash; its man page's own example is
    # `PostUp = wg set %i private-key <(pass WireGuard/private-keys/%i)`, a process
    # substitution that /bin/sh (dash on Debian) cannot parse
    from tunflow.cli import vpn

    out = tmp_path / "out"
    vpn._run_hooks([f"cat <(echo from-bash) > {out}; [[ -s {out} ]]"], "PostUp")
    assert out.read_text() == "from-bash\n"


@pytest.mark.parametrize("command", ["genkey", "genpsk"])
def test_genkey_into_a_world_readable_file_is_warned_about_as_wg_does(
    command: str, tmp_path: Path
) -> None:
    # wg genkey/genpsk: a key written to a regular file others can read gets a warning (the
    # umask tunflow set did nothing: stdout was opened by the shell before)
    import subprocess
    import sys

    for mode, warned in ((0o644, True), (0o600, False)):
        out = tmp_path / f"key-{mode:o}"
        out.touch(mode)
        out.chmod(mode)
        with out.open("wb") as f:
            done = subprocess.run(
                [sys.executable, "-m", "tunflow.cli", command],
                stdout=f,
                stderr=subprocess.PIPE,
                text=True,
                check=True,
            )
        assert len(out.read_text().strip()) == 44
        assert done.stderr == (
            "Warning: writing to world accessible file.\n"
            "Consider setting the umask to 077 and trying again.\n"
            if warned
            else ""
        )


def test_a_temporary_name_resolution_failure_is_retried_as_wg_retries_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # wg retries getaddrinfo on anything but EAI_NONAME/EAI_FAIL/EAI_NODATA — the DNS not up yet
    # when wg-quick@wg0 starts at boot — 15 times by default (WG_ENDPOINT_RESOLUTION_RETRIES),
    # waiting 1 s, then 1.2 times longer each time (20 s at most)
    import socket

    from tunflow.wireguard import wgquick

    calls: list[str] = []
    slept: list[float] = []

    def getaddrinfo(host: str, port: int, **kw: object) -> list[tuple[object, ...]]:
        calls.append(host)
        if host == "later.example" and len(calls) < 3:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if host == "nx.example":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if host == "down.example":
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return [(socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("192.0.2.9", port))]

    monkeypatch.setattr(wgquick.socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(wgquick.time, "sleep", slept.append)
    monkeypatch.delenv("WG_ENDPOINT_RESOLUTION_RETRIES", raising=False)
    assert wgquick.resolve_endpoint("later.example", 51820) == ("192.0.2.9", 51820)
    assert slept == [1.0, 1.2]
    calls.clear()
    slept.clear()
    with pytest.raises(OSError):
        wgquick.resolve_endpoint("nx.example", 1)  # permanent: at once
    assert calls == ["nx.example"] and slept == []
    calls.clear()
    with pytest.raises(OSError):
        wgquick.resolve_endpoint("down.example", 1)
    assert len(calls) == 16 and slept[:3] == [1.0, 1.2, 1.44] and len(slept) == 15
    calls.clear()
    monkeypatch.setenv("WG_ENDPOINT_RESOLUTION_RETRIES", "2")
    with pytest.raises(OSError):
        wgquick.resolve_endpoint("down.example", 1)
    assert len(calls) == 3


def test_mtu_is_bounded_by_the_largest_datagram() -> None:
    # a full-MTU packet plus 32 bytes must fit one UDP datagram over IPv4 (65507 bytes): 65475
    # is the largest MTU; 65476…65503 were accepted here and then refused by WireGuard() with a
    # message about native_fragment_size, or (with a fragment size given) made full-MTU packets
    # unsendable
    text = f"[Interface]\nPrivateKey = {KEY_A}\nMTU = %d\n"
    assert parse_wgquick(text % 65475).interface_config().mtu == 65475
    with pytest.raises(ConfigError, match="576"):
        parse_wgquick(text % 65476)
    with pytest.raises(ConfigError, match="mtu"):
        InterfaceConfig(PrivateKey.from_base64(KEY_A), mtu=65476)
    with pytest.raises(ConfigError, match="mtu must be 1…65475"):
        WireGuard(PrivateKey.from_base64(KEY_A), mtu=65476, native_fragment_size=1452)
    WireGuard(PrivateKey.from_base64(KEY_A), mtu=65475)  # its default fragment is 65507


def quick(interface: str = "", peer: str = "") -> str:
    return (
        f"[Interface]\nPrivateKey = {KEY_A}\n{interface}\n"
        f"[Peer]\nPublicKey = {PUB_B}\nAllowedIPs = 10.0.0.2/32\n{peer}\n"
    )


@pytest.mark.parametrize(
    ("interface", "peer"),
    [
        ("MTU = 1_500", ""),  # int() reads it; ip(8) does not
        ("MTU = \u0661\u0665\u0660\u0660", ""),  # Arabic-Indic digits
        ("Table = 1_000", ""),
        ("Table = \u0661\u0660", ""),
        ("", "AllowedIPs = 10.0.0.0/255.0.0.0"),  # a netmask: Python reads it, wg does not
        ("", "AllowedIPs = 10.0.0.0/0x8"),
    ],
)
def test_what_wg_refuses_is_refused(interface: str, peer: str) -> None:
    with pytest.raises(ConfigError):
        parse_wgquick(quick(interface, peer))


def test_lines_end_at_newlines_only() -> None:
    # str.splitlines also splits at U+2028, \x0b, \x1c…: a hook's text set the Table
    config = parse_wgquick(quick("PostUp = echo a\u2028Table = off\r\nMTU = 1400\x0b"))
    assert config.table == "auto" and config.post_up == ("echo a\u2028Table = off",)


def test_more_peers_than_wireguard_go_allows_are_refused() -> None:
    # wireguard-go's limit is 65536 peers; a file of more was taken (and every endpoint in it
    # looked up) — now refused at the first [Peer] past it, nothing brought up
    peer = "[Peer]\nPublicKey = {}\nEndpoint = no.such.host.invalid:1\n"
    keys = [base64.b64encode(i.to_bytes(32, "big")).decode() for i in range(1, 65538)]
    head = f"[Interface]\nPrivateKey = {KEY_A}\n"
    with pytest.raises(ConfigError, match=r"too many peers: 65537, at most 65536") as caught:
        parse_wgquick(head + "".join(peer.format(k) for k in keys), file="wg0.conf")
    assert "line 196611" in str(caught.value)  # the 65537th [Peer]
    assert len(parse_wgquick(head + "".join(peer.format(k) for k in keys[:3])).peers) == 3


def test_a_hook_keeps_its_hash_signs_as_wg_quick_passes_them_to_bash() -> None:
    # wg-quick (linux.bash) takes a hook's value from the line before its comment is cut
    # ("unstripped_value"): bash itself reads a '#' that starts a word as a comment, and one
    # inside a word — a sed delimiter, a URL's fragment — is part of the command. tunflow cut
    # the line at the first '#', so `sed -i 's#a#b#' f` ran as `sed -i 's`
    config = parse_wgquick(
        quick(
            "PostUp = sed -i 's#^nameserver.*#nameserver 10.0.0.1#' /etc/resolv.conf\n"
            "PreDown = curl -s http://10.0.0.1/#down  # tell the server\n"
            "PostDown = echo %i # a comment, as bash reads it\n"
            "DNS = 10.0.0.1 # DNS is no hook: its comment is cut\n"
        )
    )
    assert config.post_up == ("sed -i 's#^nameserver.*#nameserver 10.0.0.1#' /etc/resolv.conf",)
    assert config.pre_down == ("curl -s http://10.0.0.1/#down  # tell the server",)
    assert config.post_down == ("echo %i # a comment, as bash reads it",)
    assert config.dns == ("10.0.0.1",)


def test_section_headers_and_repeated_values_read_as_wg_reads_them() -> None:
    # wg's config_read_line drops every space before it compares "[Peer]", and a key given
    # twice keeps the last value (each line overwrites the field)
    config = parse_wgquick(
        f"[ Interface ]\nPrivateKey = {KEY_A}\nListenPort = 1\nListenPort = 51820\n"
        f"[ Peer ]\nPublicKey = {PUB_B}\nPersistentKeepalive = 5\nPersistentKeepalive = 0\n"
    )
    assert config.listen_port == 51820 and config.interface_config().listen_port == 51820
    [peer] = config.peers
    assert peer.persistent_keepalive == 0


def test_the_lowest_values_are_taken() -> None:
    config = parse_wgquick(quick("ListenPort = 0\nMTU = 576", "PersistentKeepalive = 0"))
    assert (config.listen_port, config.mtu, config.peers[0].persistent_keepalive) == (0, 576, 0)


def test_the_highest_values_are_taken_and_one_more_is_refused_naming_its_line() -> None:
    # wg reads a port and a keepalive as 16 bits and a fwmark as 32; past them it refuses the
    # line (a keepalive of 65536 got as far as PeerConfig, whose error named no line)
    config = parse_wgquick(
        quick("ListenPort = 65535\nFwMark = 0xffffffff", "PersistentKeepalive = 65535")
    )
    assert (config.listen_port, config.fwmark) == (65535, 2**32 - 1)
    assert config.peers[0].persistent_keepalive == 65535
    assert config.interface_config().peers[0].persistent_keepalive == 65535
    with pytest.raises(ConfigError, match="line 7: PersistentKeepalive"):
        parse_wgquick(quick("", "PersistentKeepalive = 65536"))
    with pytest.raises(ConfigError, match="line 3: ListenPort"):
        parse_wgquick(quick("ListenPort = 65536"))


def test_an_address_given_twice_is_refused_whatever_its_prefix() -> None:
    # the device refuses the second one: said when the file is read, naming the line
    with pytest.raises(ConfigError, match=r"line 3: Address: 10\.0\.0\.1 is given twice"):
        parse_wgquick(quick("Address = 10.0.0.1/24, 10.0.0.1/32"))
    with pytest.raises(ConfigError, match="line 4: Address: fd00::1 is given twice"):
        parse_wgquick(quick("Address = fd00::1/64\nAddress = fd00::1/128"))


@pytest.mark.parametrize(
    "peer",
    [
        "PersistentKeepalive = +25",  # wg's parse_persistent_keepalive wants a digit first
        "Endpoint = 192.0.2.1:0",
        "Endpoint = :51820",
    ],
)
def test_a_bad_peer_value_is_refused_naming_its_line(peer: str) -> None:
    with pytest.raises(ConfigError, match="line 7"):
        parse_wgquick(quick("", peer))


def test_saved_mtu_and_fwmark_as_wg_quick_and_wg_showconf_write_them() -> None:
    # wg-quick's save_config writes MTU only when the file had one ([[ -n $MTU ]]); wg
    # showconf writes FwMark in hexadecimal (0x%x)
    from tunflow.wireguard.protocol.uapi import DeviceInfo
    from tunflow.wireguard.wgquick import render_saved

    info = DeviceInfo(PrivateKey.from_base64(KEY_A), fwmark=51820)
    lines = render_saved(parse_wgquick(quick()), info, mtu=1380).splitlines()
    assert "FwMark = 0xca6c" in lines and not any(line.startswith("MTU") for line in lines)
    lines = render_saved(parse_wgquick(quick("MTU = 1400")), info, mtu=1380).splitlines()
    assert "MTU = 1380" in lines


def test_resolution_retries_wait_20_seconds_at_most(monkeypatch: pytest.MonkeyPatch) -> None:
    # wg's parse_endpoint: timeout = min(20000000, timeout * 6 / 5) microseconds
    import socket

    from tunflow.wireguard import wgquick

    def getaddrinfo(host: str, port: int, **kw: object) -> list[tuple[object, ...]]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    slept: list[float] = []
    monkeypatch.setattr(wgquick.socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(wgquick.time, "sleep", slept.append)
    monkeypatch.setenv("WG_ENDPOINT_RESOLUTION_RETRIES", "25")
    with pytest.raises(OSError):
        wgquick.resolve_endpoint("down.example", 1)
    assert len(slept) == 25 and max(slept) == slept[-1] == 20.0 and slept[16] < 20.0
