"""Find the companies a headline mentions: multi-pattern matching plus the context rules that keep it precise.

One Aho-Corasick automaton (``pyahocorasick``) holds every name, alias and
ticker of the catalogue, case-folded, so a headline is scanned once whatever
the catalogue's size. Each hit must then pass its rule:

* **word boundaries** on both sides (letters and digits only; "Apple's",
  "(Apple)", "Apple-made" match, "Applebee" and "Snapple" do not);
* **names and aliases** match in any case, except that a one-word name must
  start with a capital; a name that is also a common word ("Apple",
  "Target", "Visa", "Shell": the words the base model's tokenizer stores as
  one lower-case token, see ``build``) must match its capitalisation exactly
  *and* have evidence: a possessive, a legal suffix ("Target Corp"), the
  company's ticker in the same text, or a finance cue word. In Title Case
  headlines, where every word is capitalised, a finance cue is not enough
  unless the name opens the headline; a name opening the headline needs a
  company noun after it, or a company verb and a cue ("Next raises guidance");
  a name of one or two capitals ("BP", "GE") needs a company noun after it;
* **tickers**: a cashtag (``$AAPL``) or a ticker in an exchange context
  (``(NYSE: ALL)``, ``NASDAQ:AAPL``, Reuters codes ``<JNJ.N>``) always counts;
  a bare ticker counts only in exact upper case, three letters or more, not a
  common word or acronym ("ALL", "IT", "CEO", "A"), and not in an all-caps
  headline;
* overlapping hits keep the longest ("Bank of America" over "America");
  a surface form shared by several entities counts only for the one whose
  canonical name it is.

Offsets are into the raw text as given (Python string indices).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import ahocorasick

from pipeline.entities.catalogue import DEFAULT_CATALOGUE, Catalogue

COMMON_WORDS = DEFAULT_CATALOGUE.parent / "common_words.txt"

# Upper-case words in news that are not tickers, whatever the catalogue says.
ACRONYMS = frozenset(
    """AI AGM API ATM BBC BIS BOE BOJ CEO CFO COO CPI CTO DOJ ECB EPS ESG ETF EU EV FAA FBI FDA FDIC FED FOMC FTC FX
    FY GDP GM HR IMF IPO IRS IT LNG LLC LTD M&A MSCI NATO NYSE OECD OPEC PE PMI PPI Q1 Q2 Q3 Q4 QE RBI SEBI SEC SPAC
    TV UAE UK UN US USA USD EUR GBP JPY CNY INR VAT WHO WTO YOY NEW CEO ONE ALL BIG LOW HIGH TOP NOW BUY SELL HOLD""".split()
)
CUES = frozenset(
    """shares share stock stocks equity earnings revenue revenues sales profit profits loss losses quarter quarterly
    results guidance outlook forecast forecasts dividend dividends buyback ipo deal deals merger acquisition acquire
    acquires acquired bid stake investors investor analyst analysts upgrade upgrades downgrade downgrades rating
    valuation market cap ceo cfo chief executive chairman board lawsuit sues sued probe fine fined recall recalls
    layoffs jobs cuts hires launches launch unveils plant factory supplier customers subscribers users orders
    contract contracts bond bonds debt notes rally rallies falls fall drops drop jumps jump rises rise slumps slump
    surges soars plunges tumbles climbs gains beats beat misses miss tops raises cuts lowers reports posts says
    inc corp company companies firm group unit brand""".split()
)
# Words that, right after an ambiguous name, make it a company ("Apple shares", "Target CEO").
NEXT_NOUNS = frozenset(
    """shares share stock stocks earnings profit profits revenue revenues sales results ceo cfo chief chairman
    dividend investors shareholders board quarterly inc corp plc ltd bonds""".split()
)
# Verbs a headline puts right after a company that opens it ("Next raises guidance", "Target cuts outlook").
VERBS = frozenset(
    """raises raise cuts cut lowers lifts posts reports warns beats misses tops slashes sues buys sells agrees
    plans launches wins loses rises falls jumps slumps drops gains surges tumbles plunges soars hikes trims
    boosts names appoints fires settles fails collapses closes""".split()
)
_SUFFIXES = frozenset("inc inc. corp corp. corporation co co. ltd ltd. plc ag se sa nv llc group holdings".split())
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00a0": " "})
_EXCHANGE_BEFORE = re.compile(
    r"(?:\b(?:NYSE|NASDAQ|NYSEARCA|AMEX|LSE|LON|TSX|ASX|NSE|BSE|XETRA|ETR|EPA|FRA|SIX|TSE|HKEX)\s*:\s*|<)$", re.I
)
_RIC_AFTER = re.compile(r"^\.[A-Z]{1,2}>")
_GLUE = re.compile(
    r"(?:\.com)?(?:,?\s+(?:&\s*Co|Group|Inc|Corp|Co|Ltd|plc|Holdings|SE|AG|NV|SA)\.?)*"
    r"[\s,]*(?:[(<\[]\s*)?(?:[A-Za-z]{2,8}\s*:\s*)?\$?"
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'&.-]*")


@dataclass(frozen=True)
class Mention:
    entity_id: str
    start: int  # offsets into the raw text: text[start:end] == span
    end: int
    span: str
    method: str  # name | alias | cashtag | ticker-context | ticker
    confidence: float


@dataclass(frozen=True)
class _Form:
    entity_id: str
    form: str
    kind: str  # name | alias | ticker
    ambiguous: bool


@lru_cache(maxsize=1)
def common_words(path: Path = COMMON_WORDS) -> frozenset[str]:
    if not path.exists():
        return frozenset()
    return frozenset(w.strip() for w in path.read_text().splitlines() if w.strip() and not w.startswith("#"))


def is_ambiguous(form: str, words: frozenset[str]) -> bool:
    """A surface form that is also ordinary language: a common word, or only common words, or very short."""
    tokens = re.findall(r"[A-Za-z]+|\d+", form)
    if len(form.replace(" ", "")) <= 2:
        return True
    return bool(tokens) and all(t.lower() in words for t in tokens)


def name_key(name: str) -> str:
    """A name as counted and searched: case, quotes and punctuation folded to single spaces ("AT&T" keeps &)."""
    return re.sub(r"[^\w&]+", " ", name.replace("’", "'").casefold()).strip()


def _fold(text: str) -> str:
    """Lower-cased text of the same length (so automaton offsets are raw offsets)."""
    t = text.translate(_QUOTES)
    low = t.lower()
    if len(low) == len(t):
        return low
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in t)


class Linker:
    """Built once per catalogue; ``link(text)`` is pure and thread-safe."""

    def __init__(self, catalogue: Catalogue, words: frozenset[str] | None = None) -> None:
        words = common_words() if words is None else words
        self.catalogue = catalogue
        by_key: dict[str, list[_Form]] = {}
        self.symbols: dict[str, set[str]] = {}
        for e in catalogue.entities.values():
            flagged = set(e.ambiguous)
            for kind, form in [("name", e.name)] + [("alias", a) for a in e.aliases]:
                form = " ".join(form.translate(_QUOTES).split())
                if sum(c.isalnum() for c in form) < 2:
                    continue  # "X", "A": an article or an initial far more often than a company; found by ticker
                amb = form in flagged or is_ambiguous(form, words)
                by_key.setdefault(_fold(form), []).append(_Form(e.id, form, kind, amb))
            for sym in e.symbols:
                amb = sym in flagged or sym in ACRONYMS or len(sym) < 3 or sym.lower() in words or not sym.isalpha()
                by_key.setdefault(_fold(sym), []).append(_Form(e.id, sym, "ticker", amb))
                self.symbols.setdefault(e.id, set()).add(sym)
        self.automaton = ahocorasick.Automaton()
        self.candidates: dict[str, tuple[str, ...]] = {}  # folded form -> every entity holding it, best first
        for key, forms in by_key.items():
            ents = {f.entity_id for f in forms}
            if len(ents) > 1:
                self.candidates[key] = tuple(sorted(ents, key=lambda i: rank_key(catalogue, i)))
                forms = _resolve_shared(forms, self.candidates[key])
            self.automaton.add_word(key, (len(key), tuple(forms)))
        if len(self.automaton):
            self.automaton.make_automaton()
        self.size = len(by_key)

    def others(self, m: Mention) -> tuple[str, ...]:
        """The other entities that answer to a mention's surface form (a shared name), best first."""
        return tuple(e for e in self.candidates.get(_fold(m.span.lstrip("$")), ()) if e != m.entity_id)

    def scan(self, folded: str) -> list[tuple[int, int, tuple[_Form, ...]]]:
        """Every catalogue form in a folded text with word boundaries on both sides, before any context rule;
        the forms are those the form resolves to (empty where no entity may take it)."""
        if not len(self.automaton):
            return []
        out = []
        for end, (length, forms) in self.automaton.iter(folded):
            start, stop = end - length + 1, end + 1
            if (start > 0 and folded[start - 1].isalnum()) or (stop < len(folded) and folded[stop].isalnum()):
                continue
            out.append((start, stop, forms))
        return out

    def lookup(self, text: str) -> tuple[_Form, ...]:
        """The forms a whole text resolves to (exact, case-folded), empty if the catalogue holds none."""
        got = self.automaton.get(_fold(text), None) if len(self.automaton) else None
        return got[1] if got else ()

    def link(self, text: str) -> list[Mention]:
        """Every accepted mention in ``text``, in order of position."""
        if not text or not len(self.automaton):
            return []
        folded = _fold(text)
        raw = text.translate(_QUOTES)
        hits = [(start, stop, f) for start, stop, forms in self.scan(folded) for f in forms]
        if not hits:
            return []
        ctx = _Context(raw, folded)
        accepted: list[Mention] = []
        for start, stop, f in hits:
            m = self._judge(ctx, start, stop, f, hits)
            if m:
                accepted.append(m)
        return _longest(accepted, raw)

    def _judge(self, ctx: _Context, start: int, stop: int, f: _Form, hits) -> Mention | None:
        surface = ctx.raw[start:stop]
        if f.kind == "ticker":
            tiny = len(f.form) <= 2  # "A", "T", "GE": only in its exact case and a ticker context ($A, NYSE: A)
            if start > 0 and ctx.raw[start - 1] == "$" and (surface == f.form or not tiny):
                return Mention(f.entity_id, start - 1, stop, ctx.raw[start - 1 : stop], "cashtag", 0.98)
            if surface != f.form:
                return None
            before = ctx.raw[max(0, start - 12) : start]
            if (
                _EXCHANGE_BEFORE.search(before)
                or _RIC_AFTER.match(ctx.raw[stop : stop + 4])
                or (not tiny and before.endswith("(") and ctx.raw[stop : stop + 1] in (")", "."))
            ):
                return Mention(f.entity_id, start, stop, surface, "ticker-context", 0.95)
            if f.ambiguous or ctx.all_caps or len(f.form) < 4:
                return None
            return Mention(f.entity_id, start, stop, surface, "ticker", 0.75)
        method = f.kind
        if not f.ambiguous:
            lower_start = not surface[:1].isupper() and not surface[:1].isdigit()
            if " " not in f.form and lower_start and surface != f.form:  # "easyJet", "eBay": as the company spells it
                return None
            return Mention(f.entity_id, start, stop, surface, method, 0.95 if method == "name" else 0.9)
        # ambiguous: exact capitalisation, not an all-caps line, and evidence
        if surface != f.form or ctx.all_caps:
            return None
        if " " in f.form.strip() and not ctx.title_case:
            return Mention(f.entity_id, start, stop, surface, method, 0.85)
        if _strong_evidence(ctx.raw, start, stop, f, hits):
            return Mention(f.entity_id, start, stop, surface, method, 0.9)
        if f.form in ACRONYMS:
            return None  # "CEO", "EU": never a company by itself
        short_caps = f.form.isupper() and f.form.isalpha() and len(f.form) <= 5
        if short_caps and start == ctx.first_word and not ctx.title_case and ctx.verb_follows(stop):
            # "BP cuts capital spending", "RBS fined over mis-selling", "IAG orders 50 jets": a short upper-case
            # name the catalogue holds, opening a sentence-case headline as the subject of a verb
            return Mention(f.entity_id, start, stop, surface, method, 0.8)
        if len(f.form) <= 2:
            # "BP profits jump", "GE shares fall": a short upper-case name needs a company noun right after it
            ok = short_caps and ctx.next_word(stop) in NEXT_NOUNS
            return Mention(f.entity_id, start, stop, surface, method, 0.8) if ok else None
        if ctx.capitalised_before(start):
            return None  # the tail of a longer proper noun: "New York City", "Sales Target"
        if start == ctx.first_word or ctx.title_case:
            # capitals prove nothing at the start of a sentence or in Title Case: a company noun must follow,
            # or a company verb and a finance cue elsewhere ("Next raises guidance", not "Next week's vote")
            after = ctx.next_word(stop)
            ok = after in NEXT_NOUNS or (after in VERBS and ctx.has_cue(start, stop))
        else:
            ok = ctx.has_cue(start, stop)
        if ok:
            return Mention(f.entity_id, start, stop, surface, method, 0.8)
        return None


