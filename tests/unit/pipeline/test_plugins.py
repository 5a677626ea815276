"""Plugin discovery: the built-ins, and a third-party plugin installed and used like a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import anyio
import attrs
import dpkt
import pytest

from tests.helpers import ROOT, install_stage_plugins, ipv4_udp
from tunflow import ConfigError, PluginError
from tunflow.config import loads_config
from tunflow.packet import checksum
from tunflow.pipeline import (
    GROUP,
    MemorySink,
    MemorySource,
    Pipeline,
    StageBase,
    StageSpec,
    available_stages,
    build_stage,
    load_stage_class,
    refresh_plugins,
)

BUILTINS = {"gro", "gso", "filter", "capture", "ratelimit", "stats"}
PLUGIN_SRC = ROOT / "examples" / "third_party_plugin"


def test_builtins_register_through_entry_points() -> None:
    found = available_stages()
    assert set(found) >= BUILTINS
    for name in BUILTINS:
        plugin = found[name]
        assert plugin.target.startswith("tunflow_plugins.")
        assert plugin.distribution and plugin.distribution.startswith("tunflow ")
        assert plugin.summary()
        assert load_stage_class(name).plugin == name  # type: ignore[attr-defined]
    opts = {o.name: o for o in found["ratelimit"].options()}
    assert opts["rate"].required and opts["mode"].default == "'police'"


def test_unknown_plugin_suggests() -> None:
    with pytest.raises(PluginError, match="did you mean filter"):
        load_stage_class("fitler")


def test_spec_round_trip() -> None:
    stage = build_stage(StageSpec("ratelimit", {"rate": "1mbit", "per_flow": True}, name="rl"))
    spec = stage.spec  # type: ignore[attr-defined]
    assert spec.plugin == "ratelimit" and spec.name == "rl"
    assert build_stage(spec).options == stage.options  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as info:
        build_stage(StageSpec("stats", {"interval": "soon"}), path="stages[3]")
    assert info.value.path == "stages[3].options.interval"


class FailsToBuild(StageBase):
    """A plugin whose own code fails once its options fitted (a table file it cannot open)."""

    plugin = "fails_to_build"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        raise OSError(2, "No such file or directory", "/no/table")


def test_a_plugin_that_fails_to_build_is_a_plugin_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not its bare OSError (a traceback from `tunflow check`, exit status 1)."""
    from tunflow.pipeline import _plugins

    eps = dict(_plugins._entry_points())
    eps["fails_to_build"] = metadata.EntryPoint("fails_to_build", f"{__name__}:FailsToBuild", GROUP)
    monkeypatch.setattr(_plugins, "_cache", eps)
    monkeypatch.setattr(_plugins, "_loaded", {})
    with pytest.raises(
        PluginError,
        match=r"'fails_to_build' \(.*:FailsToBuild\) failed to build: "
        r"FileNotFoundError: .*/no/table",
    ) as info:
        build_stage(StageSpec("fails_to_build"))
    assert isinstance(info.value.__cause__, FileNotFoundError)
    text = '[transports.a]\nlisten = "127.0.0.1:1"\n[[stages]]\nplugin = "fails_to_build"\n'
    text += '[pipeline]\nsource = "a"\nsink = "a"\n'
    with pytest.raises(ConfigError, match="failed to build") as cinfo:
        loads_config(text, file="run.toml").check()
    assert cinfo.value.path == "stages[0].plugin"


