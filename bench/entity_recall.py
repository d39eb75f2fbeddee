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

Two finders on the same gold: the catalogue's rules alone (every headline), and the rules plus the mention
tagger (``pipeline/entities/detect.py``) on the held-out fifth the tagger never trained on (the rules are shown
on that fifth too, so the two columns compare like with like). A span the tagger found that no catalogue entry
holds counts as found (an unlinked company name, stored and counted like a linked one).

    .state/venv/bin/python -m bench.entity_recall [--limit N] [--model DIR | --rules-only] [--json]
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

GOLD = Path(__file__).resolve().parents[1] / "data" / "labeled" / "news" / "expert" / "companies_expert.csv"


def load(limit: int | None = None) -> list[dict]:
    """One record per headline: text, publisher, gold spans [(start, end, company)]."""
    from pipeline.entities.evaluate import expert_companies

    recs = expert_companies(GOLD)
    return recs[:limit] if limit else recs


def fold(text: str) -> str:
    from pipeline.entities.link import name_key

    return name_key(str(text))


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


def score(finder, recs: list[dict], cat) -> dict:
    """Recall and precision overall, per publisher, and the misses by class (``finder``: a detect.Finder)."""
    from pipeline.entities.evaluate import span_scores

    forms, former = surface_index(cat)
    found = finder.find_many([r["text"] for r in recs])
    by_pub: dict[str, list[int]] = defaultdict(list)
    misses: Counter = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    for i, (rec, mentions) in enumerate(zip(recs, found)):
        by_pub[rec["publisher"]].append(i)
        for s, e, name in rec["gold"]:
            if not any(m.start < e and s < m.end for m in mentions):
                k = miss_class(rec["text"][s:e] or name, forms, former)
                misses[k] += 1
                if len(examples[k]) < 8:
                    examples[k].append(rec["text"][s:e] or name)
    out = {
        "overall": span_scores(found, recs),
        "publishers": {
            p: span_scores([found[i] for i in idx], [recs[i] for i in idx]) for p, idx in sorted(by_pub.items())
        },
    }
    out["misses"] = {k: {"count": v, "examples": examples[k]} for k, v in misses.most_common()}
    return out


def report(res: dict) -> str:
    o = res["overall"]
    lines = [
        f"expert companies set: recall {o['recall']:.3f} ({o['found']:,} of {o['mentions']:,} mentions), "
        f"precision {o['precision']:.3f} ({o['found_spans']:,} linked spans)",
        "",
        "| publisher | mentions | recall | precision |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {p} | {v['mentions']} | {v['recall']:.3f} | {v['precision']:.3f} |" for p, v in res["publishers"].items()
    ]
    lines += ["", "| class of miss | mentions | examples |", "|---|---|---|"]
    lines += [f"| {k} | {v['count']} | {', '.join(v['examples'])} |" for k, v in res["misses"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import json

    from bench.peers import cpu_info
    from pipeline.entities import catalogue, detect
    from pipeline.entities.link import Linker

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="first N headlines only")
    ap.add_argument("--model", default=None, help="model directory with a mention tagger (default: the shipped one)")
    ap.add_argument("--rules-only", action="store_true")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    cat = catalogue.load()
    linker = Linker(cat)
    rules = detect.Finder(linker)
    recs = load(args.limit)
    held = [r for r in recs if detect.heldout(r["text"])]
    out = {"rules, every headline": score(rules, recs, cat), "rules, held-out fifth": score(rules, held, cat)}
    print("## Rules alone, every headline\n\n" + report(out["rules, every headline"]) + "\n")
    if not args.rules_only:
        model = args.model
        if model is None:
            from pipeline.classify.release import shipped

            model = shipped.materialize()
        finder = detect.Finder(linker, detect.MentionDetector.load(model))
        print(f"CPU: {json.dumps(cpu_info())}")
        t0 = time.perf_counter()
        out["rules + tagger, held-out fifth"] = score(finder, held, cat)
        rate = len(held) / (time.perf_counter() - t0)
        out["speed"] = {"tagger_headlines_per_s": round(rate, 1)}
        print("## Rules alone, held-out fifth\n\n" + report(out["rules, held-out fifth"]) + "\n")
        print("## Rules + tagger, held-out fifth\n\n" + report(out["rules + tagger, held-out fifth"]))
        print(f"\nrules + tagger: {rate:.1f} headlines/s on this CPU (the backbone's pass included)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