def _strong_evidence(raw: str, start: int, stop: int, f: _Form, hits) -> bool:
    """A possessive, a legal suffix, or the same company's ticker elsewhere in the text."""
    after = raw[stop : stop + 16].lower()
    if after.startswith("'s"):
        return True
    words = after.split()
    if words and words[0].rstrip(",;:") in _SUFFIXES and after[:1] == " ":
        return True
    return any(h[2].entity_id == f.entity_id and h[2].kind == "ticker" and h[0] != start for h in hits)


class _Context:
    """Facts about one text, computed once for all its hits."""

    def __init__(self, raw: str, folded: str) -> None:
        self.raw, self.folded = raw, folded
        letters = [c for c in raw if c.isalpha()]
        self.all_caps = len(letters) >= 12 and sum(c.isupper() for c in letters) / len(letters) > 0.9
        words = [(m.start(), m.group()) for m in _WORD.finditer(raw)]
        long_words = [w for _, w in words if len(w) > 3]
        self.title_case = len(long_words) >= 3 and sum(w[0].isupper() for w in long_words) / len(long_words) > 0.7
        self.first_word = words[0][0] if words else 0
        self.words = [(s, s + len(w), w.lower().strip("'.-")) for s, w in words]

    def capitalised_before(self, start: int) -> bool:
        prev = [(s, e, w) for s, e, w in self.words if e <= start]
        if not prev or start - prev[-1][1] > 1 or prev[-1][0] == self.first_word:
            return False  # a sentence's first word is capitalised whatever it is
        return self.raw[prev[-1][0]].isupper()

    def next_word(self, stop: int) -> str:
        return next((w for s, _, w in self.words if s >= stop), "")

    def verb_follows(self, stop: int) -> bool:
        """The next word reads as a headline verb: a known one, "to" ("BP to sell"), or a lower-case word in -s or
        -ed ("orders", "fined")."""
        nxt = next(((s, w) for s, _, w in self.words if s >= stop), None)
        if nxt is None or not self.raw[nxt[0]].islower():
            return False
        w = nxt[1]
        return (
            w in VERBS or w == "to" or (len(w) > 3 and (w.endswith("ed") or (w.endswith("s") and not w.endswith("ss"))))
        )

    def has_cue(self, start: int, stop: int) -> bool:
        return any(w in CUES for s, e, w in self.words if e <= start or s >= stop)


