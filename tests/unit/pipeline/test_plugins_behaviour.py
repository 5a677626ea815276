"""Plugin loading and option checking, with stage classes registered by hand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import pytest

from tunflow import ConfigError, PluginError
from tunflow.pipeline import (
    ErrorPolicy,
    StageBase,
    StageSpec,
    _plugins,
    build_stage,
    load_stage_class,
    refresh_plugins,
)
from tunflow.pipeline._plugins import StagePlugin, structure_options


def _register(monkeypatch: pytest.MonkeyPatch, name: str, cls: type) -> None:
    monkeypatch.setitem(_plugins._loaded, name, cls)


class _Raises(StageBase):
    """A stage whose from_options refuses with a ConfigError at ``path``."""

    plugin = "raises"
    where: str | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, name: str | None = None) -> _Raises:
        raise ConfigError(f"{cls.where}: out of range" if cls.where else "bad", path=cls.where)


def test_a_specs_error_policy_is_the_stages() -> None:
    # StageSpec.on_error: "overrides the pipeline's ErrorPolicy for this stage"
    stage = build_stage(StageSpec("stats", on_error="stop"))
    assert stage.on_error is ErrorPolicy.STOP  # type: ignore[attr-defined]


def test_refresh_forgets_classes_already_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    _register(monkeypatch, "uninstalled", _Raises)
    assert load_stage_class("uninstalled") is _Raises
    refresh_plugins()
    with pytest.raises(PluginError, match="no stage plugin named 'uninstalled'"):
        load_stage_class("uninstalled")


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ("[2]", "stages[1].options[2]"),
        ("rules[0].action", "stages[1].options.rules[0].action"),
        (None, "stages[1].options"),
    ],
)
def test_a_stages_own_config_error_is_placed_under_its_options(
    monkeypatch: pytest.MonkeyPatch, where: str | None, path: str
) -> None:
    monkeypatch.setattr(_Raises, "where", where)
    _register(monkeypatch, "raises", _Raises)
    with pytest.raises(ConfigError) as info:
        build_stage(StageSpec("raises"), path="stages[1]")
    assert info.value.path == path
    if where:
        assert not str(info.value).startswith(f"{where}:")


def test_a_plugin_that_builds_something_else_is_a_plugin_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class NotAStage:
        @classmethod
        def from_options(cls, options: Any, *, name: str | None = None) -> object:
            return object()

    _register(monkeypatch, "odd", NotAStage)
    with pytest.raises(PluginError, match="which is not a Stage"):
        build_stage(StageSpec("odd"))


def test_options_given_to_a_stage_that_takes_none_are_refused() -> None:
    class Plain:
        pass

    with pytest.raises(ConfigError, match=r"takes no options, got \['rate'\]") as info:
        structure_options(Plain, {"rate": 1}, prefix="stages[0].options")
    assert info.value.path == "stages[0].options"
    assert structure_options(Plain, {}) is None


def test_an_options_check_across_fields_is_placed_at_the_options() -> None:
    @attrs.frozen
    class Opts:
        low: int = 0
        high: int = 10

        def __attrs_post_init__(self) -> None:
            if self.low > self.high:
                raise ConfigError("low is above high")

    class WithOpts:
        Options = Opts

    with pytest.raises(ConfigError, match="low is above high") as info:
        structure_options(WithOpts, {"low": 5, "high": 1}, prefix="stages[3].options")
    assert info.value.path == "stages[3].options"


def test_a_factory_default_is_listed_as_its_value() -> None:
    @attrs.frozen
    class Opts:
        ports: list[int] = attrs.field(factory=list, metadata={"help": "ports"})

    (info,) = StagePlugin._options(Opts)
    assert info.default == "[]" and not info.required
