"""The entity catalogue: the bundled companies plus the user's own file, validated as one.

Two files, one catalogue:

* ``data/entities/catalogue.csv`` is generated (``python -m pipeline entities
  build-catalogue``) from maintained offline sources and committed;
* ``config/entities.yaml`` (``FINSENT_ENTITIES_FILE``) is the user's source of
  truth: new entities, amendments to bundled ones (extra aliases, tickers, a
  sector, or ``disabled: true``) and watchlists.

Everything is validated before anything is used; an error names the file and
the entry, and nothing is half-loaded (the sync step writes one transaction).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pipeline import safeyaml
from pipeline.config import REPO_ROOT
from pipeline.safeyaml import short

DEFAULT_CATALOGUE = REPO_ROOT / "data" / "entities" / "catalogue.csv"
DEFAULT_USER_FILE = REPO_ROOT / "config" / "entities.yaml"

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
_TICKER = re.compile(r"^[A-Z][A-Z0-9 ]{0,15}:[A-Z0-9][A-Z0-9.\-&]{0,11}$")
_WATCHLIST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")
_ENTITY_KEYS = {"id", "name", "aliases", "tickers", "sector", "country", "disabled", "ambiguous"}
_WATCHLIST_KEYS = {"name", "description", "entities"}
MAX_ALIAS = 80


class CatalogueError(ValueError):
    """A catalogue or user-file entry is invalid; the message names the file and the entry."""


@dataclass(frozen=True)
class Entity:
    id: str
    name: str
    aliases: tuple[str, ...] = ()  # surface forms besides the name (short names, former names)
    tickers: tuple[str, ...] = ()  # "EXCHANGE:SYMBOL"
    sector: str = ""
    country: str = ""
    source: str = "user"
    ambiguous: tuple[str, ...] = ()  # surface forms that are also common words: they need context to count
    isin: str = ""
    former_names: tuple[str, ...] = ()  # names it had before (also in aliases, so an archive backfill finds it)
    successor: str = ""  # the entity id that took it over, where one did
    delisted: bool = False

    @property
    def symbols(self) -> tuple[str, ...]:
        """Bare ticker symbols (exchange dropped), unique, in order."""
        return tuple(dict.fromkeys(t.split(":", 1)[1] for t in self.tickers))

    @property
    def primary_ticker(self) -> str:
        return self.tickers[0] if self.tickers else ""

    def surface_forms(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.name, *self.aliases)))


@dataclass(frozen=True)
class Watchlist:
    name: str
    entities: tuple[str, ...]
    description: str = ""


@dataclass
class Catalogue:
    entities: dict[str, Entity] = field(default_factory=dict)
    watchlists: dict[str, Watchlist] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Hash of everything linking depends on: a change means past stories must be re-linked."""
        h = hashlib.sha256()
        for e in sorted(self.entities.values(), key=lambda e: e.id):
            h.update(json.dumps(asdict(e), sort_keys=True).encode())
        return h.hexdigest()[:16]

    def watched(self) -> set[str]:
        return {e for w in self.watchlists.values() for e in w.entities}

    def find(self, query: str) -> list[Entity]:
        """Entities whose id, name, alias or ticker matches ``query`` (case-insensitive): exact first."""
        q = query.strip().casefold().lstrip("$")
        if not q:
            return []
        exact, partial = [], []
        for e in self.entities.values():
            forms = [e.id, *e.surface_forms(), *e.symbols, *e.tickers]
            folded = [f.casefold() for f in forms]
            if q in folded:
                exact.append(e)
            elif any(q in f for f in folded):
                partial.append(e)
        return exact + sorted(partial, key=lambda e: e.name)


def _split(cell: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in (cell or "").split("|") if x.strip())


