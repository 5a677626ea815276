"""Text checks shared by the parsers (wg-quick files, the UAPI, endpoints, prefixes)."""

from __future__ import annotations

__all__ = ["is_decimal"]


def is_decimal(text: str) -> bool:
    """Whether ``text`` is ASCII decimal digits only (at least one): a number as wg(8) reads
    it. ``str.isdigit`` and ``int`` also take other scripts' digits (``int("٥١٨٢٠")`` is
    51820), and ``int`` signs, spaces and ``_``; wg and wireguard-go refuse them all.

    >>> is_decimal("51820"), is_decimal("٥١٨٢٠"), is_decimal("1_500"), is_decimal("")
    (True, False, False, False)
    """
    return text.isascii() and text.isdigit()
