"""Company linking and entity-targeted sentiment in one table.

Linking: precision and recall on held-out entity spans (FinEntity; SEntFiN's
test split), gold limited to catalogue names, and speed on 1 process, with
the real catalogue and with it padded to >= 5,000 names. The baseline in the
same run is a plain case-insensitive substring search for every surface form
(no boundaries, no context rules), which is what a naive linker does.

Entity sentiment (from the model's metadata, written by ``entities
train-head``): entity-level macro-F1 of the entity head against "every entity
inherits the story's predicted label", overall and on stories whose entities
disagree.

    .state/venv/bin/python -m bench.entities [--model DIR] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def naive_link(forms: dict[str, str], text: str) -> list:
    """Every folded surface form found anywhere in the folded text (the baseline)."""
    t = text.lower()
    out = []
    for form, eid in forms.items():
        i = t.find(form)
        if i >= 0:
            out.append((eid, i, i + len(form)))
    return out


class NaiveLinker:
    """The baseline through the same scorer: substring hits, no boundaries, no context rules."""

    def __init__(self, forms: dict[str, str]) -> None:
        self.forms = forms

    def link(self, text: str) -> list:
        from pipeline.entities.link import Mention

        return [Mention(e, s, en, text[s:en], "naive", 1.0) for e, s, en in naive_link(self.forms, text)]


class _Cached:
    """A finder's answers computed in one batch, served through ``link`` to the scorers."""

    def __init__(self, found: dict) -> None:
        self.found = found

    def link(self, text: str) -> list:
        return self.found[text]


