"""Operator CLI: ``python -m pipeline <command>``. JSON on stdout, logs on stderr."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline import config, db, logs
from pipeline.csvio import InputError, output_path, read_input_csv, write_csv
from pipeline.redact import redact


def _print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def cmd_db(args: argparse.Namespace) -> int:
    url = db.database_url()
    if args.action == "migrate":
        applied = db.migrate(url)
        _print_json({"applied": applied, "database": redact(url)})
    elif args.action == "url":
        print(url)
    elif args.action == "grant-dashboard":
        if not args.role:
            raise InputError("grant-dashboard needs --role LOGIN_ROLE")
        db.grant_dashboard(url, args.role)
        _print_json({"granted": "finsent_dashboard", "to": args.role})
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from pipeline.ingest.run import ingest

    url = db.database_url()
    db.migrate(url)
    summary = ingest(args.feeds, database_url=url, run_key=args.run_key)
    _print_json(summary)
    return 0 if summary["totals"]["feeds_ok"] or not summary["totals"]["feeds"] else 1


def cmd_train(argv: Sequence[str]) -> int:
    from dataclasses import dataclass

    from transformers import HfArgumentParser, TrainingArguments

    from pipeline.classify.training.arguments import TRAINER_DEFAULTS, RecipeArguments
    from pipeline.lifecycle import train_and_register

    @dataclass
    class RunOptions:
        evaluate: bool = True  # --no_evaluate skips the held-out report (and so the promotion gate)
        promote: bool = True  # --no_promote registers without activating
        force: bool = False  # promote even if it scores below the active model
        entity_head: bool = False  # also fit the entity head (the gate needs it once the active model has one)

    parser = HfArgumentParser((RecipeArguments, TrainingArguments, RunOptions), prog="python -m pipeline train")
    parser.set_defaults(output_dir="unused", report_to=[], **TRAINER_DEFAULTS)  # this project's defaults
    args, targs, opts = parser.parse_args_into_dataclasses(args=list(argv))
    _print_json(train_and_register(args, targs, opts.evaluate, opts.promote, opts.force, opts.entity_head))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline.classify.evaluation.evaluate import evaluate

    report = evaluate(args.model, batch_size=args.batch_size, baselines=not args.no_baselines, device=args.device)
    table = {}
    for name, sysm in report["systems"].items():
        if "skipped" in sysm:
            table[name] = sysm
            continue
        row = {set_name: round(m["macro_f1"], 4) for set_name, m in sysm["sets"].items()}
        if "news_pooled" in sysm:
            row["news_pooled"] = round(sysm["news_pooled"]["macro_f1"], 4)
        table[name] = row
    _print_json(
        {
            "version": report["version"],
            "report": str(Path(args.model) / "report.md"),
            "macro_f1": table,
            "calibration": report["calibration"],
        }
    )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import pandas as pd

    from pipeline.classify.model.predict import Classifier
    from pipeline.classify.model.text import prepare_text

    out_path = output_path(args.output, inputs=[args.input])
    df = read_input_csv(args.input, required=("text",))
    clf = Classifier.load(args.model, device=args.device)  # strict: a damaged model fails here, before any work
    texts = [prepare_text(str(t)) if isinstance(t, str) else "" for t in df["text"]]
    preds = pd.DataFrame(clf.predict(texts, batch_size=args.batch_size, progress=True).rows(), index=df.index)
    out = pd.concat([df, preds], axis=1)
    write_csv(out, out_path)
    _print_json(
        {
            "rows": len(out),
            "output": str(out_path),
            "model": clf.meta["version"],
            "sentiment_counts": out["sentiment"].value_counts().to_dict(),
        }
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from pipeline.classify.release import registry

    if args.action in ("ship", "install", "reproduce"):
        return _models_shipped(args)
    url = db.database_url()
    db.migrate(url)
    with db.transaction(url) as conn:
        if args.action == "list":
            _print_json(registry.list_models(conn))
            return 0
        if args.action == "register":
            _print_json({"registered": registry.register(conn, args.target)})
            return 0

        try:
            _print_json(registry.promote(conn, args.target, force=args.force))
        except registry.PromotionRefused as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 3
    return 0


def _models_shipped(args: argparse.Namespace) -> int:
    from pipeline import lifecycle
    from pipeline.classify.release import shipped

    if args.action == "ship":
        if not args.target:
            raise InputError("models ship needs the trained model directory")
        out = lifecycle.ship(args.target, args.out or shipped.SHIPPED_DIR, entity_head=args.entity_head)
        _print_json({"shipped": str(out), **shipped.summary(out)})
    elif args.action == "install":
        _print_json(lifecycle.install_shipped(if_none_active=args.if_none_active))
    else:
        _print_json(lifecycle.reproduce_shipped())
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from pipeline.classify.score import score_pending

    url = db.database_url()
    db.migrate(url)
    _print_json(
        score_pending(
            url, max_articles=args.limit, batch_size=args.batch_size, device=args.device, chunk_size=args.chunk_size
        )
    )
    return 0


def cmd_aggregate(args: argparse.Namespace) -> int:
    from pipeline import windows
    from pipeline.alerts.refresh import refresh
    from pipeline.classify.release.registry import NoActiveModel

    start, end = windows.checked(args.start, args.end, "--start/--end: ")  # before any work
    url = db.database_url()
    db.migrate(url)
    conn = db.connect(url)
    try:
        out = refresh(conn, (start, end), model=args.model, judge=args.detect)
    except NoActiveModel:
        print("error: no active model (pass --model VERSION)", file=sys.stderr)
        return 2
    finally:
        conn.close()
    del out["span"]
    _print_json({**out, "start": start, "end": end})
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """``history import``: store a headline archive; ``history replay``: also score and judge it hour by hour."""
    from pipeline import replay
    from pipeline.ingest.headlines import import_csv

    if args.action == "import":
        from pipeline import windows

        window = windows.bounds(args.start, args.end)
        url = db.database_url()
        db.migrate(url)
        _print_json(import_csv(args.csv, database_url=url, window=window))
        return 0
    out = replay.replay(args.csv, start=args.start, end=args.end, rules_file=args.rules)
    if args.format == "json":
        _print_json(out)
    elif args.format == "csv":
        sys.stdout.write(replay.as_csv(out["alerts"]))
    else:
        print(replay.as_table(out["alerts"]))
        facts = {k: out[k] for k in ("span", "hours_judged", "seconds") if k in out}
        print(json.dumps({"imported": out["imported"], **facts}, default=str), file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline import status

    url = db.database_url()
    db.migrate(url)
    out = status.report(url)
    _print_json(out)
    return 1 if out["feeds"]["failing"] and args.strict else 0


def cmd_metrics(args: argparse.Namespace) -> int:
    """Prometheus figures: to a textfile (node_exporter), to stdout, or served on 127.0.0.1."""
    from pipeline import metrics

    url = db.database_url()
    if args.serve:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                conn = db.connect(url)
                try:
                    body = metrics.render(conn)
                finally:
                    conn.close()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

        print(f"serving http://{args.bind}:{args.serve}/metrics", file=sys.stderr)
        ThreadingHTTPServer((args.bind, args.serve), Handler).serve_forever()
        return 0
    conn = db.connect(url)
    try:
        if args.textfile:
            _print_json({"written": str(metrics.write_textfile(conn, args.textfile))})
        else:
            sys.stdout.write(metrics.render(conn).decode())
    finally:
        conn.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline import demo

    _print_json(demo.run())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("db", help="database administration")
    p.add_argument(
        "action",
        choices=["migrate", "url", "grant-dashboard"],
        help="migrate: apply sql/ migrations; url: print the URI; grant-dashboard: let --role act as the dashboard",
    )
    p.add_argument("--role", help="grant-dashboard: the login role the dashboard connects as")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("ingest", help="one ingestion pass over a feed registry")
    p.add_argument("--feeds", default=str(config.load().feeds_file), help="registry YAML (default: %(default)s)")
    p.add_argument("--run-key", default=None, help="label stored with the run (e.g. a ticket id)")
    p.set_defaults(func=cmd_ingest)

    sub.add_parser("train", help="fine-tune, evaluate, register and promote (see: train --help)", add_help=False)

    p = sub.add_parser("evaluate", help="held-out report with TF-IDF+LR and VADER baselines")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    p.add_argument("--no-baselines", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="label a CSV with a 'text' column")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "models",
        help="model registry: list, register DIR, promote VERSION [--force], ship DIR (export the compact delta), "
        "install (the shipped model), reproduce (train the shipped recipe from scratch)",
    )
    p.add_argument("action", choices=["list", "register", "promote", "ship", "install", "reproduce"])
    p.add_argument("--out", default=None, help="ship: output folder (default: data/model)")
    p.add_argument("target", nargs="?", help="model directory (register) or version (promote)")
    p.add_argument("--force", action="store_true", help="promote even if it scores below the active model")
    p.add_argument("--if-none-active", action="store_true", help="install: only when no model is active yet")
    p.add_argument(
        "--entity-head",
        action="store_true",
        help="ship: also fit the entity head on the rebuilt form and ship it (the company rule in use is kept)",
    )
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("classify", help="score stored stories that the active model has not scored")
    p.add_argument("--limit", type=int, default=None, help="at most this many stories")
    p.add_argument("--chunk-size", type=int, default=512, help="stories per committed chunk")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("aggregate", help="rebuild hourly stats for [start, end) and optionally detect surges")
    p.add_argument("--start", required=True, help="ISO 8601 (UTC if no zone)")
    p.add_argument("--end", required=True, help="ISO 8601, exclusive")
    p.add_argument("--model", default=None, help="model version (default: the active one)")
    p.add_argument("--detect", action="store_true", help="also judge every hour and open/update/resolve alerts")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("history", help="import a headline archive (CSV) or replay it: score and judge hour by hour")
    p.add_argument("action", choices=["import", "replay"])
    p.add_argument("--csv", required=True, help="CSV (or .gz) with published, source, title; optional url, summary")
    p.add_argument("--start", default=None, help="only rows published at or after this (ISO 8601, UTC if no zone)")
    p.add_argument("--end", default=None, help="only rows published before this")
    p.add_argument(
        "--rules", default=None, help="replay: alert rules file to judge with (default: FINSENT_ALERT_RULES)"
    )
    p.add_argument("--format", choices=["table", "csv", "json"], default="table", help="replay: how to print alerts")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("status", help="feed health, last runs, unscored backlog, active model, alerts")
    p.add_argument("--strict", action="store_true", help="exit 1 when any feed is failing (for monitoring)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("metrics", help="Prometheus metrics from the database: stdout, --textfile PATH or --serve PORT")
    p.add_argument("--textfile", help="write node_exporter's textfile format here (atomically)")
    p.add_argument("--serve", type=int, help="serve /metrics on PORT")
    p.add_argument("--bind", default="127.0.0.1", help="address to serve on (a container: 0.0.0.0)")
    p.set_defaults(func=cmd_metrics)
    from pipeline.entities_cli import add_parser as add_entities

    add_entities(sub)
    p = sub.add_parser("demo", help="embedded demo: migrate, run the hourly DAG once on real Airflow, summarise")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":  # argument dataclasses, as in HF's run_classification.py
        logs.setup("-v" in argv)
        rest = [a for a in argv[1:] if a != "-v"]
        return guarded(lambda _: cmd_train(rest), None, "-v" in argv)
    args = build_parser().parse_args(argv)
    logs.setup(args.verbose)
    return guarded(args.func, args, args.verbose)


def guarded(func, args, verbose: bool = False) -> int:
    """Run a command; any error is one line on stderr and an exit code (2: bad input), never a traceback."""
    import psycopg2

    from pipeline.alerts.rules import RulesError
    from pipeline.classify.model.modeldir import ModelDirError
    from pipeline.entities.catalogue import CatalogueError
    from pipeline.ingest.headlines import ArchiveError
    from pipeline.ingest.registry import RegistryError
    from pipeline.windows import WindowError

    bad_input = (RegistryError, ModelDirError, CatalogueError, RulesError, InputError, WindowError, ArchiveError)
    try:
        return func(args)
    except (*bad_input, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except psycopg2.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else str(exc)
        print(f"error: database unavailable: {redact(first)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if verbose:
            raise
        print(f"error: {type(exc).__name__}: {redact(str(exc))} (run with -v for the traceback)", file=sys.stderr)
        return 1