def read_bundled(path: Path = DEFAULT_CATALOGUE) -> dict[str, Entity]:
    """The generated catalogue CSV (validated like user entries)."""
    out: dict[str, Entity] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=2):
            where = f"{path}:{i} (id {short(row.get('id'))})"
            e = _entity(
                {
                    "id": row.get("id", ""),
                    "name": row.get("name", ""),
                    "aliases": list(_split(row.get("aliases", ""))),
                    "tickers": list(_split(row.get("tickers", ""))),
                    "sector": row.get("sector", ""),
                    "country": row.get("country", ""),
                    "ambiguous": list(_split(row.get("ambiguous", ""))),
                },
                where,
                source=row.get("source") or "bundled",
            )
            e = replace(
                e,
                isin=(row.get("isin") or "")[:12],
                former_names=_split(row.get("former_names", "")),
                successor=(row.get("successor") or "")[:80],
                delisted=(row.get("delisted") or "").lower() == "true",
            )
            if e.id in out:
                raise CatalogueError(f"{where}: duplicate id")
            out[e.id] = e
    return out


def write_bundled(entities: list[Entity], path: Path = DEFAULT_CATALOGUE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ["id", "name", "aliases", "tickers", "sector", "country", "ambiguous", "source", "isin", "former_names"]
    cols += ["successor", "delisted"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for e in sorted(entities, key=lambda e: e.id):
            d = asdict(e)
            w.writerow({c: "|".join(d[c]) if isinstance(d[c], tuple) else d[c] for c in cols})


def _text(value, where: str, what: str, required: bool = False, limit: int = 200) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise CatalogueError(f"{where}: {what} must be text, not {type(value).__name__}")
    value = " ".join(value.split())
    if required and not value:
        raise CatalogueError(f"{where}: {what} is required")
    if len(value) > limit:
        raise CatalogueError(f"{where}: {what} is longer than {limit} characters")
    if any(ord(c) < 32 or c in "\u2028\u2029" for c in value):
        raise CatalogueError(f"{where}: {what} holds control characters")
    hidden = next((c for c in value if unicodedata.category(c)[0] == "C"), None)
    if hidden is not None:  # a zero-width space pasted with a name: stored headlines never hold one, so no match
        raise CatalogueError(
            f"{where}: {what} holds an invisible character U+{ord(hidden):04X} "
            f"({unicodedata.name(hidden, 'format character')}): remove it, or the name never matches a headline"
        )
    return unicodedata.normalize("NFC", value)


def _list(value, where: str, what: str) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise CatalogueError(f"{where}: {what} must be a list")
    return value


def _entity(doc: dict, where: str, source: str, partial: bool = False) -> Entity:
    if not isinstance(doc, dict):
        raise CatalogueError(f"{where}: an entity must be a mapping with at least id and name")
    unknown = set(doc) - _ENTITY_KEYS
    if unknown:
        raise CatalogueError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(_ENTITY_KEYS)})")
    eid = _text(doc.get("id"), where, "id", required=True, limit=80)
    if not _ID.match(eid):
        raise CatalogueError(f"{where}: id {short(eid)} must be lower-case letters, digits, '.', '_' or '-'")
    name = _text(doc.get("name"), where, "name", required=not partial, limit=MAX_ALIAS)
    aliases = []
    for j, a in enumerate(_list(doc.get("aliases"), where, "aliases")):
        a = _text(a, where, f"aliases[{j}]", required=True, limit=MAX_ALIAS)
        if sum(c.isalnum() for c in a) < 2:
            raise CatalogueError(
                f"{where}: aliases[{j}] {short(a)} has fewer than two letters or digits: a one-letter alias would "
                "match the article 'A' or an initial (tickers such as NYSE:A match as $A or (NYSE: A))"
            )
        aliases.append(a)
    tickers = []
    for j, t in enumerate(_list(doc.get("tickers"), where, "tickers")):
        t = _text(t, where, f"tickers[{j}]", required=True, limit=30).upper()
        if not _TICKER.match(t):
            raise CatalogueError(f"{where}: tickers[{j}] {short(t)} must be EXCHANGE:SYMBOL, e.g. NASDAQ:AAPL")
        tickers.append(t)
    ambiguous = [
        _text(a, where, "ambiguous", required=True, limit=MAX_ALIAS)
        for a in _list(doc.get("ambiguous"), where, "ambiguous")
    ]
    return Entity(
        id=eid,
        name=name,
        aliases=tuple(dict.fromkeys(a for a in aliases if a != name)),
        tickers=tuple(dict.fromkeys(tickers)),
        sector=_text(doc.get("sector"), where, "sector", limit=80),
        country=_text(doc.get("country"), where, "country", limit=80),
        source=source,
        ambiguous=tuple(dict.fromkeys(ambiguous)),
    )


