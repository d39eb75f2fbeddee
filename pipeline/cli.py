"""Operator CLI: ``python -m pipeline <command>``. JSON on stdout, logs on stderr."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from pipeline import config, db, logs


def _print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def cmd_db(args: argparse.Namespace) -> int:
    url = db.database_url()
    if args.action == "migrate":
        applied = db.migrate(url)
        _print_json({"applied": applied, "database": _redact(url)})
    elif args.action == "url":
        print(url)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from pipeline.ingest import registry
    from pipeline.ingest.run import ingest

    try:
        specs = registry.load(args.feeds)
    except registry.RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    url = db.database_url()
    db.migrate(url)
    summary = ingest(specs=specs, database_url=url, run_key=args.run_key)
    _print_json(summary)
    return 0 if summary["totals"]["feeds_ok"] or not summary["totals"]["feeds"] else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline import demo

    _print_json(demo.run())
    return 0


def _redact(url: str) -> str:
    import re

    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("db", help="database administration")
    p.add_argument("action", choices=["migrate", "url"], help="migrate: apply sql/ migrations; url: print the URI")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("ingest", help="one ingestion pass over a feed registry")
    p.add_argument("--feeds", default=str(config.load().feeds_file), help="registry YAML (default: %(default)s)")
    p.add_argument("--run-key", default=None, help="label stored with the run (e.g. a ticket id)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("demo", help="embedded demo: migrate, run the hourly DAG once on real Airflow, summarise")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.verbose)
    return args.func(args)
