"""Stage plugins: discovery through the ``tunflow.stages`` entry-point group, option checking.

Built-in stages (``plugins/tunflow_plugins``) register in the same group as a third party's, so
there is one way to find a stage. Entry points are listed once and loaded lazily, by name.
Options are attrs classes structured by a cattrs converter that refuses unknown keys; errors
name the dotted path of the bad key.
"""

from __future__ import annotations

import collections
import difflib
import enum
import ipaddress
import os
import re
import typing
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any

import attrs
import cattrs
from cattrs.cols import (
    homogenous_tuple_structure_factory,
    is_mutable_sequence,
    is_sequence,
    list_structure_factory,
)
from cattrs.strategies import configure_union_passthrough
from cattrs.v import format_exception

from ..errors import ConfigError, PluginError
from ._stage import Stage, StageSpec

__all__ = [
    "GROUP",
    "StagePlugin",
    "OptionInfo",
    "available_stages",
    "load_stage_class",
    "build_stage",
    "refresh_plugins",
    "converter",
    "structure_options",
    "unstructure_options",
    "config_error_from_cattrs",
]

#: The entry-point group stages register in.
GROUP = "tunflow.stages"

_cache: dict[str, metadata.EntryPoint] | None = None
_loaded: dict[str, type] = {}
_clashes: dict[str, list[metadata.EntryPoint]] = {}


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    # Unions of plain TOML values (``str | int``) pass through when the value is one of them.
    configure_union_passthrough(typing.Union[str, int, float, bool, None], conv)  # noqa: UP007
    for cls in (
        ipaddress.IPv4Network,
        ipaddress.IPv6Network,
        ipaddress.IPv4Interface,
        ipaddress.IPv6Interface,
        ipaddress.IPv4Address,
        ipaddress.IPv6Address,
    ):
        conv.register_structure_hook(cls, lambda v, t: t(v))
        conv.register_unstructure_hook(cls, str)
    conv.register_structure_hook(
        ipaddress.IPv4Network | ipaddress.IPv6Network,
        lambda v, _: ipaddress.ip_network(v, strict=False),
    )
    conv.register_structure_hook(
        ipaddress.IPv4Interface | ipaddress.IPv6Interface, lambda v, _: ipaddress.ip_interface(v)
    )
    conv.register_structure_hook_factory(_is_list, lambda t: _sequence_hook(t, conv))
    conv.register_structure_hook_factory(attrs.has, lambda t: _table_hook(t, conv))
    conv.register_structure_hook(str, _structure_str)
    # cattrs would call bool() and int(): native = "false" turned native mode on, mtu = 1500.5
    # became 1500, queues = true 1
    conv.register_structure_hook(bool, _exactly(bool, "true or false"))
    conv.register_structure_hook(int, _exactly(int, "an integer"))
    # and float(): statistics_interval = true became 1.0, interval = "2" 2.0
    conv.register_structure_hook(float, _number)
    conv.register_structure_hook_factory(_is_plain_literal, _literal_hook)
    return conv


def _is_list(type_: Any) -> bool:
    """A list or a homogeneous sequence, what a TOML array fills (cattrs' deques aside)."""
    return bool(is_sequence(type_)) and getattr(type_, "__origin__", type_) is not collections.deque


class _WrongKind(ValueError):
    """A value of the wrong kind (a string where a list belongs…); the message says what fits."""


def _sequence_hook(type_: Any, conv: cattrs.Converter) -> Any:
    """cattrs' own hook for a list (or a homogeneous sequence), but refusing a string or a table:
    both are iterable, so ``dst_ports = "80"`` became the ports 8 and 0."""
    make = (
        list_structure_factory if is_mutable_sequence(type_) else homogenous_tuple_structure_factory
    )
    inner = make(type_, conv)

    def structure(value: Any, t: Any) -> Any:
        if isinstance(value, str | bytes | Mapping):
            raise _WrongKind(f"must be a list, not {value!r}")
        return inner(value, t)

    return structure


