"""Feed registry: a YAML file with a top-level ``feeds:`` list."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import yaml

from pipeline.ingest.model import FeedSpec

_KNOWN_KEYS = {"name", "url", "timezone", "dedupe_titles", "enabled", "timeout_s", "max_bytes", "tags"}


class RegistryError(ValueError):
    """The registry file is unusable; the message says where and why."""


def load(path: str | Path) -> list[FeedSpec]:
    """Read and validate a registry. Relative ``file:`` URLs resolve against its folder."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"{path}: cannot read feed registry: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("feeds"), list):
        raise RegistryError(f"{path}: expected a top-level 'feeds:' list")
    specs: list[FeedSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(doc["feeds"]):
        where = f"{path}: feeds[{i}]"
        if not isinstance(entry, dict):
            raise RegistryError(f"{where}: expected a mapping")
        unknown = set(entry) - _KNOWN_KEYS
        if unknown:
            raise RegistryError(f"{where}: unknown keys {sorted(unknown)}")
        name, url = entry.get("name"), entry.get("url")
        if not isinstance(name, str) or not name.strip():
            raise RegistryError(f"{where}: 'name' is required")
        if not isinstance(url, str) or not url.strip():
            raise RegistryError(f"{where} ({name}): 'url' is required")
        if name in seen:
            raise RegistryError(f"{where}: duplicate feed name {name!r}")
        seen.add(name)
        specs.append(
            FeedSpec(
                name=name.strip(),
                url=_resolve(url.strip(), path.parent),
                timezone=entry.get("timezone"),
                dedupe_titles=bool(entry.get("dedupe_titles", True)),
                enabled=bool(entry.get("enabled", True)),
                timeout_s=entry.get("timeout_s"),
                max_bytes=entry.get("max_bytes"),
                tags=tuple(entry.get("tags") or ()),
            )
        )
    return specs


def _resolve(url: str, base: Path) -> str:
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return url
    if scheme == "file":
        rel = url[len("file:") :]
        if rel.startswith("//"):
            return url
        target = Path(rel)
        return (base / target).resolve().as_uri() if not target.is_absolute() else target.as_uri()
    raise RegistryError(f"unsupported URL scheme in {url!r} (http, https or file)")
