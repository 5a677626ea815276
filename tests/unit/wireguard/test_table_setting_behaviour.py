"""``open_interface(table=...)``'s refusal of a number given as a string says how to give it."""

from __future__ import annotations

import pytest

from tunflow import ConfigError
from tunflow.wireguard._routing import table_setting


def test_a_table_number_in_a_string_is_refused_with_the_form_that_works() -> None:
    # the message said "'1234' is not auto, off, main or a table number", which it is
    with pytest.raises(ConfigError, match=r"as an int: table=1234"):
        table_setting("1234")
    assert table_setting(1234) == 1234


def test_a_name_is_refused_without_the_hint() -> None:
    with pytest.raises(ConfigError) as caught:
        table_setting("vpn")
    assert "'vpn' is not 'auto', 'off', 'main'" in str(caught.value)
    assert "as an int" not in str(caught.value)
