"""Company linking on headlines from many publishers: the expert-labelled companies set, per publisher and per
class of miss.

``data/labeled/news/expert/companies_expert.csv``: 5,515 real headlines (2023 archive: WSJ, FT, Bloomberg,
Forbes, Telegraph, CNBC, Washington Post, Reuters, Wired; 2018-19 Reuters, CNBC, Guardian) with every company
they name, as written, annotated under the folder's RUBRIC.md. A gold mention counts as found when a linked
span overlaps it; a linked span is correct when it overlaps a gold span of its headline (precision over every
headline, those naming no company included). Each miss is put in one class, first that applies:

* ``not in the catalogue``: no catalogue name, alias or ticker equals the span (case and punctuation folded,
  a possessive or plural ``s`` dropped);
* ``short upper-case / ticker``: the span is one upper-case word of at most five letters ("BP", "RBS", "IAG");
* ``plural or possessive``: only the span without its ``'s``/``s`` is in the catalogue;
* ``shared by several entries``: the span names more than one catalogue entity;
* ``former name``: the span is a former name of the entity that holds it;
* ``rule refused``: in the catalogue, one entity, and a context rule said no.

    .state/venv/bin/python -m bench.entity_recall [--limit N]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd

GOLD = Path(__file__).resolve().parents[1] / "data" / "labeled" / "news" / "expert" / "companies_expert.csv"
_FOLD = re.compile(r"[^\w&]+")


def fold(text: str) -> str:
    return _FOLD.sub(" ", str(text).replace("’", "'").casefold()).strip()


def load(limit: int | None = None) -> list[dict]:
    """One record per headline: text, publisher, gold spans [(start, end, company)]."""
    df = pd.read_csv(GOLD, keep_default_na=False)
    out: dict[str, dict] = {}
    for r in df.itertuples(index=False):
        rec = out.setdefault(r.text, {"text": r.text, "publisher": r.origin, "gold": []})
        if r.company:
            rec["gold"].append((int(float(r.start)), int(float(r.end)), r.company))
    recs = list(out.values())
    return recs[:limit] if limit else recs


def surface_index(cat) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Folded form -> entity ids holding it (names, aliases, tickers' symbols); folded former name -> ids."""
    forms: dict[str, set[str]] = defaultdict(set)
    former: dict[str, set[str]] = defaultdict(set)
    for e in cat.entities.values():
        for f in (e.name, *e.aliases, *e.symbols):
            forms[fold(f)].add(e.id)
        for f in getattr(e, "former_names", ()) or ():
            former[fold(f)].add(e.id)
    return forms, former


def miss_class(span: str, forms: dict, former: dict) -> str:
    key = fold(span)
    stem = re.sub(r"('s|s'|s)$", "", key.replace(" 's", "'s")).strip()
    if key not in forms and stem not in forms:
        return "not in the catalogue"
    if re.fullmatch(r"[A-Z&]{1,5}", span.strip()):
        return "short upper-case / ticker"
    if key not in forms:
        return "plural or possessive"
    if len(forms[key]) > 1:
        return "shared by several entries"
    if key in former:
        return "former name"
    return "rule refused"


def score(linker, recs: list[dict], cat) -> dict:
    """Recall and precision overall, per publisher, and the misses by class."""
    forms, former = surface_index(cat)
    tot = Counter()
    pub: dict[str, Counter] = defaultdict(Counter)
    misses: Counter = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    for rec in recs:
        found = [(m.start, m.end) for m in linker.link(rec["text"])]
        p = rec["publisher"]
        for s, e, name in rec["gold"]:
            hit = any(a < e and s < b for a, b in found)
            for c in (tot, pub[p]):
                c["gold"] += 1
                c["found"] += hit
            if not hit:
                k = miss_class(rec["text"][s:e] or name, forms, former)
                misses[k] += 1
                if len(examples[k]) < 8:
                    examples[k].append(rec["text"][s:e] or name)
        for a, b in found:
            ok = any(a < e and s < b for s, e, _ in rec["gold"])
            for c in (tot, pub[p]):
                c["linked"] += 1
                c["correct"] += ok
    out = {"overall": _rates(tot), "publishers": {k: _rates(v) for k, v in sorted(pub.items())}}
    out["misses"] = {k: {"count": v, "examples": examples[k]} for k, v in misses.most_common()}
    return out


def _rates(c: Counter) -> dict:
    return {
        "gold": c["gold"],
        "found": c["found"],
        "recall": c["found"] / c["gold"] if c["gold"] else 0.0,
        "linked": c["linked"],
        "precision": c["correct"] / c["linked"] if c["linked"] else 0.0,
    }


def report(res: dict) -> str:
    o = res["overall"]
    lines = [
        f"expert companies set: recall {o['recall']:.3f} ({o['found']:,} of {o['gold']:,} mentions), "
        f"precision {o['precision']:.3f} ({o['linked']:,} linked spans)",
        "",
        "| publisher | mentions | recall | precision |",
        "|---|---|---|---|",
    ]
    lines += [f"| {p} | {v['gold']} | {v['recall']:.3f} | {v['precision']:.3f} |" for p, v in res["publishers"].items()]
    lines += ["", "| class of miss | mentions | examples |", "|---|---|---|"]
    lines += [f"| {k} | {v['count']} | {', '.join(v['examples'])} |" for k, v in res["misses"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from pipeline.entities import catalogue
    from pipeline.entities.link import Linker

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="first N headlines only")
    args = ap.parse_args(argv)
    cat = catalogue.load()
    print(report(score(Linker(cat), load(args.limit), cat)))


if __name__ == "__main__":
    main()
