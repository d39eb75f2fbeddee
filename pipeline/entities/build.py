"""Generate the bundled catalogue (``data/entities/catalogue.csv``) from maintained offline sources.

Run by hand when a source is updated, never at run time:
``python -m pipeline entities build-catalogue``. Sources (see
``data/entities/SOURCE.txt``):

* ``pytickersymbols`` (MIT): constituents of the major US and European
  indices (S&P 500/100/600, NASDAQ 100, Dow, FTSE 100, DAX family, CAC 40,
  Euro Stoxx 50, IBEX 35, AEX, SMI, OMX, Nikkei 225) with tickers and industries;
* SEntFiN's ``entity_list_comprehensive.csv`` (MIT): Indian listed companies
  with their NSE symbols and the aliases used in headlines;
* FinanceDatabase's equities (MIT): listed companies worldwide, mega to mid caps,
  one entity per company across its venues (ISIN, FIGI or name + country),
  bonds, preference shares and funds dropped, delisted ones kept and marked;
* the FTSE 100's names since 1984 (Apache-2.0): former names attached to the
  company that holds the LSE code today (or added as delisted, with a
  successor where one took it over), so an archive backfill finds them;
* the SmolLM2 tokenizer's vocabulary (Apache-2.0): ``common_words.txt``, the
  words it stores as one lower-case token. A company name that is such a word
  ("Apple", "Target", "Visa") needs context before it counts (see ``link``).
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import asdict, replace
from pathlib import Path

from pipeline.entities.catalogue import DEFAULT_CATALOGUE, Entity, write_bundled

log = logging.getLogger(__name__)
COMMON_WORDS = DEFAULT_CATALOGUE.parent / "common_words.txt"
# Build-time inputs beside the checkout (../shared/data/companies, see data/entities/SOURCE.txt); CI never builds.
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "companies"
FINANCEDATABASE = SHARED / "financedatabase_equities" / "equities.csv"
FTSE_HISTORY = SHARED / "ftse100_historical_names" / "ftse100_historical_names.csv"

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

    from pipeline.classify.model.base import resolve

    tok = AutoTokenizer.from_pretrained(resolve(base)[0])
    words = sorted({k[1:] for k in tok.get_vocab() if k.startswith("\u0120") and re.fullmatch(r"[a-z]{2,}", k[1:])})
    path.write_text(
        "# words the SmolLM2 tokenizer stores as one lower-case token; see SOURCE.txt\n" + "\n".join(words) + "\n"
    )
    return len(words)


CURATED_SOURCES = ("pytickersymbols", "sentfin")  # index constituents and SEntFiN's own headline aliases
_NAME_OK = re.compile(r"^[A-Z0-9&][^\n]*[A-Za-z]{2}")  # a company name starts upper-case and holds letters


def _bare_word(form: str) -> bool:
    """One ordinary word ("Energy", "Century", "Two"): from a big list, a short name like that names a stranger."""
    from pipeline.entities.link import common_words

    return " " not in form.strip() and form.strip().lower() in common_words()


def _guarded(e: Entity, keep: tuple[str, ...] = ()) -> Entity:
    """For the big, uncurated lists: one-word common-word aliases are dropped, and any other one-word form
    (a surname, a place: "Burton", "Logan", "Shire") needs context to count, like a common word; upper-case
    names of three to five letters ("ITV", "WPP", "SVB") are distinctive and stay plain."""
    aliases = tuple(a for a in e.aliases if a in keep or not _bare_word(a))
    one_word = [f for f in (e.name, *aliases) if " " not in f.strip() and not re.fullmatch(r"[A-Z0-9&]{3,5}", f)]
    return replace(e, aliases=aliases, ambiguous=tuple(dict.fromkeys(e.ambiguous + tuple(one_word))))


def _fit(e: Entity) -> Entity:
    """Forms longer than the catalogue allows are dropped (a venue's 90-character legal name is never a headline)."""
    from pipeline.entities.catalogue import MAX_ALIAS

    keep = tuple(a for a in e.aliases if len(a) <= MAX_ALIAS)
    return replace(e, aliases=keep, former_names=tuple(a for a in e.former_names if a in keep), sector=e.sector[:80])


def _valid(e: Entity) -> bool:
    """What the catalogue reader accepts (names, aliases, tickers, ids): an entry it would refuse is not written."""
    from pipeline.entities.catalogue import CatalogueError, _entity

    try:
        _entity({k: list(v) if isinstance(v, tuple) else v for k, v in asdict(e).items() if k in _USER_KEYS}, e.id, "b")
    except CatalogueError:
        return False
    return True


_USER_KEYS = ("id", "name", "aliases", "tickers", "sector", "country", "ambiguous")


def build(
    sentfin_list: Path,
    out: Path = DEFAULT_CATALOGUE,
    equities: Path | None = FINANCEDATABASE,
    ftse_history: Path | None = FTSE_HISTORY,
) -> dict:
    """Generate the catalogue; an entity already present (same id, a shared ticker, the same bare symbol in the
    same country, or the same short name) is not added twice. Earlier sources win (their names and aliases
    are curated)."""
    merged: dict[str, Entity] = {}
    tickers: set[str] = set()
    symbols: set[tuple[str, str]] = set()
    shorts: set[str] = set()
    counts = {}
    sources = [("pytickersymbols", from_pytickersymbols), ("sentfin", lambda: from_sentfin(sentfin_list))]
    if equities and Path(equities).is_file():
        sources.append(("financedatabase", lambda: from_financedatabase(Path(equities))))
    rejected = 0
    for source, make in sources:
        added = 0
        for e in make():
            curated = source in CURATED_SOURCES
            if not curated and not _NAME_OK.match(e.name):
                rejected += 1
                continue
            extra = (*alias_forms(e.name), *CURATED_ALIASES.get(e.id, ()))
            e = replace(e, aliases=tuple(dict.fromkeys(e.aliases + tuple(a for a in extra if a != e.name))))
            if not curated:
                e = _guarded(e, keep=CURATED_ALIASES.get(e.id, ()))
            e = _fit(e)
            if not _valid(e):
                rejected += 1
                continue
            syms = {(t.split(":", 1)[1], e.country) for t in e.tickers}
            key = short_name(e.name).casefold()
            if e.id in merged or tickers & set(e.tickers) or symbols & syms or key in shorts:
                continue
            merged[e.id] = e
            tickers |= set(e.tickers)
            symbols |= syms
            shorts.add(key)
            added += 1
        counts[source] = added
    counts["rejected_invalid"] = rejected
    if ftse_history and Path(ftse_history).is_file():
        counts["ftse100_history"] = add_former_names(merged, ftse_former_names(Path(ftse_history)))
        counts["successors"] = add_successors(merged)
        for eid, e in list(merged.items()):  # history's one-word names need context like the big lists' do
            if e.source == "ftse100-history":
                merged[eid] = _guarded(e)
            elif e.former_names:
                one = tuple(f for f in e.former_names if " " not in f and not re.fullmatch(r"[A-Z0-9&]{3,5}", f))
                merged[eid] = replace(e, ambiguous=tuple(dict.fromkeys(e.ambiguous + one)))
    counts["curated_names"] = add_curated_names(merged)
    final = [f for f in (_fit(e) for e in merged.values()) if _valid(f)]
    write_bundled(final, out)
    merged = {e.id: e for e in final}
    log.info("catalogue: %d entities (%s) -> %s", len(merged), counts, out)
    return {"entities": len(merged), "by_source": counts, "path": str(out)}


# --- world equities (FinanceDatabase, MIT) and FTSE 100 names since 1984 (Apache-2.0) -------------------------

KEEP_CAPS = frozenset({"Mega Cap", "Large Cap", "Mid Cap"})  # small caps add names faster than they add news
# Listings that are not a company's shares: preference shares, bonds, notes, funds, warrants, ETPs.
_NOT_EQUITY = re.compile(
    r"(?i)(\bdepositary\b|\bpreferred\b|\bpref\b|\bperp|\bnotes?\b|\bbonds?\b|\bmtn\b|\bflr\b|\betf\b|\betn\b|"
    r"\betp\b|\bwarrants?\b|\brights?\b|\bunits?\b|\bfund\b|\bdebentures?\b|\bsubordinated\b|\bdue\s+\d|"
    r"\d+(?:[.,]\d+)?\s?%|\b\d+/\d+\b|\bzt\b|\bfrn\b|\btracker\b|\bcertificates?\b)"
)
# The venues where a company of each country has its home listing (FinanceDatabase exchange codes).
HOME_VENUES = {
    "United States": ("NYQ", "NMS", "NGM", "NCM", "ASE", "PCX", "BTS"),
    "United Kingdom": ("LSE", "IOB", "AQS"),
    "Germany": ("GER", "FRA", "MUN", "BER", "DUS", "HAN", "HAM", "STU"),
    "France": ("PAR",),
    "Netherlands": ("AMS",),
    "Belgium": ("BRU",),
    "Portugal": ("LIS",),
    "Italy": ("MIL", "TLO"),
    "Spain": ("MCE",),
    "Switzerland": ("EBS",),
    "Austria": ("VIE",),
    "Sweden": ("STO",),
    "Finland": ("HEL",),
    "Denmark": ("CPH",),
    "Norway": ("OSL",),
    "Ireland": ("ISE",),
    "Greece": ("ATH",),
    "Czech Republic": ("PRA",),
    "Hungary": ("BUD",),
    "Turkey": ("IST",),
    "Israel": ("TLV",),
    "South Africa": ("JNB",),
    "Canada": ("TOR", "VAN", "CNQ"),
    "Japan": ("JPX", "FKA"),
    "Hong Kong": ("HKG",),
    "China": ("SHH", "SHZ", "HKG"),
    "Taiwan": ("TAI", "TWO"),
    "South Korea": ("KSC", "KOE"),
    "India": ("NSE", "BSE", "NSI"),
    "Australia": ("ASX",),
    "New Zealand": ("NZE",),
    "Singapore": ("SES",),
    "Malaysia": ("KLS",),
    "Thailand": ("SET",),
    "Indonesia": ("JKT",),
    "Brazil": ("SAO",),
    "Mexico": ("MEX",),
    "Argentina": ("BUE",),
    "Chile": ("SGO",),
    "Russia": ("MCX",),
    "Saudi Arabia": ("SAU",),
}
# FinanceDatabase venue code -> the exchange prefix our tickers use (as pytickersymbols and SEntFiN spell them).
VENUE_PREFIX = {
    "NYQ": "NYSE",
    "NMS": "NASDAQ",
    "NGM": "NASDAQ",
    "NCM": "NASDAQ",
    "ASE": "NYSEAMERICAN",
    "PCX": "NYSEARCA",
    "BTS": "BATS",
    "LSE": "LON",
    "IOB": "LON",
    "AQS": "AQSE",
    "GER": "ETR",
    "FRA": "FRA",
    "PAR": "EPA",
    "AMS": "AMS",
    "BRU": "EBR",
    "LIS": "ELI",
    "MIL": "BIT",
    "TLO": "BIT",
    "MCE": "BME",
    "EBS": "SWX",
    "VIE": "VIE",
    "STO": "STO",
    "HEL": "HEL",
    "CPH": "CPH",
    "OSL": "OSL",
    "ISE": "ISE",
    "ATH": "ATH",
    "TOR": "TSE",
    "VAN": "CVE",
    "JPX": "TYO",
    "HKG": "HKG",
    "SHH": "SHA",
    "SHZ": "SHE",
    "TAI": "TPE",
    "KSC": "KRX",
    "NSE": "NSE",
    "NSI": "NSE",
    "BSE": "BOM",
    "ASX": "ASX",
    "NZE": "NZE",
    "SES": "SGX",
    "KLS": "KLSE",
    "SET": "BKK",
    "JKT": "IDX",
    "SAO": "BVMF",
    "MEX": "BMV",
    "BUE": "BCBA",
    "SGO": "SGO",
    "MCX": "MCX",
    "SAU": "TADAWUL",
    "JNB": "JSE",
    "TLV": "TLV",
    "IST": "IST",
}


_PREF_SYMBOL = re.compile(r"\^|-P[A-Z]?$|\.PR[A-Z]?$|-W[ST]?$|-U$|-R$")  # preference shares, warrants, units


def _tidy(name: str) -> str:
    """A venue's spelling of a company name, in the case people write it ("WM MORRISON SUPERMARKETS" ->
    "Wm Morrison Supermarkets"); names with lower-case letters are kept as they are."""
    name = " ".join(name.replace("\u00a0", " ").split()).strip(" ,")
    if any(c.islower() for c in name):
        return name
    words = []
    for w in name.split():
        keep = (len(w) <= 3 and w.isalpha() and w not in {"THE", "AND", "OF", "FOR"}) or any(c.isdigit() for c in w)
        words.append(w if keep else w.capitalize())
    return " ".join(words)


def _name_quality(name: str) -> tuple:
    """Prefer the venue spelling a reader would write: mixed case, no digits, no cut-off abbreviations."""
    odd = sum(tok.endswith(".") and len(tok) <= 5 for tok in name.split()) + name.count("-,")
    return (any(c.islower() for c in name), -odd, -sum(c.isdigit() for c in name), -abs(len(name) - 24))


def _group_key(row: dict) -> str:
    """One company across its venues: ISIN, else composite FIGI, else its short name and country."""
    if row.get("isin"):
        return "isin:" + row["isin"]
    if row.get("composite_figi"):
        return "figi:" + row["composite_figi"]
    return "name:" + short_name(_tidy(row["name"])).casefold() + "|" + (row.get("country") or "")


def from_financedatabase(path: Path = FINANCEDATABASE) -> list[Entity]:
    """Listed companies worldwide (mega, large and mid caps; delisted ones kept and marked), one per company."""
    groups: dict[str, list[dict]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            name = (row.get("name") or "").strip()
            if not name or row.get("market_cap") not in KEEP_CAPS or _NOT_EQUITY.search(name):
                continue
            groups.setdefault(_group_key(row), []).append(row)
    # a group keyed by ISIN and one keyed by name can be the same company: merge them by short name + country
    merged: dict[str, list[dict]] = {}
    for rows in groups.values():
        best = max((_tidy(r["name"]) for r in rows), key=_name_quality)
        merged.setdefault(short_name(best).casefold() + "|" + (rows[0].get("country") or ""), []).extend(rows)
    out: dict[str, Entity] = {}
    for rows in merged.values():
        country = rows[0].get("country") or ""
        home = [r for r in rows if r.get("exchange") in HOME_VENUES.get(country, ())]
        named = max((_tidy(r["name"]) for r in (home or rows)), key=_name_quality)
        short = short_name(named)
        tickers = []
        for r in home:
            prefix = VENUE_PREFIX.get(r["exchange"])
            sym = r["symbol"].split(".")[0].upper() if "." in r["symbol"] else r["symbol"].upper()
            if prefix and re.fullmatch(r"[A-Z0-9][A-Z0-9\-&]{0,11}", sym) and not _PREF_SYMBOL.search(r["symbol"]):
                tickers.append(f"{prefix}:{sym}")
        if not tickers and country == "United States":  # home venue file missing (Nasdaq): Mexico lists US tickers
            tickers = [
                f"US:{r['symbol'].split('.')[0]}"
                for r in rows
                if r.get("exchange") == "MEX" and re.fullmatch(r"[A-Z]{1,5}\.MX", r["symbol"])
            ][:1]
        isins = sorted({r["isin"] for r in rows if r.get("isin")})
        eid = slug(short)
        if eid in out:
            eid = slug(f"{short}-{country or tickers[:1]}")
        if eid in out:
            continue
        out[eid] = Entity(
            id=eid,
            name=named,
            aliases=(),  # made by rule in build(), as for every source
            tickers=tuple(dict.fromkeys(tickers))[:4],
            sector=(rows[0].get("sector") or "")[:80],
            country=country[:80],
            source="financedatabase",
            ambiguous=_market_names((named, short)),
            isin=isins[0] if isins else "",
            delisted=all(r.get("delisted") == "True" for r in rows),
        )
    return list(out.values())


_NOT_LEADING = frozenset("THE NEW AND FOR USA ONE BIG TOP".split())
# Aliases no source spells out, for companies of dated events the benchmarks use (bench/events.py).
CURATED_ALIASES = {
    "svb-financial": ("Silicon Valley Bank", "SVB"),
    "first-republic-bank": ("First Republic",),
    "signature-bank": ("Signature Bank",),
    "silvergate-capital": ("Silvergate",),
}


def alias_forms(name: str) -> list[str]:
    """Surface forms a headline uses for ``name``, by rule: legal forms and "Group"/"Holdings" dropped, "&"/"and"
    swapped, "& Co" dropped, ADR markers dropped ("Credit Suisse Group AG ADR" -> "Credit Suisse")."""
    base = re.sub(r"(?i)\s+\b(adr|ads|sponsored|unsponsored|ordinary shares|common stock|class [a-c])\b.*$", "", name)
    forms = [base, short_name(base)]
    first = base.split()[0] if base.split() else ""
    if len(base.split()) > 1 and re.fullmatch(r"[A-Z]{3,5}", first) and first not in _NOT_LEADING:
        forms.append(first)  # "SVB Financial Group" -> "SVB", "HSBC Holdings" -> "HSBC"
    for f in list(forms):
        if " & " in f:
            forms.append(f.replace(" & ", " and "))
        elif " and " in f:
            forms.append(f.replace(" and ", " & "))
        forms.append(re.sub(r"(?i)\s*&\s*co\.?$", "", f))
    return [" ".join(f.split()).strip(" ,.") for f in forms if len(f.strip()) >= 2]


_FTSE_JUNK = re.compile(r"[():]\s*$|\bIndia\b|\(USA\)")


def ftse_former_names(path: Path = FTSE_HISTORY) -> dict[str, list[str]]:
    """LSE code -> names of FTSE 100 members since 1984 (spelling variants included), junk keys dropped."""
    out: dict[str, list[str]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            name, code = " ".join((row.get("name") or "").split()), (row.get("lse_epic") or "").strip().upper()
            if not name or not code or _FTSE_JUNK.search(name):
                continue
            name = re.sub(r"\s*\((?:formerly|now)[^)]*\)", "", name).strip()
            out.setdefault(code.rstrip("."), []).append(name)
    return out


def add_former_names(entities: dict[str, Entity], history: dict[str, list[str]]) -> dict[str, int]:
    """Attach FTSE 100 names to the company that holds the code today, or add the company as delisted."""
    by_code: dict[str, str] = {}
    for e in entities.values():
        for t in e.tickers:
            exch, _, sym = t.partition(":")
            if exch in ("LON", "LSE"):
                by_code.setdefault(sym.rstrip("."), e.id)
    by_name: dict[str, str] = {}
    owner: dict[str, str] = {}
    for e in entities.values():
        for f in (e.name, short_name(e.name)):
            by_name.setdefault(f.casefold(), e.id)
        for f in e.surface_forms():
            owner.setdefault(f.casefold(), e.id)
    counts = {"attached": 0, "added_delisted": 0}
    for code, names in sorted(history.items()):
        forms = list(dict.fromkeys(f for n in names for f in (n, *alias_forms(n)) if not _bare_word(f)))
        named = next((by_name[n.casefold()] for n in names if n.casefold() in by_name), None)
        if code not in by_code and named:  # the same company under its name, listed under another code now
            e = entities[named]
            by_code[code] = named
            if re.fullmatch(r"[A-Z0-9]{1,5}", code) and f"LON:{code}" not in e.tickers:
                entities[named] = replace(e, tickers=e.tickers + (f"LON:{code}",))
        if code in by_code:
            e = entities[by_code[code]]
            known = {x.casefold() for x in e.surface_forms()}
            # a form another company already answers to stays theirs ("Shell" is Shell plc, not Royal Dutch Shell)
            new = tuple(f for f in forms if f.casefold() not in known and owner.get(f.casefold(), e.id) == e.id)
            if new:
                entities[e.id] = replace(
                    e, aliases=e.aliases + new, former_names=tuple(dict.fromkeys(e.former_names + new))
                )
                counts["attached"] += 1
            continue
        name = max(names, key=len)
        eid = slug(short_name(name))
        if eid in entities:
            eid = slug(f"{short_name(name)}-lse")
        if eid in entities:
            continue
        forms = [f for f in forms if f.casefold() not in owner]
        entities[eid] = Entity(
            id=eid,
            name=name,
            aliases=tuple(f for f in forms if f != name),
            tickers=(f"LON:{code}",) if re.fullmatch(r"[A-Z0-9]{1,5}", code) else (),
            country="United Kingdom",
            source="ftse100-history",
            former_names=tuple(f for f in forms if f != name),
            delisted=True,
        )
        counts["added_delisted"] += 1
    return counts


# Companies that left the FTSE 100 because another took them over or they were renamed (public record:
# the companies' announcements; dates for the reader). LSE code -> (successor's name as the catalogue has it, note).
SUCCESSORS = {
    "RDSA": ("Shell plc", "renamed Shell plc, Jan 2022"),
    "RDSB": ("Shell plc", "renamed Shell plc, Jan 2022"),
    "BG": ("Shell plc", "acquired by Royal Dutch Shell, Feb 2016"),
    "SAB": ("Anheuser-Busch InBev", "acquired by AB InBev, Oct 2016"),
    "SHP": ("Takeda Pharmaceutical", "acquired by Takeda, Jan 2019"),
    "SKY": ("Comcast", "acquired by Comcast, Oct 2018"),
    "GKN": ("Melrose Industries", "acquired by Melrose, Apr 2018"),
    "RRS": ("Barrick Gold", "merged into Barrick, Jan 2019"),
    "WOS": ("Ferguson", "renamed Ferguson, Jul 2017"),
    "FLG": ("Aviva", "acquired by Aviva, Apr 2015"),
    "PPB": ("Flutter Entertainment", "renamed Flutter Entertainment, 2019"),
    "SL": ("abrdn", "Standard Life merged with Aberdeen 2017, renamed abrdn 2021"),
}


CURATED_NAMES = DEFAULT_CATALOGUE.parent / "curated_names.csv"


def add_curated_names(entities: dict[str, Entity], path: Path = CURATED_NAMES) -> int:
    """Short and former names headlines use that no source lists (``curated_names.csv``, each row with its
    source): added as aliases (and former names) of the entity; a row naming an id the catalogue lacks adds that
    company as delisted, with its successor. A row naming neither is a build error, not a silent skip."""
    done = 0
    with open(path, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=2):
            eid, form, kind = row["entity_id"], row["form"].strip(), row["kind"]
            if not row.get("source", "").strip() or kind not in ("short", "former"):
                raise ValueError(f"{path}:{i}: every curated name needs a kind (short|former) and a source")
            e = entities.get(eid)
            if e is None:
                if not row.get("name"):
                    raise ValueError(f"{path}:{i}: {eid!r} is not in the catalogue and the row gives no name")
                e = Entity(
                    id=eid, name=row["name"], source="curated", delisted=True, successor=row.get("successor", "")
                )
            former = e.former_names + ((form,) if kind == "former" and form not in e.former_names else ())
            aliases = e.aliases + ((form,) if form not in e.aliases and form != e.name else ())
            entities[eid] = replace(e, aliases=aliases, former_names=former)
            done += 1
    return done


def add_successors(entities: dict[str, Entity]) -> int:
    """Record the successor of each company in SUCCESSORS that the catalogue holds (by its LSE code)."""
    by_name = {e.name.casefold(): e.id for e in entities.values()}
    by_name.update({short_name(e.name).casefold(): e.id for e in entities.values()})
    done = 0
    for e in list(entities.values()):
        codes = {t.split(":", 1)[1].rstrip(".") for t in e.tickers if t.startswith("LON:")}
        for code in codes & set(SUCCESSORS):
            target = by_name.get(SUCCESSORS[code][0].casefold()) or by_name.get(
                short_name(SUCCESSORS[code][0]).casefold()
            )
            if target and target != e.id:
                entities[e.id] = replace(e, successor=target, delisted=True)
                done += 1
    return done
