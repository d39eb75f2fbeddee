"""Surge-detector evaluation by replay: recall, false alerts per topic-week, detection delay.

Synthetic hourly traffic is built from real labeled headlines (the Twitter
Financial News sentiment training set): each topic's hourly volume is
Poisson with a daily and weekly cycle (seasonality), and each story's label
is a draw from the real pool's labels, so the negative share at rest is the
pool's own (15.1 % Bearish). The detector sees counts only, so drawing the
headline texts themselves would change nothing. Surges of known topic, start, duration and size (the
negative share multiplied by ``size``) are injected into about half of the
topic-weeks; the others have none. The first week is history only.

The replay runs the same pure functions the DAG uses
(``pipeline.alerts.detect.judge_recent`` and ``transition``) with the same
windows: a 7-day baseline excluding the current and previous hour, the
overall share as prior, one live alert per topic.

    .state/venv/bin/python -m bench.alerts                         # default thresholds, volume grid
    .state/venv/bin/python -m bench.alerts --volumes 50 --sizes 2 --weeks 12
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import config
from pipeline.alerts.detect import judge_recent, transition
from pipeline.classify.datasets import sources

ROOT = Path(__file__).resolve().parent.parent

HOURS_PER_WEEK = 168


NORMAL_VOLUME = 0.8  # a surge "at normal volume": its hours average >= 0.8 x the nominal volume


@dataclass
class Surge:
    topic: int
    start: int
    hours: int

    def volume_factor(self) -> float:
        """Mean daily/weekly-cycle multiplier over the surge's hours (1 = nominal volume)."""
        return float(diurnal(np.arange(self.start, self.start + self.hours)).mean())


