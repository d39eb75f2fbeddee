"""``python -m pipeline entities ...``: validate, sync, list, link, predict, build-catalogue, train-head,
train-detector."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from pipeline.csvio import output_path, read_input_csv, write_csv
from pipeline.entities.catalogue import CatalogueError

log = logging.getLogger(__name__)


def _print(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _catalogue(args: argparse.Namespace):
    from pipeline.entities import catalogue

    return catalogue.load(Path(args.file) if getattr(args, "file", None) else None)


def cmd_validate(args: argparse.Namespace) -> int:
    from pipeline.alerts import rules

    cat = _catalogue(args)
    r = rules.load()
    unknown = sorted(set(r.entities) - set(cat.entities))
    if unknown:
        raise CatalogueError(f"alert rules name entities that are not in the catalogue: {unknown[:10]}")
    for route in r.routing.routes:
        missing = sorted(set(route.watchlists) - set(cat.watchlists))
        missing += sorted(set(route.companies) - set(cat.entities))
        if missing:
            raise CatalogueError(f"alert routing: route {route.name!r} names unknown watchlists or companies {missing}")
    _print(
        {
            "entities": len(cat.entities),
            "watchlists": {w.name: len(w.entities) for w in cat.watchlists.values()},
            "fingerprint": cat.fingerprint(),
            "alert_rules_per_entity": len(r.entities),
            "alert_routes": len(r.routing.routes),
        }
    )
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from pipeline import db
    from pipeline.entities import store
    from pipeline.entities.link import Linker

    cat = _catalogue(args)  # validated in full before the database is touched
    url = db.database_url()
    db.migrate(url)
    conn = db.connect(url)
    try:
        out = store.sync(conn, cat)
        if not args.no_link:
            out["links"] = store.link_pending(conn, Linker(cat))
    finally:
        conn.close()
    _print(out)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    cat = _catalogue(args)
    if args.watchlists:
        _print({w.name: {"description": w.description, "entities": list(w.entities)} for w in cat.watchlists.values()})
        return 0
    found = cat.find(args.search) if args.search else sorted(cat.entities.values(), key=lambda e: e.name)
    rows = [
        {"id": e.id, "name": e.name, "tickers": list(e.tickers), "aliases": list(e.aliases), "source": e.source}
        for e in found[: args.limit]
    ]
    _print({"matches": len(found), "shown": rows})
    return 0


LINK_CELL_CHARS = 2_000  # each input cell is copied into a mention row at most this long
LINK_MAX_MENTIONS = 50  # mentions written per input row (the first ones in reading order)


def cmd_link(args: argparse.Namespace) -> int:
    """One output row per mention. The input row's cells come along cut to LINK_CELL_CHARS (``row`` is its
    number in the input, ``start``/``end`` index its full text), so a huge cell cannot multiply the output."""
    import pandas as pd

    from pipeline.entities.link import Linker

    out_path = output_path(args.output, inputs=[args.input])
    df = read_input_csv(args.input, required=("text",))
    cat = _catalogue(args)
    finder = _finder(args, Linker(cat))
    found = finder.find_many([str(t) for t in df["text"]])
    rows, cut, capped = [], 0, 0
    for n, (_, row) in enumerate(df.iterrows()):
        mentions = found[n]
        capped += len(mentions) > LINK_MAX_MENTIONS
        raw = row.to_dict()
        cells = {k: v[:LINK_CELL_CHARS] if isinstance(v, str) else v for k, v in raw.items()}
        cut += bool(mentions) and cells != raw
        for m in mentions[:LINK_MAX_MENTIONS]:
            e = cat.entities.get(m.entity_id)  # None: a company name the catalogue does not hold
            rows.append(
                {
                    **cells,
                    "row": n,
                    "entity": e.name if e else m.span,
                    "entity_id": e.id if e else "",
                    "ticker": e.primary_ticker if e else "",
                    "span": m.span,
                    "start": m.start,
                    "end": m.end,
                    "method": m.method,
                    "confidence": m.confidence,
                    "candidates": "|".join(finder.linker.others(m)) if e else "",
                }
            )
    cols = list(df.columns) + [
        "row",
        "entity",
        "entity_id",
        "ticker",
        "span",
        "start",
        "end",
        "method",
        "confidence",
        "candidates",
    ]
    write_csv(pd.DataFrame(rows, columns=cols), out_path)
    _print(
        {
            "texts": len(df),
            "mentions": len(rows),
            "output": str(out_path),
            "catalogue": len(cat.entities),
            "unlinked_names": sum(not r["entity_id"] for r in rows),
            "detector": finder.tag or "off (rules only)",
            "cells_cut": cut,
            "rows_over_mention_cap": capped,
        }
    )
    return 0


def _finder(args: argparse.Namespace, linker):
    """The rules plus the model's mention tagger: ``--model``, else the shipped model (rebuilt under the state
    folder once); rules alone with ``--rules-only`` or when that model has no tagger."""
    from pipeline.entities.detect import HEAD_FILE, Finder, MentionDetector

    if args.rules_only:
        return Finder(linker)
    if args.model:
        model_dir = Path(args.model)
    else:
        from pipeline.classify.release import shipped

        if not (shipped.SHIPPED_DIR / HEAD_FILE).is_file():
            return Finder(linker)
        model_dir = shipped.materialize()
    if not (model_dir / HEAD_FILE).is_file():
        log.warning("%s has no mention tagger: linking by the catalogue's rules only", model_dir)
        return Finder(linker)
    return Finder(linker, MentionDetector.load(model_dir, device=args.device))


def pairs_for(df, cat) -> list:
    """(text, entity) rows -> Pairs: the entity as written, else any surface form of the catalogue entity it names."""
    from pipeline.entities.link import Linker
    from pipeline.entities.sentiment import Pair, locate

    linker = Linker(cat)
    pairs = []
    for text, entity in zip(df["text"].astype(str), df["entity"].astype(str)):
        s, e = locate(text, entity)
        if s < 0:
            ids = {x.id for x in cat.find(entity)[:1]}
            hit = next((m for m in linker.link(text) if m.entity_id in ids), None)
            if hit:
                s, e = hit.start, hit.end
        pairs.append(Pair(text, s, e))
    return pairs


def cmd_predict(args: argparse.Namespace) -> int:
    import pandas as pd

    from pipeline.entities.catalogue import load
    from pipeline.entities.sentiment import EntityScorer

    out_path = output_path(args.output, inputs=[args.input])
    df = read_input_csv(args.input, required=("text", "entity"))
    scorer = EntityScorer.load(args.model, device=args.device)  # a model without an entity head fails here
    pairs = pairs_for(df, load())
    res = pd.DataFrame(scorer.score(pairs, batch_size=args.batch_size), index=df.index)
    out = pd.concat([df, res], axis=1)
    write_csv(out, out_path)
    _print(
        {
            "rows": len(out),
            "found": int(out["found"].sum()),
            "output": str(out_path),
            "model": scorer.clf.meta["version"],
            "sentiment_counts": out["sentiment"].value_counts().to_dict(),
        }
    )
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from pipeline.entities import build

    out = build.build(Path(args.sentfin_list), equities=Path(args.equities), ftse_history=Path(args.ftse_history))
    if args.common_words:
        out["common_words"] = build.write_common_words(args.base)
    _print(out)
    return 0


def cmd_train_detector(args: argparse.Namespace) -> int:
    from pipeline.entities.train_detector import train_detector

    _print(train_detector(args.model, device=args.device, epochs=args.epochs))
    return 0


def cmd_train_head(args: argparse.Namespace) -> int:
    from pipeline.entities.train_head import train_head

    _print(train_head(args.model, device=args.device))
    return 0


def add_parser(sub) -> None:
    from pipeline.classify.datasets.sources import DATA_ROOT
    from pipeline.entities.build import FINANCEDATABASE, FTSE_HISTORY

    p = sub.add_parser("entities", help="company catalogue, watchlists, linking and entity sentiment")
    esub = p.add_subparsers(dest="entities_command", required=True)
    q = esub.add_parser("validate", help="validate the catalogue, config/entities.yaml and the alert rules")
    q.add_argument("--file", help="user entities file (default: FINSENT_ENTITIES_FILE or config/entities.yaml)")
    q.set_defaults(func=cmd_validate)
    q = esub.add_parser("sync", help="load the validated catalogue and watchlists into PostgreSQL, re-link stories")
    q.add_argument("--file")
    q.add_argument("--no-link", action="store_true", help="sync only; the hourly run links later")
    q.set_defaults(func=cmd_sync)
    q = esub.add_parser("list", help="list or search entities (name, alias, ticker), or the watchlists")
    q.add_argument("search", nargs="?", default="")
    q.add_argument("--file")
    q.add_argument("--watchlists", action="store_true")
    q.add_argument("--limit", type=int, default=50)
    q.set_defaults(func=cmd_list)
    q = esub.add_parser("link", help="CSV with 'text' -> one row per company mention (linked or a name)")
    q.add_argument("--input", required=True)
    q.add_argument("--output", required=True)
    q.add_argument("--file")
    q.add_argument("--model", default=None, help="model directory whose mention tagger to use (default: shipped)")
    q.add_argument("--rules-only", action="store_true", help="the catalogue's rules alone, no model")
    q.add_argument("--device", default=None)
    q.set_defaults(func=cmd_link)
    q = esub.add_parser("predict", help="CSV with 'text' and 'entity' -> per-entity sentiment")
    q.add_argument("--model", required=True)
    q.add_argument("--input", required=True)
    q.add_argument("--output", required=True)
    q.add_argument("--device", default=None)
    q.add_argument("--batch-size", type=int, default=32)
    q.set_defaults(func=cmd_predict)
    q = esub.add_parser("build-catalogue", help="regenerate data/entities/catalogue.csv (needs pytickersymbols)")
    q.add_argument("--sentfin-list", default=str(DATA_ROOT / "labeled" / "sentfin" / "entity_list_comprehensive.csv"))
    q.add_argument("--common-words", action="store_true", help="also regenerate common_words.txt from the base model")
    q.add_argument("--equities", default=str(FINANCEDATABASE), help="FinanceDatabase equities.csv")
    q.add_argument("--ftse-history", default=str(FTSE_HISTORY), help="FTSE 100 names since 1984 (CSV)")
    q.add_argument("--base", default=None)
    q.set_defaults(func=cmd_build)
    q = esub.add_parser("train-detector", help="fit the mention tagger on the expert companies set, report")
    q.add_argument("--model", required=True)
    q.add_argument("--device", default=None)
    q.add_argument("--epochs", type=int, default=6)
    q.set_defaults(func=cmd_train_detector)
    q = esub.add_parser("train-head", help="fit the entity head on SEntFiN, write it beside the model, report")
    q.add_argument("--model", required=True)
    q.add_argument("--device", default=None)
    q.set_defaults(func=cmd_train_head)
