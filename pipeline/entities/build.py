"""Generate the bundled catalogue (``data/entities/catalogue.csv``) from maintained offline sources.

Run by hand when a source is updated, never at run time:
``python -m pipeline entities build-catalogue``. Sources (see
``data/entities/SOURCE.txt``):

* ``pytickersymbols`` (MIT): constituents of the major US and European
  indices (S&P 500/100/600, NASDAQ 100, Dow, FTSE 100, DAX family, CAC 40,
  Euro Stoxx 50, IBEX 35, AEX, SMI, OMX, Nikkei 225) with tickers and industries;
* SEntFiN's ``entity_list_comprehensive.csv`` (MIT): Indian listed companies
  with their NSE symbols and the aliases used in headlines;
* the SmolLM2 tokenizer's vocabulary (Apache-2.0): ``common_words.txt``, the
  words it stores as one lower-case token. A company name that is such a word
  ("Apple", "Target", "Visa") needs context before it counts (see ``link``).
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from pipeline.entities.catalogue import DEFAULT_CATALOGUE, Entity, write_bundled

log = logging.getLogger(__name__)
COMMON_WORDS = DEFAULT_CATALOGUE.parent / "common_words.txt"

# Legal-form suffixes dropped to get the short name headlines use ("Apple Inc." -> "Apple").
_SUFFIX = re.compile(
    r"(,?\s+(inc\.?|incorporated|corp\.?|corporation|co\.?|company|ltd\.?|limited|plc|p\.l\.c\.|llc|l\.p\.|lp|"
    r"ag|se|sa|s\.a\.|nv|n\.v\.|spa|s\.p\.a\.|ab|asa|oyj|a/s|holdings?|group|the|& co\.?|"
    r"ltd\.?-?\s*old|- old|\(the\)|class [a-c]|\(class [a-c]\)))+\s*$",
    re.IGNORECASE,
)
_LEGAL = re.compile(r"(?i)\b(ltd|limited|corp|corporation|inc|plc|kgaa|n\.v)\b")
# Yahoo suffix -> exchange, for listings the source gives without one.
_YAHOO_EXCHANGE = {
    "PA": "EPA",
    "DE": "ETR",
    "F": "FRA",
    "L": "LON",
    "AS": "AMS",
    "MC": "BME",
    "MI": "BIT",
    "SW": "SWX",
    "HE": "HEL",
    "ST": "STO",
    "T": "TYO",
    "BR": "EBR",
    "VI": "VIE",
    "CO": "CPH",
    "OL": "OSL",
    "LS": "ELI",
}
_HOME_FRA = {"Germany"}


def _primary_tickers(symbol: str, stock: dict) -> list[str]:
    """Home listings only: cross-listings would add foreign or OTC codes as bare symbols (FRA:APC for Apple)."""
    base, _, suffix = symbol.partition(".")
    if suffix and suffix not in _YAHOO_EXCHANGE:
        base = symbol  # BRK.B is a US class share, not a suffix
    out = []
    for s in stock.get("symbols") or []:
        g = (s.get("google") or "").upper()
        exch, _, sym = g.rpartition(":")
        if sym != base:
            continue
        if not exch:
            exch = _YAHOO_EXCHANGE.get(suffix, "US")
        if exch in ("OTCMKTS",) or (exch == "FRA" and stock.get("country") not in _HOME_FRA):
            continue
        out.append(f"{exch}:{sym}")
    if not out and suffix in _YAHOO_EXCHANGE:
        out.append(f"{_YAHOO_EXCHANGE[suffix]}:{base}")
    return list(dict.fromkeys(out))


def short_name(name: str) -> str:
    """The name without its legal-form suffix; the name itself if nothing would be left."""
    short = _SUFFIX.sub("", name).strip(" ,.-")
    return short if len(short) >= 2 else name


# Short names that headlines mostly use for an index or a market, not the company that runs it.
MARKET_NAMES = frozenset(
    {"Nasdaq", "NYSE", "Dow", "Dow Jones", "S&P", "FTSE", "DAX", "Nikkei", "CAC", "Euronext", "LSE"}
)


def _market_names(forms) -> tuple[str, ...]:
    return tuple(f for f in forms if f in MARKET_NAMES)


def _symbol_word(symbol: str, name: str) -> list[str]:
    """The name's first word when the ticker spells it ("Britannia" for BRITANNIA, Britannia Industries)."""
    first = name.split()[0].strip(",.") if name.split() else ""
    return [first] if len(first) >= 4 and first.upper() == symbol.split(".")[0] and first != name else []


