"""Numbers read from untrusted text (HTTP headers, URL and form parameters, conf values): ASCII digits only.

``str.isdigit()`` is true for ``"²"`` and ``"١"``, which ``int()`` then refuses (or reads as another number):
one header from a publisher must never stop a pass. Every such parse goes through :func:`ascii_int`.
"""

from __future__ import annotations

_ASCII_DIGITS = frozenset("0123456789")


def ascii_int(value: object, max_digits: int = 18) -> int | None:
    """The non-negative integer ``value`` spells in ASCII digits (surrounding spaces allowed), else None; pure."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not 0 < len(text) <= max_digits or not set(text) <= _ASCII_DIGITS:
        return None
    return int(text)
