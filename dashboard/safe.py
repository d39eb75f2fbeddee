"""What leaves or enters the dashboard through the address bar and the download buttons (pure functions).

- Query parameters come from anyone who can send a link: parsed strictly
  (ASCII digits only for ids, bounded length for text), never trusted.
- CSV downloads hold headlines written by strangers. A cell that starts with
  ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to a
  spreadsheet (OWASP "CSV injection"); it is written with a leading ``'`` so
  the spreadsheet shows the text instead of evaluating it.
"""

from __future__ import annotations

import pandas as pd

from pipeline.csvio import FORMULA_START, neutralise
from pipeline.digits import ascii_int

__all__ = ["FORMULA_START", "csv_bytes", "int_param", "neutralise", "text_param"]
MAX_ID_DIGITS = 12


def int_param(value: object, max_digits: int = MAX_ID_DIGITS) -> int | None:
    """A positive id from a query parameter, or None: ASCII digits only (``"²"`` and ``"١"`` are not ids)."""
    if not isinstance(value, str) or value != value.strip():
        return None
    return ascii_int(value, max_digits)


def text_param(value: object, limit: int) -> str:
    """Text from a query parameter, cut to ``limit`` characters, control characters dropped."""
    if not isinstance(value, str):
        return ""
    return "".join(c for c in value[: limit * 2] if c.isprintable())[:limit]


def csv_bytes(df: pd.DataFrame) -> bytes:
    """The frame as UTF-8 CSV with every text cell (and header) neutralised."""
    safe = df.copy()
    safe.columns = [neutralise(str(c)) for c in safe.columns]
    for col in safe.columns:
        if safe[col].dtype == object or pd.api.types.is_string_dtype(safe[col]):
            safe[col] = safe[col].map(neutralise)
    # CRLF rows (RFC 4180): the writer then quotes any cell holding a lone CR, which a LF-only writer leaves bare
    return safe.to_csv(index=False, lineterminator="\r\n").encode("utf-8")