def test_a_name_two_distributions_register_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first found won silently before, so which stage ran depended on sys.path order."""
    from tunflow.pipeline import _plugins

    found = list(metadata.entry_points(group=GROUP))
    found += [
        metadata.EntryPoint("dupe", f"{__name__}:FailsToBuild", GROUP),
        metadata.EntryPoint("dupe", "elsewhere:Other", GROUP),
        # the same target twice (a package on sys.path twice) is one plugin
        metadata.EntryPoint("twice", f"{__name__}:FailsToBuild", GROUP),
        metadata.EntryPoint("twice", f"{__name__}:FailsToBuild", GROUP),
    ]
    monkeypatch.setattr(_plugins.metadata, "entry_points", lambda group: found)
    monkeypatch.setattr(_plugins, "_cache", None)
    monkeypatch.setattr(_plugins, "_loaded", {})
    monkeypatch.setattr(_plugins, "_clashes", {})
    assert "dupe" in available_stages()
    with pytest.raises(
        PluginError,
        match=r"'dupe' is registered more than once .*FailsToBuild.*"
        r"elsewhere:Other",
    ):
        load_stage_class("dupe")
    assert load_stage_class("twice") is FailsToBuild
    assert load_stage_class("stats") is not None  # the others are untouched


def test_a_plugin_missing_an_extra_says_which_extra_installs_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A plain `pip install tunflow` then `tunflow stages` said the built-in wireguard stage
    "failed to load: ModuleNotFoundError: No module named 'cryptography'", as if broken."""
    install_stage_plugins(
        tmp_path,
        monkeypatch,
        "needs-extra",
        "needs_extra = needs_extra_mod:Stage\nbroken = broken_mod:Stage\n",
        {
            "needs_extra_mod.py": "import not_installed_dep.sub\n",
            "broken_mod.py": "import not_a_requirement_either\n",
        },
        metadata="Provides-Extra: fancy\n"
        "Requires-Dist: attrs>=23\n"
        "Requires-Dist: Not-Installed.Dep>=1; python_version >= '3.8' and extra == 'fancy'\n",
    )
    with pytest.raises(
        PluginError,
        match=r"^stage plugin 'needs_extra' \(needs_extra_mod:Stage, from needs-extra 1\.0\) "
        r"needs not_installed_dep, which needs-extra's 'fancy' extra installs: "
        r"pip install 'needs-extra\[fancy\]'$",
    ) as caught:
        load_stage_class("needs_extra")
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)
    with pytest.raises(PluginError, match=r"failed to load: ModuleNotFoundError"):
        load_stage_class("broken")


class UnreadableOptions(StageBase):
    """A plugin whose options name a type only its type checker sees (``Path`` imported under
    ``TYPE_CHECKING``): the class loads, its annotations do not resolve."""

    plugin = "unreadable_options"
    summary = "options that do not resolve"

    @attrs.frozen
    class Options:
        path: NotImportedHere | None = None  # type: ignore[name-defined]  # noqa: F821


def test_a_plugin_whose_options_cannot_be_read_is_listed_with_its_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tunflow stages` ended in a NameError traceback, the other plugins unlisted."""
    from tunflow.cli import main
    from tunflow.pipeline import _plugins

    eps = dict(_plugins._entry_points())
    target = f"{__name__}:UnreadableOptions"
    eps["unreadable_options"] = metadata.EntryPoint("unreadable_options", target, GROUP)
    monkeypatch.setattr(_plugins, "_cache", eps)
    monkeypatch.setattr(_plugins, "_loaded", {})
    with pytest.raises(PluginError, match=r"'unreadable_options' .*NameError: .*NotImportedHere"):
        available_stages()["unreadable_options"].options()
    assert main(["stages", "--json"]) == 1
    listing = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert "NotImportedHere" in listing["unreadable_options"]["error"]
    assert "rate" in [o["name"] for o in listing["ratelimit"]["options"]]


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pip-install the example plugin into a throw-away target directory (pip fetches its build
    backend, hatchling, from the configured index as for any install), put it on sys.path, and
    take it off again afterwards."""
    target = tmp_path_factory.mktemp("plugin-target")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(PLUGIN_SRC),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    sys.path.insert(0, str(target))
    refresh_plugins()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        for mod in [m for m in sys.modules if m.startswith("tunflow_example_plugin")]:
            del sys.modules[mod]
        refresh_plugins()
    assert "hoplimit" not in available_stages()


def test_third_party_plugin_is_found_and_used(installed_plugin: Path) -> None:
    found = available_stages()
    assert found["hoplimit"].distribution == "tunflow-example-plugin 0.1.0"
    assert [o.name for o in found["hoplimit"].options()] == ["minimum"]
    pk = [ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"x")]  # TTL 64
    expired = bytearray(pk[0])
    expired[8] = 1
    expired[10:12] = b"\0\0"
    expired[10:12] = (~checksum(expired[:20]) & 0xFFFF).to_bytes(2, "big")
    sink = MemorySink()
    p = Pipeline(MemorySource([pk[0], bytes(expired)]), [StageSpec("hoplimit")], sink)
    anyio.run(p.run)
    (out,) = sink.packets
    ip = dpkt.ip.IP(out)
    assert ip.ttl == 63 and checksum(out[:20]) == 0xFFFF
    assert p.statistics().stage("hoplimit").drops == {"expired": 1}


def test_third_party_plugin_from_the_command_line(installed_plugin: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(installed_plugin))
    out = subprocess.run(
        [sys.executable, "-m", "tunflow.cli", "stages", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    ).stdout
    names = {e["name"] for e in json.loads(out)}
    assert names >= BUILTINS | {"hoplimit"}
