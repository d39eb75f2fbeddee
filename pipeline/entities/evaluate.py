"""Linking quality on held-out entity spans: FinEntity (Reuters-style news) and SEntFiN's test split.

Gold mentions count only where their text names a catalogue entity (the issue's
"limited to catalogue names"); a gold span the catalogue does not know is left
out of both recall and precision. A predicted mention is right when it overlaps
a gold span of the same entity, wrong when it overlaps no gold span at all.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.classify.datasets.sources import DATA_ROOT, parse_decisions, registry
from pipeline.entities.catalogue import Catalogue, Entity
from pipeline.entities.link import ACRONYMS, Linker, Mention, _fold, common_words

FINENTITY = DATA_ROOT / "labeled" / "news" / "finentity" / "FinEntity.json"
LABELS = {"positive": "positive", "negative": "negative", "neutral": "neutral"}


@dataclass
class Gold:
    start: int
    end: int
    text: str
    label: str
    entity_id: str | None = None  # resolved against the catalogue; None = not a catalogue name


@dataclass
class Example:
    id: str
    text: str
    gold: list[Gold] = field(default_factory=list)


def finentity(path: Path = FINENTITY) -> list[Example]:
    out = []
    for i, row in enumerate(json.loads(Path(path).read_text())):
        text = row["content"]
        gold = [
            Gold(int(a["start"]), _with_code(text, int(a["end"])), a["value"], LABELS[a["label"].lower()])
            for a in row.get("annotations") or []
        ]
        out.append(Example(f"finentity:{i}", row["content"], gold))
    return out


_CODE = re.compile(r"(?:,?\s+(?:&\s*Co|Group|Inc|Corp|Co|Ltd|plc)\.?)*\s*[<(][^<>()]{1,24}[>)]")


def _with_code(text: str, end: int) -> int:
    """FinEntity annotates "Apple Inc" and leaves the Reuters code after it ("<AAPL.O>") out: the code is the
    same mention, so a link on it is judged against that gold span."""
    m = _CODE.match(text, end)
    return m.end() if m else end


def sentfin_test() -> list[Example]:
    """SEntFiN's committed test split; gold strings located in the headline (first occurrence, any case)."""
    src = registry()["sentfin"]
    ids = {int(x) for x in src.test_ids.read_text().split()}
    df = pd.read_csv(src.path)
    df = df[df["S No."].isin(ids)]
    out = []
    for sid, title, decisions in zip(df["S No."], df["Title"], df["Decisions"]):
        folded = _fold(title)
        gold = []
        for ent, lab in parse_decisions(decisions):
            pos = _find_word(folded, _fold(ent))
            gold.append(Gold(pos, pos + len(ent) if pos >= 0 else -1, ent, lab))
        out.append(Example(f"sentfin:{sid}", title, gold))
    return out


def _find_word(folded: str, needle: str) -> int:
    m = re.search(r"(?<![0-9a-z])" + re.escape(needle) + r"(?![0-9a-z])", folded)
    return m.start() if m else -1


SENTIVENT_TARGETS = DATA_ROOT / "labeled" / "news" / "sentivent_en" / "sentivent_en_targets.csv.gz"
_GENERIC = re.compile(r"(?i)^(the|a|an|its|their|this|that|these|those|shares?|stocks?|investors?|analysts?)\b")


def sentivent_targets(path: Path = SENTIVENT_TARGETS) -> list[Example]:
    """SENTiVENT's (sentence, target) pairs, one example per sentence; targets that are proper names only
    (capitalised, not "the company" or "shares"), located in the sentence. Absent (no copy here): []."""
    if not Path(path).is_file():
        return []
    df = pd.read_csv(path)
    out = []
    for i, (text, group) in enumerate(df.groupby("text", sort=False)):
        folded = _fold(text)
        gold = []
        for target, lab in zip(group["target"].astype(str), group["label"].astype(str)):
            if not target[:1].isupper() or _GENERIC.match(target):
                continue
            pos = _find_word(folded, _fold(target))
            if pos >= 0:
                gold.append(Gold(pos, pos + len(target), target, LABELS.get(lab, "neutral")))
        out.append(Example(f"sentivent:{i}", text, gold))
    return out


def mention_class(g: Gold, cat: Catalogue) -> str:
    """How a gold mention names its company: former name, ticker, common word / short capitals, full name,
    or short name (any other alias)."""
    e = cat.entities.get(g.entity_id or "")
    if e is None:
        return "unknown"
    key = _gold_key(g.text)
    if key in {_fold(f) for f in e.former_names}:
        return "former name"
    if key in {_fold(s) for s in e.symbols} and key not in {_fold(f) for f in e.surface_forms()}:
        return "ticker"
    from pipeline.entities.link import is_ambiguous

    if is_ambiguous(g.text, common_words()) or len(g.text) <= 4:
        return "common word / short"
    if key == _fold(e.name):
        return "full name"
    return "short name"


def by_class(linker: Linker, examples: list[Example], cat: Catalogue) -> dict[str, dict]:
    """Recall per mention class, and precision of the mentions whose gold span has that class."""
    out: dict[str, dict] = {}
    for ex in examples:
        mentions = linker.link(ex.text)
        for g in ex.gold:
            if not g.entity_id:
                continue
            c = out.setdefault(mention_class(g, cat), {"gold": 0, "found": 0, "wrong": 0})
            c["gold"] += 1
            hits = [m for m in mentions if _overlaps(m, g)]
            c["found"] += any(m.entity_id == g.entity_id for m in hits)
            c["wrong"] += any(m.entity_id != g.entity_id for m in hits)
    for c in out.values():
        c["recall"] = round(c["found"] / max(1, c["gold"]), 3)
        c["precision"] = round(c["found"] / max(1, c["found"] + c["wrong"]), 3)
    return out


