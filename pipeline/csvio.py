"""CSV in and out for the CLI commands that label files: clear errors before any work."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# A cell a spreadsheet would evaluate (OWASP "CSV injection"): written with a leading ' so it shows as text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> object:
    """One cell, made inert for a spreadsheet (text only; numbers stay numbers)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


class InputError(ValueError):
    """The command's input (file, column, path) is unusable."""


def read_input_csv(path: str, required: Sequence[str]):  # -> pandas.DataFrame
    """A UTF-8 CSV with the required columns and at least one row, or InputError saying what is wrong."""
    import pandas as pd

    try:
        df = pd.read_csv(path, encoding="utf-8", dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(f"input {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"input {path} is a folder, not a CSV file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"input {path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise InputError(
            f"input {path} is empty: expected a CSV with a header row and a {required[0]!r} column"
        ) from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise InputError(f"input {path} is not a readable CSV: {str(exc).strip().splitlines()[0]}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(f"input {path} has no {missing} column(s) (columns: {list(df.columns)[:20]})")
    if df.empty:
        raise InputError(f"input {path} has a header but no rows")
    return df


def output_path(path: str, inputs: Sequence[str] = ()) -> Path:
    """A file path the command may write, checked before any work, or InputError: its folder exists and is
    writable (a probe file is created and removed), it is not a folder, and it is none of ``inputs`` (compared
    after resolving links, so ``--input f --output ./f`` never overwrites the user's file)."""
    import os
    import tempfile

    out = Path(path)
    if not out.parent.is_dir():
        raise InputError(f"output folder {out.parent} does not exist")
    if out.is_dir():
        raise InputError(f"output {out} is a folder, not a file")
    for given in inputs:
        src = Path(given)
        same = src.exists() and out.exists() and os.path.samefile(src, out)
        if same or src.resolve() == out.resolve():
            raise InputError(f"output {out} is the input file: choose another output, the input is kept as it is")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise InputError(f"output folder {out.parent} is not writable ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)
    if out.exists() and not os.access(out, os.W_OK):
        raise InputError(f"output {out} exists and is not writable")
    return out


def write_csv(df, out: Path) -> None:  # df: pandas.DataFrame
    """Write ``df`` through a temporary file beside ``out`` and rename it: a reader never sees half a file, and a
    failure leaves what was there before."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            df.to_csv(fh, index=False)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
