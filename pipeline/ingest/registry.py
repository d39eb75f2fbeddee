"""Feed registry: a YAML file with a top-level ``feeds:`` list, validated entry by entry.

A file that cannot be read or has no ``feeds:`` list is unusable
(:class:`RegistryError`). A single bad entry is not: it becomes an
:class:`InvalidEntry` whose error names the entry and the field, the ingest
run records it as a failed feed, and the other feeds are fetched as usual.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pipeline import safeyaml
from pipeline.ingest.model import FeedSpec

_KNOWN_KEYS = {
    "name",
    "url",
    "timezone",
    "dedupe_titles",
    "enabled",
    "timeout_s",
    "max_bytes",
    "tags",
    "allow_hosts",
    "min_interval_s",
}
MAX_NAME = 200
MAX_TIMEOUT_S = 600.0
MAX_BYTES = 1 << 30
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class RegistryError(ValueError):
    """The registry file is unusable; the message says where and why."""


@dataclass(frozen=True)
class InvalidEntry:
    name: str  # the entry's name if it has a usable one, else "feeds[i]"
    error: str
    has_name: bool  # a usable name: the failure can be recorded on that feed's row


@dataclass
class Registry:
    specs: list[FeedSpec] = field(default_factory=list)
    invalid: list[InvalidEntry] = field(default_factory=list)


def read(path: str | Path) -> Registry:
    """Read a registry; valid entries become specs, each bad one an InvalidEntry naming entry and field."""
    path = Path(path)
    try:
        doc = safeyaml.load_file(path)
    except safeyaml.YamlFileError as exc:
        raise RegistryError(f"cannot read feed registry: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("feeds"), list):
        raise RegistryError(f"{path}: expected a top-level 'feeds:' list")
    out = Registry()
    seen: set[str] = set()
    for i, entry in enumerate(doc["feeds"]):
        where = f"{path.name}: feeds[{i}]"
        name = _clean_name(entry.get("name")) if isinstance(entry, dict) else None
        try:
            spec = _spec(entry, where, path.parent)
            if spec.name.casefold() in seen:
                raise RegistryError(f"{where} ({spec.name}): duplicate feed name {spec.name!r}")
            seen.add(spec.name.casefold())
            out.specs.append(spec)
        except RegistryError as exc:
            usable = bool(name) and name.casefold() not in seen
            out.invalid.append(InvalidEntry(name if usable else f"feeds[{i}]", str(exc), usable))
    return out


def load(path: str | Path) -> list[FeedSpec]:
    """Strict read: the valid specs, or RegistryError at the first bad entry (for validation and tools)."""
    reg = read(path)
    if reg.invalid:
        raise RegistryError(reg.invalid[0].error)
    return reg.specs


def _clean_name(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    name = value.strip()
    if not name or len(name) > MAX_NAME or any(unicodedata.category(c)[0] in "CZ" and c != " " for c in name):
        return None
    return name


def _spec(entry: object, where: str, base: Path) -> FeedSpec:
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: expected a mapping")
    unknown = {str(k) for k in entry} - _KNOWN_KEYS
    if unknown:
        raise RegistryError(f"{where}: unknown keys {sorted(unknown)}")
    name = _clean_name(entry.get("name"))
    if name is None:
        raise RegistryError(
            f"{where}: 'name' is required: a non-empty string of at most {MAX_NAME} printable characters"
        )
    where = f"{where} ({name})"
    url = entry.get("url")
    if not isinstance(url, str) or not url.strip():
        raise RegistryError(f"{where}: 'url' is required")
    if any(unicodedata.category(c)[0] == "C" or c.isspace() for c in url.strip()):
        raise RegistryError(f"{where}: 'url' contains spaces or control characters")
    return FeedSpec(
        name=name,
        url=_resolve(url.strip(), base, where),
        timezone=_timezone(entry.get("timezone"), where),
        dedupe_titles=_bool(entry.get("dedupe_titles", True), "dedupe_titles", where),
        enabled=_bool(entry.get("enabled", True), "enabled", where),
        timeout_s=_number(entry.get("timeout_s"), "timeout_s", where, 0.1, MAX_TIMEOUT_S, float),
        max_bytes=_number(entry.get("max_bytes"), "max_bytes", where, 1, MAX_BYTES, int),
        tags=_strings(entry.get("tags"), "tags", where),
        allow_hosts=_strings(entry.get("allow_hosts"), "allow_hosts", where),
        root=str(base.resolve()),
        min_interval_s=_number(entry.get("min_interval_s"), "min_interval_s", where, 0, 86400, float),
    )


def _bool(value: object, key: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise RegistryError(f"{where}: '{key}' must be true or false, not {value!r}")


def _number(value: object, key: str, where: str, lo: float, hi: float, kind: type) -> float | int | None:
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        ok = ok and float(value).is_integer()
    if not ok or not lo <= value <= hi:
        raise RegistryError(
            f"{where}: '{key}' must be a{'n integer' if kind is int else ' number'} "
            f"from {lo:g} to {hi:g}, not {value!r}"
        )
    return kind(value)


def _timezone(value: object, where: str) -> str | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str) or not value:
            raise ValueError
        ZoneInfo(value)
    except (ValueError, KeyError, OSError, TypeError):
        raise RegistryError(
            f"{where}: 'timezone' must be an IANA zone name such as America/New_York, not {value!r}"
        ) from None
    return value


def _strings(value: object, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise RegistryError(f"{where}: '{key}' must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _resolve(url: str, base: Path, where: str) -> str:
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise RegistryError(f"{where}: malformed 'url': {exc}") from None
    if scheme in ("http", "https"):
        return url
    if scheme == "file":
        rel = url[len("file:") :]
        if rel.startswith("//"):
            return url
        target = Path(rel)
        return (base / target).resolve().as_uri() if not target.is_absolute() else target.as_uri()
    raise RegistryError(f"{where}: unsupported URL scheme in 'url' (http, https or file)")
