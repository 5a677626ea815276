"""Text checks shared by the parsers (wg-quick files, the UAPI, endpoints, prefixes)."""

from __future__ import annotations

__all__ = ["is_decimal", "digits_value"]


def is_decimal(text: str) -> bool:
    """Whether ``text`` is ASCII decimal digits only (at least one): a number as wg(8) reads
    it. ``str.isdigit`` and ``int`` also take other scripts' digits (``int("٥١٨٢٠")`` is
    51820), and ``int`` signs, spaces and ``_``; wg and wireguard-go refuse them all.

    >>> is_decimal("51820"), is_decimal("٥١٨٢٠"), is_decimal("1_500"), is_decimal("")
    (True, False, False, False)
    """
    return text.isascii() and text.isdigit()


def digits_value(text: str, base: int = 10) -> int:
    """The number ``text`` writes, its digits already checked (:func:`is_decimal`, or
    hexadecimal ones with ``base`` 16), read as wg(8) and wireguard-go read it — leading zeros
    count for nothing — or ``2**64``, past every bound the parsers check, when more than 20
    digits are left: ``int`` refuses a string of over 4300 digits with a ValueError of its own.

    >>> digits_value("0051820"), digits_value("9" * 5000) == 2**64, digits_value("ff", 16)
    (51820, True, 255)
    """
    significant = text.lstrip("0")
    if len(significant) > 20:
        return 1 << 64
    return int(significant or "0", base)