def _table_hook(type_: Any, conv: cattrs.Converter) -> Any:
    """cattrs' own hook for an attrs class (a TOML table), but refusing what is not a table:
    cattrs called ``.keys()`` on it, and ``pipeline = "x"`` or ``rules = ["x"]`` said "unknown
    error ('str' object has no attribute 'keys')"."""
    inner = conv.gen_structure_attrs_fromdict(type_)

    def structure(value: Any, t: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _WrongKind(f"must be a table, not {value!r}")
        return inner(value, t)

    return structure


def _structure_str(value: Any, _: Any) -> str:
    # cattrs would call str(): name = 5 became "5", and true "True" (a Path is still taken)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise _WrongKind(f"must be a string, not {value!r}")
    return value


def _exactly(kind: type, what: str) -> Callable[[Any, Any], Any]:
    """A structure hook taking only values of ``kind`` itself (``True`` is no int), as they are."""

    def hook(value: Any, _: Any) -> Any:
        if type(value) is not kind:
            raise _WrongKind(f"must be {what}, not {value!r}")
        return value

    return hook


def _number(value: Any, _: Any) -> float:
    """A float option: a TOML float or integer (``1`` is ``1.0``), not a bool or a string."""
    if type(value) not in (int, float):
        raise _WrongKind(f"must be a number, not {value!r}")
    return float(value)


def _is_plain_literal(type_: Any) -> bool:
    return typing.get_origin(type_) is typing.Literal and not any(
        isinstance(a, enum.Enum) for a in typing.get_args(type_)
    )


def _literal_hook(type_: Any) -> Any:
    """cattrs' check of a ``Literal``, said as "must be one of 'police', 'shape', not 'drop'"."""
    allowed = typing.get_args(type_)
    choices = ", ".join(repr(a) for a in allowed)

    def structure(value: Any, _: Any) -> Any:
        if value not in allowed:
            raise _WrongKind(f"must be one of {choices}, not {value!r}")
        return value

    return structure


#: The converter used for stage options and the TOML configuration.
converter = _make_converter()


_KEY = re.compile(r"\['([^'\]]*)'\]")


def _format_exception(exc: BaseException, type_: type | None) -> str:
    # A validator's or a hook's ValueError says what is wrong; cattrs' default would only say
    # "invalid value". Plain conversions (int("big")) keep cattrs' "expected int".
    if (
        isinstance(exc, ValueError)
        and exc.args
        and (
            type_ is None
            or attrs.has(type_)
            or "Literal" in repr(type_)
            or isinstance(exc, _WrongKind)
        )
    ):
        return str(exc)
    return format_exception(exc, type_)


def _unknown_keys(
    exc: cattrs.ForbiddenExtraKeysError, noun: str, owner: tuple[type, str] | None
) -> str:
    """``unknown option 'minimun' for stage 'x' (did you mean 'minimum'?)``, for each key of
    ``exc``; ``owner`` (a class, what it is) is named when the keys are its own."""
    cls = exc.cl
    known = [f.name for f in attrs.fields(cls) if f.init] if attrs.has(cls) else []
    whose = f" for {owner[1]}" if owner is not None and owner[0] is cls else ""
    out = []
    keys: list[Any] = sorted(exc.extra_fields, key=str)  # (a Python caller's may be any type)
    for key in keys:
        close = difflib.get_close_matches(key, known, n=1) if isinstance(key, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        out.append(f"unknown {noun} {key!r}{whose}{hint}")
    return "; ".join(out)


def _leaves(exc: BaseException, path: str) -> Iterator[tuple[BaseException, type | None, str]]:
    """Every failure inside a cattrs error with the path it happened at (``$.a['b'][0].c``),
    as :func:`cattrs.transform_error` walks it."""
    if isinstance(exc, cattrs.IterableValidationError):
        with_notes, without = exc.group_exceptions()
        for inner, note in with_notes:
            yield from _leaves_or_self(inner, note.type, f"{path}[{note.index!r}]")
        for inner in without:
            yield inner, None, path
    elif isinstance(exc, cattrs.ClassValidationError):
        with_notes_c, without_c = exc.group_exceptions()
        for inner, cnote in with_notes_c:
            yield from _leaves_or_self(inner, cnote.type, f"{path}.{cnote.name}")
        for inner in without_c:
            yield inner, None, path
    else:
        yield exc, None, path


def _leaves_or_self(
    exc: BaseException, type_: type | None, path: str
) -> Iterator[tuple[BaseException, type | None, str]]:
    if isinstance(exc, cattrs.IterableValidationError | cattrs.ClassValidationError):
        yield from _leaves(exc, path)
    else:
        yield exc, type_, path


def _join(prefix: str, path: str) -> str:
    if not prefix or not path:
        return prefix or path
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"


def config_error_from_cattrs(
    exc: BaseException,
    *,
    prefix: str = "",
    file: str | None = None,
    noun: str = "key",
    owner: tuple[type, str] | None = None,
) -> ConfigError:
    """A :class:`ConfigError` from a cattrs structuring failure, naming the bad key's path.

    A validator that raises a :class:`ConfigError` with a ``path`` (the attribute's name) makes
    the path end at that key (``tunnel.batch_size``) rather than at its table. An unknown key is
    said with the closest known one: ``unknown key 'mtuu' (did you mean 'mtu'?)``.

    Args:
        exc: what ``converter.structure`` raised.
        prefix: the dotted path of the structured value inside the file (``stages[1].options``).
        file: the file name, if any.
        noun: what an unknown key is called (``"option"``).
        owner: a class and what it is (``(Options, "stage 'x'")``), named after its own unknown
            keys.
    """
    messages: list[str] = []
    first_path: str | None = None
    for leaf, type_, where in _leaves(exc, "$"):
        path = _KEY.sub(r".\1", where[1:]).lstrip(".")
        if isinstance(leaf, ConfigError):
            msg = str(leaf)
            if leaf.path:
                if msg.startswith(f"{leaf.path}: "):
                    msg = msg[len(leaf.path) + 2 :]
                path = _join(path, leaf.path)
        elif isinstance(leaf, cattrs.ForbiddenExtraKeysError):
            msg = _unknown_keys(leaf, noun, owner)
        else:
            msg = _format_exception(leaf, type_)
        full = _join(prefix, path)
        if first_path is None:
            first_path = full or None
        messages.append(f"{msg} @ {full}" if full else msg)
    if len(messages) == 1:
        msg = messages[0].rpartition(" @ ")[0] or messages[0]
        return ConfigError(msg, path=first_path, file=file)
    return ConfigError("; ".join(messages), path=first_path, file=file)


def structure_options(cls: type, options: Mapping[str, Any], *, prefix: str = "") -> Any:
    """``options`` as an instance of ``cls.Options`` (a stage class's options).

    Raises:
        ConfigError: a missing, unknown or mistyped option; ``path`` names it.
    """
    options_cls = getattr(cls, "Options", None)
    if options_cls is None:
        if options:
            raise ConfigError(f"takes no options, got {sorted(options)}", path=prefix or None)
        return None
    try:
        return converter.structure(dict(options), options_cls)
    except ConfigError as exc:
        if prefix and exc.path is None:
            raise ConfigError(str(exc), path=prefix) from exc
        raise
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
        stage = getattr(cls, "plugin", "") or cls.__name__
        raise config_error_from_cattrs(
            exc, prefix=prefix, noun="option", owner=(options_cls, f"stage {stage!r}")
        ) from None


def unstructure_options(options: Any) -> dict[str, Any]:
    """Options as plain data (for a worker process, JSON, TOML)."""
    if options is None:
        return {}
    data = converter.unstructure(options)
    return dict(data) if isinstance(data, Mapping) else {}


@attrs.frozen
class OptionInfo:
    """One option of a stage plugin, as ``tunflow stages`` shows it."""

    name: str
    type: str
    default: str | None
    required: bool
    help: str


@attrs.frozen
class StagePlugin:
    """A stage plugin found in the entry-point group.

    Attributes:
        name: the entry-point name (what a TOML ``plugin =`` says).
        target: ``module:Class``.
        distribution: the installed distribution that declares it, with its version.
    """

    name: str
    target: str
    distribution: str | None

    def load(self) -> type:
        """Import the plugin's class (see :func:`load_stage_class`)."""
        return load_stage_class(self.name)

    def summary(self) -> str:
        """The plugin's one-line description."""
        cls = self.load()
        text = getattr(cls, "summary", "") or (cls.__doc__ or "").strip().split("\n")[0]
        return str(text)

    def options(self) -> list[OptionInfo]:
        """The plugin's options, from its attrs ``Options`` class.

        Raises:
            PluginError: the plugin does not load, or its ``Options`` cannot be read (an
                annotation naming what its module does not import, a default that does not
                convert).
        """
        cls = self.load()
        options_cls = getattr(cls, "Options", None)
        if options_cls is None or not attrs.has(options_cls):
            return []
        try:
            return self._options(options_cls)
        except Exception as exc:
            raise PluginError(
                f"stage plugin {self.name!r} ({self.target}): its options cannot be read: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    @staticmethod
    def _options(options_cls: type) -> list[OptionInfo]:
        hints = typing.get_type_hints(options_cls)
        out = []
        for field in attrs.fields(options_cls):
            required = field.default is attrs.NOTHING
            default: str | None = None
            if not required:
                value = field.default
                factory = getattr(value, "factory", None)
                if callable(factory) and type(value).__name__ == "Factory":
                    value = factory()
                default = repr(converter.unstructure(value))
            out.append(
                OptionInfo(
                    name=field.name,
                    type=_type_name(hints.get(field.name, field.type)),
                    default=default,
                    required=required,
                    help=str(field.metadata.get("help", "")),
                )
            )
        return out


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("ipaddress.", "")


def _entry_points() -> dict[str, metadata.EntryPoint]:
    global _cache
    if _cache is None:
        found: dict[str, metadata.EntryPoint] = {}
        _clashes.clear()
        for ep in metadata.entry_points(group=GROUP):
            first = found.setdefault(ep.name, ep)
            if first.value != ep.value:
                # two distributions claim one name: neither is chosen silently
                _clashes.setdefault(ep.name, [first]).append(ep)
        _cache = found
    return _cache


def refresh_plugins() -> None:
    """Forget what was discovered (after installing a plugin into a running interpreter)."""
    global _cache
    _cache = None
    _loaded.clear()


def _dist_name(ep: metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None
    return f"{dist.metadata['Name']} {dist.version}"


_EXTRA_REQUIREMENT = re.compile(
    r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)[^;]*;.*\bextra\s*==\s*['\"]([^'\"]+)['\"]"
)
_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _missing_extra(ep: metadata.EntryPoint, exc: Exception) -> tuple[str, str] | None:
    """``("cryptography", "tunflow[vpn]")`` when ``exc`` is a missing module that the entry
    point's distribution requires only for one of its extras (the module's name read as the
    requirement's project name); otherwise ``None``. A module missing from a package that is
    there (``dep.sub``), or one a requirement without an extra names too, is a broken install:
    ``None``."""
    dist = getattr(ep, "dist", None)
    if not isinstance(exc, ModuleNotFoundError) or not exc.name or dist is None:
        return None
    if "." in exc.name:
        return None
    missing = _normalized(exc.name)
    found: tuple[str, str] | None = None
    for requirement in dist.requires or ():
        m = _EXTRA_REQUIREMENT.match(requirement)
        if m is None:
            base = _REQUIREMENT_NAME.match(requirement)
            if base is not None and _normalized(base[1]) == missing:
                return None
        elif found is None and _normalized(m[1]) == missing:
            found = exc.name, f"{dist.metadata['Name']}[{m[2]}]"
    return found


def available_stages() -> dict[str, StagePlugin]:
    """Every stage plugin installed, by name (nothing is imported)."""
    return {
        name: StagePlugin(name, ep.value, _dist_name(ep))
        for name, ep in sorted(_entry_points().items())
    }


def load_stage_class(name: str) -> type:
    """Import the class registered under ``name``.

    Raises:
        PluginError: no plugin of that name (the message lists close matches), two
            distributions register the name with different targets (both are named), or
            importing it failed (the message names the distribution).
    """
    cls = _loaded.get(name)
    if cls is not None:
        return cls
    eps = _entry_points()
    ep = eps.get(name)
    if ep is None:
        close = difflib.get_close_matches(name, eps, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PluginError(
            f"no stage plugin named {name!r} in the {GROUP!r} entry points "
            f"(found: {', '.join(sorted(eps)) or 'none'}){hint}"
        )
    clash = _clashes.get(name)
    if clash:
        claims = "; ".join(
            f"{e.value} from {_dist_name(e) or 'an unknown distribution'}" for e in clash
        )
        raise PluginError(
            f"stage plugin name {name!r} is registered more than once ({claims}): "
            "uninstall one of them"
        )
    try:
        obj = ep.load()
    except Exception as exc:
        what = f"stage plugin {name!r} ({ep.value}, from {_dist_name(ep) or 'an unknown distribution'})"
        extra = _missing_extra(ep, exc)
        if extra is not None:
            module, requirement = extra
            project, _, name = requirement.partition("[")
            raise PluginError(
                f"{what} needs {module}, which {project}'s {name[:-1]!r} extra installs: "
                f"pip install '{requirement}'",
                missing_extra=requirement,
            ) from exc
        raise PluginError(f"{what} failed to load: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, type) or not callable(getattr(obj, "from_options", None)):
        raise PluginError(
            f"stage plugin {name!r} ({ep.value}) is not a stage class with from_options()"
        )
    _loaded[name] = obj
    return obj


def _target(name: str) -> str:
    ep = _entry_points().get(name)
    return ep.value if ep is not None else "not an entry point"


def build_stage(spec: StageSpec, *, path: str | None = None) -> Stage:
    """Build the stage ``spec`` describes.

    Args:
        spec: plugin name and options.
        path: where the spec stands in a configuration, for error messages (``stages[0]``).

    Raises:
        PluginError: the plugin is missing or broken (its class or its ``from_options()`` raised
            something other than a :class:`ConfigError`).
        ConfigError: the options do not fit; ``path`` names the bad key.
    """
    cls = load_stage_class(spec.plugin)
    prefix = f"{path}.options" if path else ""
    try:
        stage = cls.from_options(spec.options, name=spec.name or spec.plugin)  # type: ignore[attr-defined]
    except ConfigError as exc:
        if not prefix:
            raise
        inner = exc.path
        full = (
            prefix
            if not inner
            else f"{prefix}{inner}"
            if inner.startswith("[")
            else f"{prefix}.{inner}"
        )
        message = str(exc)
        if inner and message.startswith(f"{inner}: "):
            message = message[len(inner) + 2 :]
        raise ConfigError(message, path=full) from exc
    except Exception as exc:
        # the options fitted (a misfit is a ConfigError): the plugin's own code failed
        raise PluginError(
            f"stage plugin {spec.plugin!r} ({_target(spec.plugin)}) failed to build: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if spec.on_error is not None:
        stage.on_error = spec.on_error
    if not isinstance(stage, Stage):
        raise PluginError(f"stage plugin {spec.plugin!r} built {stage!r}, which is not a Stage")
    return stage
