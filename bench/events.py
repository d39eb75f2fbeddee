"""Event benchmark: replay a real year of headlines and check the alerts against dated public events.

    .state/venv/bin/python -m bench.events                         # the whole 2023 archive, shipped model
    .state/venv/bin/python -m bench.events --judge-only            # re-judge the stored year (no re-scoring)
    .state/venv/bin/python -m bench.events --make-demo-window      # writes data/history/ (the demo's window)

Set-up: a database of its own (``bench_events``) on the embedded PostgreSQL, the shipped model installed
there, then ``pipeline.replay.replay`` over the archive (import, score, link, judge every hour in
order; the same code as ``python -m pipeline history replay``). For every rule set in ``RULE_SETS`` the
alerts are judged again from the stored stats and compared with ``EVENTS``: was an alert raised for the
overall stream, any topic, or the event's company by the end of the day after the event's day (events are
dated to the day; an alert already open at the event counts, with delay 0), with what delay from the start of
the event's day; and false alerts per calm week (weeks with no listed
event within 3 days). CPU flags are printed with the times.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = ROOT.parent / "shared" / "data" / "archive" / "rss_link_db_2023" / "headlines_2023.csv"
DEMO_WINDOW = ROOT / "data" / "history" / "headlines_2023_bank_crisis.csv.gz"

# Dated public events of 2023 (UTC day; the record each date comes from). ``entity``: the catalogue id.
EVENTS = [
    (
        "2023-01-25",
        "Hindenburg report on Adani Group; Adani shares fall",
        "adani-enterprises",
        "Hindenburg Research report, 24 Jan 2023 (US time); NSE prices 25-27 Jan",
    ),
    (
        "2023-03-08",
        "Silvergate Capital announces wind-down",
        "silvergate-capital",
        "Silvergate press release, 8 Mar 2023",
    ),
    (
        "2023-03-10",
        "Silicon Valley Bank closed, FDIC receiver",
        "svb-financial",
        "FDIC press release PR-16-2023, 10 Mar 2023",
    ),
    (
        "2023-03-12",
        "Signature Bank closed; systemic-risk exception",
        "signature-bank",
        "FDIC PR-18-2023 / joint Treasury-Fed-FDIC statement, 12 Mar 2023",
    ),
    (
        "2023-03-15",
        "Credit Suisse shares plunge; SNB liquidity line",
        "credit-suisse",
        "SIX prices 15 Mar 2023; SNB/FINMA statement 15-16 Mar 2023",
    ),
    ("2023-03-19", "UBS agrees to take over Credit Suisse", "ubs", "UBS / FINMA announcements, 19 Mar 2023"),
    (
        "2023-05-01",
        "First Republic seized, sold to JPMorgan",
        "first-republic-bank",
        "FDIC press release PR-034-2023, 1 May 2023",
    ),
    ("2023-06-24", "Wagner mutiny in Russia", None, "Reuters/AP reports, 24 Jun 2023"),
    ("2023-08-02", "Fitch downgrades the US to AA+", None, "Fitch Ratings release, 1 Aug 2023 after US close"),
    ("2023-09-15", "UAW strikes Ford, GM and Stellantis", None, "UAW announcement, 15 Sep 2023"),
    ("2023-10-07", "Hamas attack on Israel; war", None, "Reuters/AP reports, 7 Oct 2023"),
    ("2023-11-17", "OpenAI board removes Sam Altman", None, "OpenAI blog post, 17 Nov 2023"),
]
WITHIN = timedelta(hours=48)  # events are dated to the day: an alert by the end of the next day counts
CALM_MARGIN = timedelta(days=3)

# Today's defaults and the proposals compared on the year (``replace`` over the loaded rules' defaults).
RULE_SETS = {
    "surge only (before this change)": {"min_history_stories": 0, "regime_z": 1e9},
    "surge + cold-start guard": {"regime_z": 1e9},
    "shipped: + sustained-rise view (z 3, x1.3, 3 days)": {},
    "sustained-rise z 2.5, x1.2": {"regime_z": 2.5, "regime_ratio": 1.2},
    "sustained-rise z 4, x1.5": {"regime_z": 4.0, "regime_ratio": 1.5},
    "sustained-rise over 2 days": {"regime_days": 2},
}


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = re.search(r"model name\s*:\s*(.+)", text)
    flags = set(re.search(r"flags\s*:\s*(.+)", text).group(1).split()) if "flags" in text else set()
    keep = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni") if f in flags]
    return f"{model.group(1).strip() if model else '?'}, {os.cpu_count()} cores, flags: {' '.join(keep)}"


def score_events(alerts: list[dict], span: tuple[datetime, datetime], events=EVENTS) -> dict:
    """Per event: caught (and how), delay in hours; false alerts per calm week. Pure."""
    rows = []
    for day, what, entity, _src in events:
        t = datetime.fromisoformat(day).replace(tzinfo=UTC)
        if not span[0] <= t < span[1]:
            continue
        hits = []
        for a in alerts:
            ended = a["resolved"] or span[1]
            if a["opened"] <= t + WITHIN and ended >= t and (a["dimension"] != "entity" or a["key"] == entity):
                hits.append((max(0.0, (a["opened"] - t) / timedelta(hours=1)), a))
        hits.sort(key=lambda h: h[0])
        rows.append(
            {
                "day": day,
                "event": what,
                "caught": bool(hits),
                "delay_h": round(hits[0][0], 1) if hits else None,
                "by": sorted({f"{h[1]['kind']}:{h[1]['dimension']}:{h[1]['key']}" for h in hits})[:4],
            }
        )
    event_times = [datetime.fromisoformat(d).replace(tzinfo=UTC) for d, *_ in events]
    calm_weeks, false_alerts = 0, 0
    week = span[0] - timedelta(days=span[0].weekday())
    while week + timedelta(days=7) <= span[1]:
        end = week + timedelta(days=7)
        if not any(week - CALM_MARGIN <= t < end + CALM_MARGIN for t in event_times):
            calm_weeks += 1
            false_alerts += sum(week <= a["opened"] < end and a["dimension"] != "entity" for a in alerts)
        week = end
    caught = [r for r in rows if r["caught"]]
    delays = sorted(r["delay_h"] for r in caught)
    return {
        "events": rows,
        "caught": f"{len(caught)}/{len(rows)}",
        "median_delay_h": delays[len(delays) // 2] if delays else None,
        "calm_weeks": calm_weeks,
        "false_alerts_per_calm_week": round(false_alerts / calm_weeks, 2) if calm_weeks else None,
        "alerts": len(alerts),
        "alerts_by_kind": {k: sum(a["kind"] == k for a in alerts) for k in ("surge", "regime")},
    }


def _alerts(conn, model: str, span) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, kind, dimension, key, started_at, resolved_at FROM alerts WHERE model_version = %s "
            "AND started_at >= %s AND started_at < %s ORDER BY started_at",
            (model, *span),
        )
        out = [
            dict(zip(("id", "kind", "dimension", "key", "opened", "resolved"), r, strict=True)) for r in cur.fetchall()
        ]
    conn.commit()
    return out


def judge(conn, model: str, span, rules) -> list[dict]:
    """Forget the model's alerts and judge the span again with ``rules`` (the stored stats are reused)."""
    from pipeline.alerts.run import detect_window

    with conn.cursor() as cur:
        cur.execute("DELETE FROM alerts WHERE model_version = %s", (model,))
    conn.commit()
    detect_window(conn, model, span, rules)
    return _alerts(conn, model, span)