def any_company_recall(linker: Linker, examples: list[Example]) -> float:
    """Share of all gold company spans (known to the catalogue or not) that some link overlaps: coverage."""
    n = hit = 0
    for ex in examples:
        mentions = linker.link(ex.text)
        for g in ex.gold:
            if g.start < 0:
                continue
            n += 1
            hit += any(_overlaps(m, g) for m in mentions)
    return round(hit / max(1, n), 4)


def surface_index(cat: Catalogue) -> dict[str, str]:
    """Folded name/alias/ticker -> entity id, for forms that name exactly one entity."""
    seen: dict[str, set[str]] = {}
    words = common_words()
    for e in cat.entities.values():
        symbols = [s for s in e.symbols if len(s) >= 3 and s not in ACRONYMS and s.lower() not in words]
        for f in (*e.surface_forms(), *symbols):
            seen.setdefault(_fold(" ".join(f.split())), set()).add(e.id)
    return {k: next(iter(v)) for k, v in seen.items() if len(v) == 1}


def _gold_key(text: str) -> str:
    """A gold span as the catalogue index keys it (folded, single-spaced, possessive dropped)."""
    return _fold(" ".join(text.split())).removesuffix("'s").strip()


def resolve(examples: list[Example], cat: Catalogue) -> None:
    index = surface_index(cat)
    for ex in examples:
        for g in ex.gold:
            g.entity_id = index.get(_gold_key(g.text))


def _overlaps(m: Mention, g: Gold) -> bool:
    return g.start >= 0 and m.start < g.end and g.start < m.end


def linking_scores(linker: Linker, examples: list[Example]) -> dict:
    """Micro precision/recall over mentions (see the module docstring for what counts)."""
    tp_r = n_gold = tp_p = fp = 0
    errors: list[dict] = []
    for ex in examples:
        mentions = linker.link(ex.text)
        gold = [g for g in ex.gold if g.entity_id]
        n_gold += len(gold)
        for g in gold:
            if any(m.entity_id == g.entity_id and (_overlaps(m, g) or g.start < 0) for m in mentions):
                tp_r += 1
            elif len(errors) < 40:
                errors.append({"kind": "missed", "text": ex.text[:160], "gold": g.text})
        for m in mentions:
            hit = [g for g in ex.gold if _overlaps(m, g)] or [
                g for g in ex.gold if g.start < 0 and g.entity_id == m.entity_id
            ]
            if not hit:
                fp += 1
                if len(errors) < 80:
                    errors.append({"kind": "false", "text": ex.text[:160], "span": m.span, "entity": m.entity_id})
            elif any(g.entity_id == m.entity_id for g in hit):
                tp_p += 1
            elif all(g.entity_id is None for g in hit):
                continue  # overlaps a company the catalogue does not know by that name: not judged
            else:
                fp += 1
    precision = tp_p / max(1, tp_p + fp)
    recall = tp_r / max(1, n_gold)
    return {
        "texts": len(examples),
        "gold_mentions_in_catalogue": n_gold,
        "gold_mentions_all": sum(len(ex.gold) for ex in examples),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / max(1e-9, precision + recall), 4),
        "errors": errors,
    }


def padded(cat: Catalogue, minimum: int) -> Catalogue:
    """The catalogue plus synthetic companies up to ``minimum`` entities (for the speed figure only)."""
    ents = dict(cat.entities)
    i = 0
    while len(ents) < minimum:
        eid = f"synthetic-{i:05d}"
        ents[eid] = Entity(eid, f"Zyntheta Holdings {i:05d} Corp", (f"Zyntheta {i:05d}",), (f"NYSE:ZY{i:05d}",))
        i += 1
    return Catalogue(entities=ents, watchlists=dict(cat.watchlists))


def speed(linker: Linker, texts: list[str], min_seconds: float = 2.0) -> dict:
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < min_seconds:
        for t in texts:
            linker.link(t)
        n += len(texts)
    dt = time.perf_counter() - t0
    return {"headlines": n, "seconds": round(dt, 2), "per_s": round(n / dt)}


EXPERT_COMPANIES = DATA_ROOT / "labeled" / "news" / "expert" / "companies_expert.csv"


def expert_companies(path: Path = EXPERT_COMPANIES) -> list[dict]:
    """One record per headline of the expert companies set: text, publisher, gold [(start, end, company)]."""
    df = pd.read_csv(path, keep_default_na=False)
    out: dict[str, dict] = {}
    for r in df.itertuples(index=False):
        rec = out.setdefault(r.text, {"text": r.text, "publisher": r.origin, "gold": []})
        if r.company:
            rec["gold"].append((int(float(r.start)), int(float(r.end)), r.company))
    return list(out.values())


def span_scores(found: Sequence[Sequence[Mention]], recs: Sequence[dict]) -> dict:
    """Recall (a gold span overlapped by a found one) and precision (a found span overlapping a gold one) of
    the mentions ``found`` in each record (aligned with ``recs``), those naming no company included."""
    gold = hit = spans = correct = 0
    for mentions, rec in zip(found, recs, strict=True):
        gold += len(rec["gold"])
        hit += sum(any(m.start < e and s < m.end for m in mentions) for s, e, _ in rec["gold"])
        spans += len(mentions)
        correct += sum(any(m.start < e and s < m.end for s, e, _ in rec["gold"]) for m in mentions)
    return {
        "mentions": gold,
        "found": hit,
        "recall": hit / gold if gold else 0.0,
        "found_spans": spans,
        "precision": correct / spans if spans else 0.0,
    }