def diurnal(hours: np.ndarray) -> np.ndarray:
    """Volume multiplier: busy market hours, quiet nights, half volume at weekends."""
    hod, dow = hours % 24, (hours // 24) % 7
    day = 1.0 + 0.7 * np.sin((hod - 8) / 24 * 2 * np.pi)
    return day * np.where(dow >= 5, 0.5, 1.0)


def simulate(
    rng: np.random.Generator,
    negative_pool: int,
    pool: int,
    topics: int,
    weeks: int,
    volume: float,
    size: float,
    surge_rate: float,
    history_weeks: int = 1,
    surge_hours: tuple[int, int] = (3, 7),
) -> tuple[np.ndarray, np.ndarray, list[Surge]]:
    """Per topic and hour: stories n and negatives k, drawn headline by headline from the real pool."""
    hours = (weeks + history_weeks) * HOURS_PER_WEEK
    lam = volume * diurnal(np.arange(hours))
    n = rng.poisson(np.broadcast_to(lam, (topics, hours)))
    p_rest = negative_pool / pool
    p = np.full((topics, hours), p_rest)
    surges = []
    for t in range(topics):
        for w in range(history_weeks, weeks + history_weeks):
            if rng.random() < surge_rate:
                dur = int(rng.integers(*surge_hours))
                start = w * HOURS_PER_WEEK + int(rng.integers(0, HOURS_PER_WEEK - dur - 1))
                p[t, start : start + dur] = min(0.95, size * p_rest)
                surges.append(Surge(t, start, dur))
    # each story is negative with the pool's share at rest, with size x that share during a surge
    k = rng.binomial(n, p)
    return n, k, surges


def replay(n: np.ndarray, k: np.ndarray, th, history_weeks: int = 1) -> list[tuple[int, int]]:
    """Alerts opened: (topic, hour). Mirrors pipeline.alerts.run.detect_hour on arrays: a subject is judged in
    hours that hold its stories or while it has a live alert; with ``window_hours`` > 1 (companies) the
    trailing window is one observation and the baseline ends where it starts."""
    topics, hours = n.shape
    cn, ck = np.cumsum(n, axis=1), np.cumsum(k, axis=1)
    on, ok = np.cumsum(n.sum(0)), np.cumsum(k.sum(0))
    span = th.baseline_days * 24

    def window(c: np.ndarray, a: int, b: int) -> int:  # sum over hours [a, b)
        return int(c[b - 1] - (c[a - 1] if a > 0 else 0)) if b > a else 0

    opened, live = [], [False] * topics
    back = th.hours_before  # hours pooled with h, kept out of the baseline
    wide = th.window_hours
    for h in range(history_weeks * HOURS_PER_WEEK, hours):
        first = h - wide + 1  # the judged span [first, h]
        a, b = max(0, first - span), first - back
        prior = window(ok, a, b) / max(1, window(on, a, b))
        if window(on, a, b) < th.min_history_stories:
            continue  # the cold-start guard, as in detect_hour
        for t in range(topics):
            if n[t, h] == 0 and not live[t]:
                continue
            if wide > 1:
                now, prev = (window(cn[t], first, h + 1), window(ck[t], first, h + 1)), []
            else:
                now = (int(n[t, h]), int(k[t, h]))
                prev = [(int(n[t, h - i]), int(k[t, h - i])) for i in range(1, back + 1)]
            v = judge_recent(now, prev, (window(cn[t], a, b), window(ck[t], a, b)), prior, th)
            step = transition(live[t], v)
            if step.action == "open":
                opened.append((t, h))
                live[t] = True
            elif step.action == "resolve":
                live[t] = False
    return opened


def score(opened: list[tuple[int, int]], surges: list[Surge], topics: int, weeks: int, lag: int = 1) -> dict:
    """``lag``: hours after a surge's end in which an alert still counts as catching it (the window's length)."""
    delays, normal_delays, hit, normal, normal_hit = [], [], 0, 0, 0
    during = set()
    for s in surges:
        found = [h for (t, h) in opened if t == s.topic and s.start <= h < s.start + s.hours + lag]
        at_normal = s.volume_factor() >= NORMAL_VOLUME
        normal += at_normal
        if found:
            hit += 1
            normal_hit += at_normal
            delays.append(found[0] - s.start)
            if at_normal:
                normal_delays.append(found[0] - s.start)
        during.update((s.topic, h) for h in found)
    false = [o for o in opened if o not in during]
    return {
        "surges": len(surges),
        "recall": hit / len(surges) if surges else float("nan"),
        "normal_surges": normal,
        "recall_normal": normal_hit / normal if normal else float("nan"),
        "delay_mean_normal_h": float(np.mean(normal_delays)) if normal_delays else float("nan"),
        "false_per_topic_week": len(false) / (topics * weeks),
        "alerts_per_surge": (len(during) / hit) if hit else float("nan"),
        "delay_mean_h": float(np.mean(delays)) if delays else float("nan"),
        "delay_max_h": int(max(delays)) if delays else -1,
        "delay_p95_h": float(np.percentile(delays, 95)) if delays else float("nan"),
    }


HEADER = (
    f"{'stories/topic/h':>15} {'size':>5} {'surges':>7} {'recall':>7} {'normal-vol recall':>18} "
    f"{'false/topic/wk':>15} {'alerts/surge':>13} {'delay mean':>11} {'delay p95':>10} {'delay max':>10} "
    f"{'normal-vol delay':>17}"
)


def run_cell(labels_pool: tuple[int, int], args: argparse.Namespace, volume: float, size: float, th) -> str:
    """Simulate one (volume, size) cell with the run's seed and replay it: one printed row."""
    rng = np.random.default_rng(args.seed)
    n, k, surges = simulate(rng, *labels_pool, args.topics, args.weeks, volume, size, args.surge_rate)
    r = score(replay(n, k, th), surges, args.topics, args.weeks)
    normal = f"{r['recall_normal']:.3f} ({r['normal_surges']})"
    return (
        f"{volume:>15g} {size:>5g} {r['surges']:>7} {r['recall']:>7.3f} {normal:>18} {r['false_per_topic_week']:>15.3f} "
        f"{r['alerts_per_surge']:>13.2f} {r['delay_mean_h']:>11.2f} {r['delay_p95_h']:>10.1f} {r['delay_max_h']:>10} "
        f"{r['delay_mean_normal_h']:>17.2f}"
    )


def run_entities(labels_pool: tuple[int, int], args: argparse.Namespace) -> None:
    """Watchlist companies: sparse series, a bad day (12-48 h of size x the negative share) as the surge, the
    entity rule of config/alert_rules.yaml; baseline in the same run: the topic rule on the same series."""
    from dataclasses import replace

    from pipeline.alerts import rules

    r = rules.load()
    th = r.entity_defaults
    hist = max(1, -(-th.baseline_days // 7)) + 1
    print(
        f"\ncompanies: {args.topics} companies x {args.weeks} weeks (+{hist} weeks history), a bad day (12-48 h) in "
        f"{args.surge_rate:.0%} of company-weeks; entity rule {th}"
    )
    head = HEADER.replace("stories/topic/h", "stories/co/day").replace("false/topic/wk", "false/co/wk")
    for name, rule in (("entity rule", th), ("topic rule on the same series (baseline)", replace(r.defaults))):
        print(f"\n{name}")
        print(head)
        for per_day in args.entity_volumes:
            for size in args.sizes:
                rng = np.random.default_rng(args.seed)
                n, k, surges = simulate(
                    rng, *labels_pool, args.topics, args.weeks, per_day / 24, size, args.surge_rate, hist, (12, 49)
                )
                sc = score(replay(n, k, rule, hist), surges, args.topics, args.weeks, lag=rule.window_hours)
                normal = f"{sc['recall_normal']:.3f} ({sc['normal_surges']})"
                print(
                    f"{per_day:>15g} {size:>5g} {sc['surges']:>7} {sc['recall']:>7.3f} {normal:>18} "
                    f"{sc['false_per_topic_week']:>15.3f} {sc['alerts_per_surge']:>13.2f} {sc['delay_mean_h']:>11.2f} "
                    f"{sc['delay_p95_h']:>10.1f} {sc['delay_max_h']:>10} {sc['delay_mean_normal_h']:>17.2f}"
                )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--volumes",
        type=float,
        nargs="+",
        default=[10, 25, 50, 100],
        help="mean stories per topic per hour (before the daily cycle)",
    )
    ap.add_argument("--sizes", type=float, nargs="+", default=[1.5, 2.0, 3.0], help="negative-share multipliers")
    ap.add_argument("--topics", type=int, default=20)
    ap.add_argument("--weeks", type=int, default=8)
    ap.add_argument("--surge-rate", type=float, default=0.5, help="share of topic-weeks with a surge")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--entities", action="store_true", help="replay watchlist companies (the entity rule) instead")
    ap.add_argument(
        "--entity-volumes", type=float, nargs="+", default=[2, 5, 10, 25], help="mean stories per company per day"
    )
    ap.add_argument(
        "--sweep",
        action="store_true",
        help="also replay 2x surges under other pool_hours / warning_p settings (how the defaults were chosen)",
    )
    args = ap.parse_args(argv)
    from dataclasses import replace

    import pandas as pd

    labels = pd.read_csv(sources.registry()["tfns_sentiment"].path)["label"]
    labels_pool = int((labels == 0).sum()), len(labels)  # 0 = Bearish in this dataset
    if args.entities:
        run_entities(labels_pool, args)
        return
    th = config.alert_thresholds()
    print(
        f"alerts replay: {args.topics} topics x {args.weeks} weeks (+1 week history), surges in "
        f"{args.surge_rate:.0%} of topic-weeks, 3-6 h long; negative share at rest {labels_pool[0] / labels_pool[1]:.3f} "
        f"(real pool of {labels_pool[1]} headlines); normal volume = surge hours averaging >= {NORMAL_VOLUME} x nominal "
        f"(weekday market hours); thresholds {th}"
    )
    t0 = time.perf_counter()
    print(HEADER)
    for volume in args.volumes:
        for size in args.sizes:
            print(run_cell(labels_pool, args, volume, size, th))
    print(f"({time.perf_counter() - t0:.1f} s)")
    print("\nbaseline (same run): single-hour detector (pool_hours=1), otherwise the same thresholds")
    print(HEADER)
    for volume in args.volumes:
        print(run_cell(labels_pool, args, volume, 2.0, replace(th, pool_hours=1)))
    if args.sweep:
        for pool_hours in (2, 3, 4, 6):
            for warning_p in (1e-3, 2e-3, 5e-3):
                print(f"\nsweep: pool_hours={pool_hours} warning_p={warning_p:g}")
                for volume in args.volumes:
                    print(
                        run_cell(
                            labels_pool, args, volume, 2.0, replace(th, pool_hours=pool_hours, warning_p=warning_p)
                        )
                    )


if __name__ == "__main__":
    main()
