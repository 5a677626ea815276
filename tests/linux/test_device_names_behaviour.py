"""Interface names at the edges, on the real kernel: ``%d`` templates, 15 bytes, non-ASCII."""

from __future__ import annotations

import subprocess

import pytest

from tunflow import ConfigError, DeviceBuilder, testing

pytestmark = pytest.mark.needs_root


def _links() -> set[bytes]:
    """The names of the links in the current namespace, as the kernel's bytes."""
    shown = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, check=True)
    return {line.split(b": ")[1].split(b"@")[0] for line in shown.stdout.splitlines()}


@pytest.mark.parametrize(
    ("template", "message"),
    [("tf\v%d", "line break"), ("tf\u00e0%d", "0xA0"), ("t%dx\u2020", "0xA0")],
    ids=["vertical-tab", "a-grave", "dagger"],
)
def test_a_template_with_a_byte_the_kernel_refuses_is_a_config_error(
    netns: testing.Netns, template: str, message: str
) -> None:
    # A name with '%d' is never looked up by name before TUNSETIFF, the look-up that checks
    # the kernel's rules: the kernel's EINVAL came back as a DeviceError saying it refuses
    # names like 'all', where the same name without '%d' is a ConfigError.
    before = _links()
    with pytest.raises(ConfigError, match=message):
        DeviceBuilder().name(template).build_sync()
    assert _links() == before


def test_templates_and_names_at_the_length_limit_round_trip(netns: testing.Netns) -> None:
    before = _links()
    with (
        DeviceBuilder().name("a" * 13 + "%d").build_sync() as first,
        DeviceBuilder().name("a" * 13 + "%d").build_sync() as second,
    ):
        assert (first.name(), second.name()) == ("a" * 13 + "0", "a" * 13 + "1")
        assert _links() == before | {b"a" * 13 + b"0", b"a" * 13 + b"1"}
        first.close()
        assert _links() == before | {b"a" * 13 + b"1"}
    seven = "\u00f1" * 7 + "x"  # 15 bytes of UTF-8
    with DeviceBuilder().name(seven).multi_queue(True).build_sync() as dev:
        assert dev.name() == seven
        with dev.try_clone() as queue:
            assert queue.name() == seven
        dev.set_name("\u00f1%d")
        assert dev.name() == "\u00f10"
        with pytest.raises(ConfigError, match="16 bytes"):
            dev.set_name("\u00f1" * 8)
        assert dev.name() == "\u00f10"
    with pytest.raises(ConfigError, match="16 bytes"):
        DeviceBuilder().name("\u00f1" * 8)
    assert _links() == before


@pytest.mark.parametrize("refused", ["all", "default"])
def test_a_rename_to_a_name_the_kernel_refuses_is_a_config_error(
    netns: testing.Netns, refused: str
) -> None:
    # The kernel refuses 'all' and 'default' (its per-interface sysctl directories have those
    # names). A build says so; a rename gave a bare DeviceError "Invalid argument", where
    # set_name's docstring promises a ConfigError for a name that is not valid.
    name = testing.unique_name("rn")
    with DeviceBuilder().name(name).ipv4("10.159.0.1/24").build_sync() as dev:
        with pytest.raises(ConfigError, match=f"'{refused}'.*refuses"):
            dev.set_name(refused)
        assert dev.name() == name
        assert dev.addresses()