def main(argv: list[str] | None = None) -> int:
    from bench.peers import cpu_info
    from pipeline.entities import catalogue, evaluate
    from pipeline.entities.link import Linker

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model directory with an entity head (default: the shipped one)")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args(argv)

    print(f"CPU: {json.dumps(cpu_info())}  cores visible: {os.cpu_count()}")
    cat = catalogue.load()
    t0 = time.perf_counter()
    linker = Linker(cat)
    build_s = time.perf_counter() - t0
    forms = sum(len(e.surface_forms()) + len(e.symbols) for e in cat.entities.values())
    print(
        f"catalogue: {len(cat.entities)} entities, {forms} surface forms (names, aliases, tickers); "
        f"automaton built in {build_s:.2f} s"
    )

    sets = {
        "finentity": evaluate.finentity(),
        "sentfin_test": evaluate.sentfin_test(),
        "sentivent": evaluate.sentivent_targets(),  # gold: annotated targets only (unannotated mentions count as false)
    }
    naive = NaiveLinker(evaluate.surface_index(cat))
    rows = []
    for name, exs in sets.items():
        evaluate.resolve(exs, cat)
        r = evaluate.linking_scores(linker, exs)
        b = evaluate.linking_scores(naive, exs[:400])  # the naive scan is slow: a fixed first 400 texts
        rows.append((name, r, b))
    print()
    print(f"{'set':<14}{'texts':>7}{'gold*':>7}{'P':>8}{'R':>8}{'F1':>8}   naive substring (first 400): P / R")
    for name, r, b in rows:
        print(
            f"{name:<14}{r['texts']:>7}{r['gold_mentions_in_catalogue']:>7}{r['precision']:>8.3f}{r['recall']:>8.3f}"
            f"{r['f1']:>8.3f}   {b['precision']:.3f} / {b['recall']:.3f}"
        )
    print(
        "  * gold mentions whose text names a catalogue entity (of "
        + ", ".join(f"{n}: {r['gold_mentions_all']}" for n, r, _ in rows)
        + " in all)"
    )
    print("  targets: precision >= 0.90, recall >= 0.80")
    print()
    print("recall per class of mention (gold count), and the share of all gold spans some link covers:")
    for name, exs in sets.items():
        classes = evaluate.by_class(linker, exs, cat)
        cells = ", ".join(f"{c} {v['recall']:.3f} ({v['gold']})" for c, v in sorted(classes.items()))
        print(f"  {name:<12} {cells}; any company covered {evaluate.any_company_recall(linker, exs):.3f}")

    from pipeline.classify.release import shipped
    from pipeline.entities import detect

    tagged = Path(args.model) if args.model else shipped.materialize()
    if (tagged / detect.HEAD_FILE).is_file():
        finder = detect.Finder(linker, detect.MentionDetector.load(tagged))
        print()
        print(f"rules + the mention tagger of {tagged.name} (same gold; an unlinked name on a catalogue gold span is")
        print("counted false, on a gold span the catalogue does not know it is not judged):")
        for name, exs in sets.items():
            t0 = time.perf_counter()
            cached = dict(zip([ex.text for ex in exs], finder.find_many([ex.text for ex in exs])))
            rate = len(exs) / (time.perf_counter() - t0)
            r = evaluate.linking_scores(_Cached(cached), exs)
            cover = evaluate.any_company_recall(_Cached(cached), exs)
            print(
                f"  {name:<12} P {r['precision']:.3f} R {r['recall']:.3f}; any company covered {cover:.3f}; "
                f"{rate:,.0f} texts/s with the backbone's pass ({finder.detector.clf.backend})"
            )
        recs = [r for r in evaluate.expert_companies() if detect.heldout(r["text"])]
        texts = [r["text"] for r in recs]
        for label, found in (("rules", [linker.link(t) for t in texts]), ("rules + tagger", finder.find_many(texts))):
            e = evaluate.span_scores(found, recs)
            print(
                f"  expert companies, held-out fifth, {label}: recall {e['recall']:.3f}, precision {e['precision']:.3f}"
            )
        print("  (per publisher and per class of miss: python -m bench.entity_recall)")

    texts = [ex.text for exs in sets.values() for ex in exs]
    headlines = [ex.text for ex in sets["sentfin_test"]]
    print()
    print("speed (one process, texts linked per second):")
    real = evaluate.speed(linker, headlines, args.seconds)
    padded_cat = evaluate.padded(cat, 5000)
    padded = Linker(padded_cat)
    pad = evaluate.speed(padded, headlines, args.seconds)
    longer = evaluate.speed(linker, texts, args.seconds)
    t0 = time.perf_counter()
    for t in headlines[:200]:
        naive.link(t)
    naive_rate = 200 / (time.perf_counter() - t0)
    print(f"  real catalogue ({len(cat.entities)} entities, {forms} forms), SEntFiN headlines: {real['per_s']:>9,}/s")
    pforms = sum(len(e.surface_forms()) + len(e.symbols) for e in padded_cat.entities.values())
    print(
        f"  padded catalogue ({len(padded_cat.entities)} entities, {pforms} forms), SEntFiN headlines: "
        f"{pad['per_s']:>9,}/s   target >= 5,000/s"
    )
    print(f"  real catalogue, headlines + FinEntity passages: {longer['per_s']:>9,}/s")
    print(f"  baseline: naive substring scan, real catalogue: {naive_rate:>9,.0f}/s")

    from pipeline.classify.model import modeldir
    from pipeline.classify.release import shipped

    model = Path(args.model) if args.model else None
    if model is None:
        try:
            model = shipped.SHIPPED_DIR
        except AttributeError:
            model = None
    meta = modeldir.read_meta(model) if model else {}
    report = (
        json.loads((Path(model) / modeldir.REPORT_JSON).read_text())
        if model and (Path(model) / modeldir.REPORT_JSON).exists()
        else {}
    )
    ent = report.get("entity")
    print()
    if not ent:
        print(f"entity sentiment: {model} has no entity-head report (run `python -m pipeline entities train-head`)")
        return 0
    print(f"entity sentiment, model {meta.get('version')} (macro-F1; baseline = story's predicted label):")
    print(f"{'set':<15}{'pairs':>7}{'head':>8}{'baseline':>10}{'disagree':>10}{'head':>8}{'baseline':>10}")
    for name in ("sentfin_valid", "sentfin_test", "finentity"):
        m = ent[name]
        print(
            f"{name:<15}{m['pairs']:>7}{m['entity_head_macro_f1']:>8.3f}{m['story_label_baseline_macro_f1']:>10.3f}"
            f"{m['disagreeing_pairs']:>10}{m['disagreeing_entity_head_macro_f1'] or 0:>8.3f}"
            f"{m['disagreeing_baseline_macro_f1'] or 0:>10.3f}"
        )
    print("  targets: head >= baseline overall; >= baseline + 0.10 on disagreeing stories")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