def make_demo_window(src: Path = ARCHIVE, out: Path = DEMO_WINDOW) -> dict:
    """The demo's window: business headlines of 23 Jan - 25 Mar 2023 (calm weeks, then the bank failures)."""
    import csv
    import gzip

    from pipeline.ingest.headlines import REQUIRED

    business = re.compile(BUSINESS_WORDS, re.I)
    lo, hi = "2023-01-23", "2023-03-25"
    kept = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with src.open(newline="", encoding="utf-8") as fh, gzip.open(out, "wt", newline="", encoding="utf-8") as dst:
        w = csv.writer(dst, lineterminator="\n")
        w.writerow([*REQUIRED, "url"])
        for row in csv.DictReader(fh):
            if lo <= row["published"][:10] < hi and business.search(row["title"]):
                w.writerow([row["published"], row["source"], row["title"], row["url"]])
                kept += 1
    return {"file": str(out), "rows": kept, "bytes": out.stat().st_size}


# What makes a headline business news for the demo window (a transparent rule, not a model).
BUSINESS_WORDS = (
    r"\b(banks?|banking|bankers?|lenders?|deposits?|markets?|stocks?|shares?|bonds?|yields?|investors?|econom\w*|"
    r"inflation|recession|rates?|fed|federal reserve|ecb|central banks?|interest|earnings|profits?|revenue|sales|"
    r"compan(y|ies)|firms?|ceo|deal|merger|acquisition|takeover|ipo|oil|gas|energy|prices?|dollar|euro|yen|"
    r"currenc(y|ies)|crypto|bitcoin|debt|default|credit|loans?|layoffs?|jobs|unemployment|wages?|gdp|trade|"
    r"tariffs?|tech|startups?|funds?|hedge|private equity|billion|million|financ\w*|tax(es)?|budget|treasury|"
    r"regulators?|sec|fdic|imf|wall street|nasdaq|dow|s&p|ftse|invest\w*|business(es)?|industr\w*|"
    r"manufacturing|retail(ers?)?|supply|chips?|semiconductors?|ai|valuation|bankruptcy|bailout|rescue|collapse|"
    r"crisis|contagion|svb|ubs|credit suisse|jpmorgan|goldman|morgan stanley)\b"
)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__.splitlines()[0])
    ap.add_argument("--csv", default=str(ARCHIVE), help="headline archive (default: the 2023 file in ../shared)")
    ap.add_argument("--database", default="bench_events", help="database name on the embedded server")
    ap.add_argument("--model", default=None, help="model directory to register (default: the shipped model)")
    ap.add_argument("--judge-only", action="store_true", help="skip import and scoring: re-judge what is stored")
    ap.add_argument("--make-demo-window", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="test mode: the bundled demo window, first two weeks only")
    args = ap.parse_args(argv)
    from pipeline import db, logs
    from pipeline.alerts import rules as rules_mod
    from pipeline.classify.release import registry
    from pipeline.replay import replay

    logs.setup(False)
    if args.make_demo_window:
        out = make_demo_window()
        print(json.dumps(out, indent=2))
        return out
    url = db.ensure_database(os.environ.get("DATABASE_URL") or db.start_embedded(), args.database)
    os.environ["DATABASE_URL"] = url
    db.migrate(url)
    conn = db.connect(url)
    t0 = time.monotonic()
    if registry.active(conn) is None or args.model:
        from pipeline.lifecycle import install_shipped, register_and_promote

        install_shipped() if not args.model else register_and_promote(Path(args.model), force=True)
    model = registry.active(conn)["version"]
    csv_path = Path(DEMO_WINDOW if args.tiny and args.csv == str(ARCHIVE) else args.csv)
    start, end = ("2023-01-23", "2023-02-06") if args.tiny else (None, None)
    timings = {}
    if not args.judge_only:
        out = replay(csv_path, start=start, end=end, database_url=url)
        timings["replay_s"] = out["seconds"]
        span = tuple(datetime.fromisoformat(x) for x in out["span"])
        imported = out["imported"]
    else:  # the stored year, re-linked to the current catalogue and watchlists, its stats rebuilt
        from pipeline.alerts.refresh import refresh
        from pipeline.entities.run import link_and_score

        with conn.cursor() as cur:
            cur.execute("SELECT date_trunc('hour', min(story_time)), date_trunc('hour', max(story_time)) FROM articles")
            lo, hi = cur.fetchone()
        conn.commit()
        span, imported = (lo, hi + timedelta(hours=1)), None
        link_and_score(url, model)
        refresh(conn, span, model=model, judge=False)
    base = rules_mod.load()
    results = {}
    for name, change in RULE_SETS.items():
        rules = replace(base, defaults=replace(base.defaults, **change), topics={})
        t1 = time.monotonic()
        alerts = judge(conn, model, span, rules)
        results[name] = {**score_events(alerts, span), "judge_s": round(time.monotonic() - t1, 1)}
    judge(conn, model, span, base)  # leave the stored alerts as the shipped rules raise them
    conn.close()
    report = {
        "cpu": cpu_flags(),
        "archive": str(csv_path),
        "imported": imported,
        "model": model,
        "span": [span[0].isoformat(), span[1].isoformat()],
        "timings": {**timings, "total_s": round(time.monotonic() - t0, 1)},
        "rule_sets": results,
    }
    print(json.dumps(report, indent=2, default=str))
    for name, r in results.items():
        print(
            f"{name:52} events {r['caught']:>6}  median delay {r['median_delay_h']} h  "
            f"false/calm week {r['false_alerts_per_calm_week']}  alerts {r['alerts_by_kind']}",
            file=sys.stderr,
        )
    return report


if __name__ == "__main__":
    main()