# Which of several entities a shared form goes to, by the stated order (docs/companies.md#ambiguity): index
# constituents (the parent company, the primary listing) before the wide lists, Indian listings (often a
# subsidiary of a foreign parent: "GlaxoSmithKline Pharmaceuticals") last.
_SOURCE_RANK = {"user": 0, "pytickersymbols": 1, "curated": 2, "ftse100-history": 3, "financedatabase": 4, "sentfin": 5}


def rank_key(catalogue: Catalogue, entity_id: str) -> tuple:
    """Order of preference for a form several entities share: live before delisted, then the source (index
    members are the larger, parent companies), then the one listed on more venues, then the id (stable)."""
    e = catalogue.entities[entity_id]
    return (e.delisted, _SOURCE_RANK.get(e.source, 9), -len(e.tickers), e.id)


def _resolve_shared(forms: list[_Form], ranked: tuple[str, ...]) -> list[_Form]:
    """A surface form of several entities (``ranked`` by ``rank_key``) goes to one, with all its forms of that
    text: the entity whose canonical name it is, else the only one listed under it as a ticker, else the first
    ranked. The others stay as candidates (``Linker.others``)."""
    named = {f.entity_id for f in forms if f.kind == "name"}
    listed = {f.entity_id for f in forms if f.kind == "ticker"}
    best = next(iter(named)) if len(named) == 1 else next(iter(listed)) if len(listed) == 1 else ranked[0]
    return [f for f in forms if f.entity_id == best]


def _longest(mentions: list[Mention], raw: str) -> list[Mention]:
    """Drop mentions inside a longer one, and a ticker right after its own company's name
    ("Johnson & Johnson <JNJ.N>" is one mention); keep position order."""
    mentions.sort(key=lambda m: (m.start, -(m.end - m.start), -m.confidence))
    out: list[Mention] = []
    for m in mentions:
        if out and m.start < out[-1].end:
            if m.end - m.start > out[-1].end - out[-1].start:
                out[-1] = m
            continue
        prev = out[-1] if out else None
        if (
            prev
            and m.method in ("ticker-context", "cashtag", "ticker")
            and prev.entity_id == m.entity_id
            and prev.method in ("name", "alias")
            and _GLUE.fullmatch(raw[prev.end : m.start])
        ):
            continue
        out.append(m)
    return out


def link_many(linker: Linker, texts: Iterable[str]) -> list[list[Mention]]:
    return [linker.link(t) for t in texts]