def slug(name: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", name.casefold()).strip("-")
    return s[:60] or "entity"


def from_pytickersymbols() -> list[Entity]:
    from pytickersymbols import PyTickerSymbols  # build-time only: requirements-dev.txt

    out: dict[str, Entity] = {}
    for stock in PyTickerSymbols().get_all_stocks():
        name = " ".join((stock.get("name") or "").split())
        symbol = (stock.get("symbol") or "").upper()
        if not name or not symbol:
            continue
        tickers = _primary_tickers(symbol, stock)
        if not tickers:
            continue  # no listing we can name: a bare symbol alone would only add noise
        short = short_name(name)
        eid = slug(short)
        if eid in out:
            if set(out[eid].tickers) & set(tickers):
                continue  # the same company in two indices
            eid = slug(f"{short}-{stock.get('country') or symbol}")
        out[eid] = Entity(
            id=eid,
            name=name,
            aliases=tuple(dict.fromkeys(a for a in (short, *_symbol_word(symbol, name)) if a != name)),
            tickers=tuple(dict.fromkeys(tickers)),
            sector=((stock.get("industries") or [""])[0] or "")[:80],
            country=(stock.get("country") or "")[:80],
            source="pytickersymbols",
            ambiguous=_market_names((name, short)),
        )
    return list(out.values())


def from_sentfin(path: Path) -> list[Entity]:
    out: dict[str, Entity] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            symbol = (row.get("Symbol") or "").strip().upper()
            names = [n.strip() for n in (row.get("Entity") or "").split(",") if n.strip()]
            names = [n for n in names if n.upper() != symbol and not re.fullmatch(r"(?i)ltd\.?(-?\s*old)?|old", n)]
            if not symbol or not names or not re.fullmatch(r"[A-Z0-9][A-Z0-9.\-&]{0,11}", symbol):
                continue
            if not any(_LEGAL.search(n) for n in names):
                continue  # the list also holds market groupings ("IT stocks", "Mid caps"): companies only
            name = names[0].rstrip(".")
            short = short_name(name)
            forms = [short, *(short_name(n) for n in names[1:]), *names[1:], *_symbol_word(symbol, name)]
            aliases = tuple(dict.fromkeys(a for a in forms if a != name))
            eid = slug(short)
            if eid in out:
                eid = slug(f"{short}-{symbol}")
            out[eid] = Entity(
                id=eid, name=name, aliases=aliases, tickers=(f"NSE:{symbol}",), country="India", source="sentfin"
            )
    return list(out.values())


def write_common_words(base: str | None = None, path: Path = COMMON_WORDS) -> int:
    """Words the base model's tokenizer holds as one lower-case token (a proxy for 'common English word')."""
    from transformers import AutoTokenizer

    from pipeline.classify.base import resolve

    tok = AutoTokenizer.from_pretrained(resolve(base)[0])
    words = sorted({k[1:] for k in tok.get_vocab() if k.startswith("\u0120") and re.fullmatch(r"[a-z]{2,}", k[1:])})
    path.write_text(
        "# words the SmolLM2 tokenizer stores as one lower-case token; see SOURCE.txt\n" + "\n".join(words) + "\n"
    )
    return len(words)


def build(sentfin_list: Path, out: Path = DEFAULT_CATALOGUE) -> dict:
    """Generate the catalogue; an entity already present (same id or a shared ticker) is not added twice."""
    merged: dict[str, Entity] = {}
    tickers: set[str] = set()
    counts = {}
    for source, ents in (("pytickersymbols", from_pytickersymbols()), ("sentfin", from_sentfin(sentfin_list))):
        added = 0
        for e in ents:
            if e.id in merged or tickers & set(e.tickers):
                continue
            merged[e.id] = e
            tickers |= set(e.tickers)
            added += 1
        counts[source] = added
    write_bundled(list(merged.values()), out)
    log.info("catalogue: %d entities (%s) -> %s", len(merged), counts, out)
    return {"entities": len(merged), "by_source": counts, "path": str(out)}
