"""A misspelt option (or configuration) key gets a "did you mean", as a misspelt plugin does."""

from __future__ import annotations

import re

import attrs
import pytest

from tunflow import ConfigError
from tunflow.config import loads_config
from tunflow.pipeline import StageBase, StageSpec, build_stage


class Minimal(StageBase):
    plugin = "minimal"

    @attrs.frozen
    class Options:
        minimum: int = 0
        maximum: int = 10


def test_a_misspelt_option_says_which_was_meant() -> None:
    """It said only "extra fields found (minimun)"."""
    with pytest.raises(ConfigError) as caught:
        Minimal(minimun=3)
    assert str(caught.value) == (
        "unknown option 'minimun' for stage 'minimal' (did you mean 'minimum'?)"
    )
    assert caught.value.path is None


def test_a_misspelt_option_of_a_plugin_keeps_its_path() -> None:
    spec = StageSpec("ratelimit", {"rate": "10mbit", "burts": "1mb", "zzz": 1})
    with pytest.raises(ConfigError) as caught:
        build_stage(spec, path="stages[2]")
    assert caught.value.path == "stages[2].options"
    assert str(caught.value) == (
        "stages[2].options: unknown option 'burts' for stage 'ratelimit' "
        "(did you mean 'burst'?); unknown option 'zzz' for stage 'ratelimit'"
    )


def test_keys_that_are_not_strings_are_named_too() -> None:
    with pytest.raises(ConfigError) as caught:
        Minimal.from_options({1: 2, "maximun": 3})
    assert str(caught.value) == (
        "unknown option 1 for stage 'minimal'; "
        "unknown option 'maximun' for stage 'minimal' (did you mean 'maximum'?)"
    )


def test_a_misspelt_key_in_a_table_inside_the_options() -> None:
    with pytest.raises(ConfigError) as caught:
        StageSpec("filter", {"rules": [{"action": "deny", "protocl": "udp"}]}).build()
    assert caught.value.path == "rules[0]"
    assert str(caught.value) == "rules[0]: unknown option 'protocl' (did you mean 'protocol'?)"


def test_a_misspelt_key_of_a_configuration_file() -> None:
    text = """
[devices.lan]
mtuu = 1400

[[stages]]
plugn = "stats"
"""
    with pytest.raises(ConfigError) as caught:
        loads_config(text, file="run.toml")
    assert caught.value.path == "devices.lan"
    message = str(caught.value)
    assert "unknown key 'mtuu' (did you mean 'mtu'?) @ devices.lan" in message
    assert re.search(r"unknown key 'plugn' \(did you mean 'plugin'\?\) @ stages\[0\]", message)