def _amend(base: Entity, doc: dict, change: Entity) -> Entity:
    """A user entry for a bundled id: given fields replace, aliases and tickers are added."""
    return replace(
        base,
        name=change.name or base.name,
        aliases=tuple(dict.fromkeys(base.aliases + change.aliases)),
        tickers=tuple(dict.fromkeys(base.tickers + change.tickers)),
        sector=change.sector or base.sector,
        country=change.country or base.country,
        source="bundled+user",
        ambiguous=tuple(dict.fromkeys(base.ambiguous + change.ambiguous)),
    )


def load(user_file: Path | None = None, bundled: Path | None = DEFAULT_CATALOGUE) -> Catalogue:
    """Bundled catalogue + user file, validated; raises CatalogueError naming the first bad entry."""
    from pipeline import config

    user_file = Path(user_file) if user_file else config.entities_file()
    entities = read_bundled(bundled) if bundled else {}
    cat = Catalogue(entities=entities)
    if not user_file.exists():
        return cat
    try:
        doc = safeyaml.load_file(user_file) or {}
    except safeyaml.YamlFileError as exc:
        raise CatalogueError(str(exc)) from None
    if not isinstance(doc, dict) or set(doc) - {"entities", "watchlists"}:
        raise CatalogueError(f"{user_file}: top level must be a mapping with 'entities' and/or 'watchlists'")
    seen: set[str] = set()
    for i, item in enumerate(_list(doc.get("entities"), str(user_file), "entities")):
        ident = item.get("id") if isinstance(item, dict) else None
        where = f"{user_file}: entities[{i}] (id {short(ident)})"
        known = isinstance(ident, str) and ident in entities
        if isinstance(item, dict) and item.get("disabled") is True and not known:
            raise CatalogueError(f"{where}: disabled, but there is no bundled entity with that id")
        e = _entity(item, where, "user", partial=known or (isinstance(item, dict) and item.get("disabled") is True))
        if e.id in seen:
            raise CatalogueError(f"{where}: id given twice in the file")
        seen.add(e.id)
        if item.get("disabled") is True:
            entities.pop(e.id)
        elif known:
            entities[e.id] = _amend(entities[e.id], item, e)
        else:
            entities[e.id] = e
    for i, item in enumerate(_list(doc.get("watchlists"), str(user_file), "watchlists")):
        name = item.get("name") if isinstance(item, dict) else None
        where = f"{user_file}: watchlists[{i}] (name {short(name)})"
        if not isinstance(item, dict):
            raise CatalogueError(f"{where}: a watchlist must be a mapping with name and entities")
        unknown = set(item) - _WATCHLIST_KEYS
        if unknown:
            raise CatalogueError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(_WATCHLIST_KEYS)})")
        name = _text(name, where, "name", required=True, limit=64)
        if not _WATCHLIST.match(name):
            raise CatalogueError(f"{where}: name must be letters, digits, space, '.', '_' or '-'")
        if name in cat.watchlists:
            raise CatalogueError(f"{where}: watchlist name given twice")
        members = []
        for j, ref in enumerate(_list(item.get("entities"), where, "entities")):
            ref = _text(ref, where, f"entities[{j}]", required=True, limit=80)
            members.append(_resolve(ref, entities, f"{where}: entities[{j}]"))
        if not members:
            raise CatalogueError(f"{where}: lists no entities")
        cat.watchlists[name] = Watchlist(
            name, tuple(dict.fromkeys(members)), _text(item.get("description"), where, "description")
        )
    return cat


def _resolve(ref: str, entities: dict[str, Entity], where: str) -> str:
    """A watchlist member given as id, or as an exact ticker (with or without exchange), to an id."""
    if ref in entities:
        return ref
    up = ref.upper().lstrip("$")
    hits = [e.id for e in entities.values() if up in e.tickers or up in e.symbols]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise CatalogueError(f"{where}: {short(ref)} is ambiguous ({', '.join(sorted(hits)[:5])}); use an id")
    raise CatalogueError(f"{where}: {short(ref)} is not an entity id or ticker in the catalogue")
