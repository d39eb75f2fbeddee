"""Apply surge detection to stored hourly stats and keep the ``alerts`` table current."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from psycopg2.extensions import connection, cursor
from psycopg2.extras import Json

from pipeline import windows
from pipeline.alerts.detect import Verdict, judge_recent, judge_regime, transition
from pipeline.alerts.rules import Rules

log = logging.getLogger(__name__)
OVERALL = ("overall", "all")  # the whole stream, as hourly_stats and alerts key it
Subject = tuple[str, str]  # (dimension, key): ('overall', 'all'), ('topic', name), ('entity', id)

_LOCK = "SELECT pg_advisory_xact_lock(hashtext('finsent.detect'), hashtext(%s))"
_SPAN_TOTALS = """
SELECT coalesce(sum(stories), 0), coalesce(sum(negatives), 0) FROM hourly_stats
WHERE model_version = %s AND dimension = %s AND key = %s AND hour >= %s AND hour < %s
"""
_PER_HOUR = """
SELECT hour, stories, negatives FROM hourly_stats
WHERE model_version = %s AND dimension = %s AND key = %s AND hour >= %s AND hour < %s
"""
# Topics are judged every hour they hold stories; companies only when they are on a watchlist.
_SUBJECTS_IN_HOUR = """
SELECT dimension, key FROM hourly_stats
WHERE model_version = %s AND hour = %s
  AND (dimension = 'topic' OR (dimension = 'entity' AND key IN (SELECT entity_id FROM watchlist_entities)))
"""
_SUBJECTS_LIVE = "SELECT dimension, key FROM alerts WHERE model_version = %s AND status <> 'resolved'"
_LIVE_ALERT = """
SELECT id, started_at, last_hour FROM alerts
WHERE dimension = %s AND key = %s AND model_version = %s AND kind = %s AND status <> 'resolved' FOR UPDATE
"""
# A re-run of an hour that a resolved alert of this subject already covers: it was judged, and raised, before.
_COVERED = """
SELECT 1 FROM alerts WHERE dimension = %s AND key = %s AND model_version = %s AND kind = %s
  AND status = 'resolved' AND started_at <= %s AND resolved_at > %s LIMIT 1
"""
# Daily (24-hour) blocks of a subject's stats before ``end``, numbered 0, 1, ... backwards.
_DAILY = """
SELECT floor(extract(epoch FROM %(end)s - hour) / 86400)::int AS d, sum(stories), sum(negatives)
FROM hourly_stats
WHERE model_version = %(m)s AND dimension = %(dim)s AND key = %(key)s AND hour >= %(start)s AND hour < %(end)s
GROUP BY d
"""
_TOP_STORIES = """
SELECT a.id, a.title, a.url, f.name, s.p_negative
FROM scores s JOIN articles a ON a.id = s.article_id JOIN feeds f ON f.id = a.feed_id
WHERE s.model_version = %(m)s AND s.sentiment = 'negative'
  AND a.story_time >= %(start)s AND a.story_time < %(end)s
  AND (%(all)s OR s.topic = %(t)s)
ORDER BY s.p_negative DESC, a.id LIMIT %(n)s
"""
# A company's headlines are ranked by its own (per-entity) label, not the story's.
_TOP_ENTITY_STORIES = """
SELECT a.id, a.title, a.url, f.name, es.p_negative
FROM entity_scores es JOIN articles a ON a.id = es.article_id JOIN feeds f ON f.id = a.feed_id
WHERE es.model_version = %(m)s AND es.entity_id = %(t)s AND es.sentiment = 'negative'
  AND a.story_time >= %(start)s AND a.story_time < %(end)s
ORDER BY es.p_negative DESC, a.story_time DESC, a.id LIMIT %(n)s
"""
_OPEN = """
INSERT INTO alerts (dimension, key, kind, model_version, started_at, last_hour, window_end, observed_stories,
    observed_negatives, observed_share, baseline_share, baseline_stories, p_value, score, severity, peak_severity,
    top_stories)
VALUES (%(dimension)s, %(key)s, %(kind)s, %(model)s, %(hour)s, %(hour)s, %(end)s, %(n)s, %(k)s, %(share)s, %(base)s,
        %(bn)s, %(p)s, %(score)s, %(sev)s, %(sev)s, %(top)s)
ON CONFLICT (dimension, key, kind, model_version, started_at) DO NOTHING
RETURNING id
"""
# Every judged hour of a surge extends it and keeps its strongest evidence ...
_EXTEND = """
UPDATE alerts SET
    last_hour = greatest(last_hour, %(hour)s),
    window_end = greatest(window_end, %(end)s),
    hours_surging = greatest(hours_surging, (extract(epoch FROM %(hour)s - started_at) / 3600)::int + 1),
    p_value = least(p_value, %(p)s),
    score = greatest(score, %(score)s),
    peak_severity = CASE WHEN peak_severity = 'critical' OR %(sev)s = 'critical' THEN 'critical' ELSE 'warning' END,
    updated_at = now()
WHERE id = %(id)s
"""
# ... and only its latest hour (not a re-run of an earlier one) sets what it shows now.
_SET_LATEST = """
UPDATE alerts SET observed_stories = %(n)s, observed_negatives = %(k)s, observed_share = %(share)s,
    baseline_share = %(base)s, baseline_stories = %(bn)s, severity = %(sev)s, top_stories = %(top)s
WHERE id = %(id)s
"""
_RESOLVE = "UPDATE alerts SET status = 'resolved', resolved_at = %s, updated_at = now() WHERE id = %s"


def _stats(cur: cursor, model: str, key: Subject, start: datetime, end: datetime) -> tuple[int, int]:
    cur.execute(_SPAN_TOTALS, (model, key[0], key[1], start, end))
    n, k = cur.fetchone()
    return int(n), int(k)


def _per_hour(cur: cursor, model: str, key: Subject, start: datetime, end: datetime) -> dict:
    """(stories, negatives) by hour in [start, end): the judged hour and those pooled with it, in one query."""
    cur.execute(_PER_HOUR, (model, key[0], key[1], start, end))
    return {h: (int(n), int(k)) for h, n, k in cur.fetchall()}


def _top_stories(cur: cursor, model: str, subject: Subject, span: tuple[datetime, datetime], limit: int = 5) -> list:
    """The negative stories that drove the judged span (for a company: by its own label)."""
    sql = _TOP_ENTITY_STORIES if subject[0] == "entity" else _TOP_STORIES
    cur.execute(
        sql, {"m": model, "start": span[0], "end": span[1], "t": subject[1], "all": subject == OVERALL, "n": limit}
    )
    return [
        {"article_id": i, "title": t, "url": u, "source": src, "p_negative": round(float(p), 4)}
        for i, t, u, src, p in cur.fetchall()
    ]


def _open(cur: cursor, fields: dict, verdict: Verdict) -> int | None:
    cur.execute(_OPEN, fields)
    row = cur.fetchone()
    if row:
        log.warning(
            "surge alert opened: %s %s at %s: %d/%d negative (%.0f%% vs %.0f%% baseline, p=%.2g)",
            fields["sev"],
            f"{fields['dimension']}:{fields['key']}",
            fields["hour"].isoformat(),
            fields["k"],
            fields["n"],
            100 * verdict.observed_share,
            100 * verdict.baseline_share,
            verdict.p_value,
        )
    return row[0] if row else None


def _update(cur: cursor, fields: dict, latest: bool) -> None:
    cur.execute(_EXTEND, fields)
    if latest:
        cur.execute(_SET_LATEST, fields)


def _subjects(cur: cursor, model: str, hour: datetime) -> list[Subject]:
    """Topics and watchlist companies with stories in the hour, subjects with a live alert, and overall."""
    cur.execute(_SUBJECTS_IN_HOUR, (model, hour))
    subjects = {tuple(r) for r in cur.fetchall()}
    cur.execute(_SUBJECTS_LIVE, (model,))
    subjects |= {tuple(r) for r in cur.fetchall()}
    return sorted(subjects | {OVERALL})


def _observe(cur: cursor, model: str, subject: Subject, hour: datetime, th) -> tuple:
    """(this span's (n, k), previous hours for pooling, baseline (n, k), judged span) for one subject.

    With ``window_hours`` > 1 (companies) the judged span is the trailing window ending with this hour,
    summed as one observation; the baseline is the ``baseline_days`` before that window.
    """
    span_start = hour - (th.window_hours - 1) * windows.HOUR
    base_end = span_start - th.hours_before * windows.HOUR  # the baseline excludes the hours pooled with this one
    base_start = span_start - timedelta(days=th.baseline_days)
    recent = _per_hour(cur, model, subject, base_end, hour + windows.HOUR)
    if th.window_hours > 1:
        n = sum(v[0] for h, v in recent.items() if h >= span_start)
        k = sum(v[1] for h, v in recent.items() if h >= span_start)
        prev = []
    else:
        n, k = recent.get(hour, (0, 0))
        prev = [recent.get(hour - i * windows.HOUR, (0, 0)) for i in range(1, th.hours_before + 1)]
    return (n, k), prev, _stats(cur, model, subject, base_start, base_end), (span_start, hour + windows.HOUR)


def detect_hour(
    conn: connection, model: str, hour: datetime, rules: Rules, partial: bool = False
) -> dict[str, list[int]]:
    """Judge every topic, watchlist company and the overall stream for one hour; open, update or resolve alerts.

    ``partial`` (the fast lane, judging the hour still under way): surges may open or grow, but nothing is
    resolved (a quiet first minutes say nothing yet) and the slow sustained-rise view is left to the hourly run.
    """
    out: dict[str, list[int]] = {"opened": [], "updated": [], "resolved": []}
    with conn.cursor() as cur:
        cur.execute(_LOCK, (model,))
        th0 = rules.defaults
        prior_end = hour - th0.hours_before * windows.HOUR
        prior_n, prior_k = _stats(cur, model, OVERALL, hour - timedelta(days=th0.baseline_days), prior_end)
        prior_share = prior_k / prior_n if prior_n else 0.2
        if prior_n < th0.min_history_stories:  # a cold start is not a surge: nothing to compare the hour with
            conn.commit()
            return out
        for subject in _subjects(cur, model, hour):
            th = rules.for_subject(*subject)
            (n, k), prev, (bn, bk), span = _observe(cur, model, subject, hour, th)
            verdict = judge_recent((n, k), prev, (bn, bk), prior_share, th)
            skip, live = _live(cur, model, subject, "surge", hour)
            if skip:
                continue
            step = transition(live is not None, verdict)
            fields = {
                "dimension": subject[0],
                "key": subject[1],
                "kind": "surge",
                "model": model,
                "hour": hour,
                "end": hour + windows.HOUR,
                "n": n,
                "k": k,
                "share": verdict.observed_share,
                "base": verdict.baseline_share,
                "bn": bn,
                "p": verdict.p_value,
                "score": verdict.score,
                "sev": step.severity,
            }
            if step.action == "open":
                fields["top"] = Json(_top_stories(cur, model, subject, span))
                if (alert_id := _open(cur, fields, verdict)) is not None:
                    out["opened"].append(alert_id)
            elif step.action == "update" and step.severity:
                fields.update(top=Json(_top_stories(cur, model, subject, span)), id=live[0])
                _update(cur, fields, latest=hour >= live[2])
                out["updated"].append(live[0])
            elif step.action == "resolve" and hour > live[2] and not partial:
                cur.execute(_RESOLVE, (hour, live[0]))
                out["resolved"].append(live[0])
                log.info(
                    "surge alert %d resolved: %s:%s back to %.0f%% negative",
                    live[0],
                    *subject,
                    100 * verdict.observed_share,
                )
            if subject[0] != "entity" and not partial:  # companies have their own slow rule (24 h against 28 days)
                _judge_regime(cur, model, subject, hour, th, out)
    conn.commit()
    return out


def _live(cur: cursor, model: str, subject: Subject, kind: str, hour: datetime) -> tuple[bool, tuple | None]:
    """(skip this hour, the subject's live alert of this kind, locked). A re-run of an hour before the live
    alert began, or inside one that was raised and resolved, is skipped: it has nothing new to say."""
    cur.execute(_LIVE_ALERT, (*subject, model, kind))
    live = cur.fetchone()
    if live:
        return hour < live[1], live
    cur.execute(_COVERED, (*subject, model, kind, hour, hour))
    return cur.fetchone() is not None, None


def _judge_regime(cur: cursor, model: str, subject: Subject, hour: datetime, th, out: dict) -> None:
    """The slow view for one subject at one hour: open, extend or resolve its 'regime' alert.

    Recent: the ``regime_days`` x 24 hours ending with this hour (the current partial day included).
    Baseline: the ``regime_baseline_days`` before that, in 24-hour blocks; while an alert is live the
    baseline stays where it was when the alert opened, so a crisis that lasts never becomes its own baseline.
    """
    end = hour + windows.HOUR
    recent_start = end - timedelta(days=th.regime_days)
    skip, live = _live(cur, model, subject, "regime", hour)
    if skip:
        return
    base_end = recent_start if not live else live[1] + windows.HOUR - timedelta(days=th.regime_days)
    cur.execute(
        _DAILY,
        {
            "end": base_end,
            "start": base_end - timedelta(days=th.regime_baseline_days),
            "m": model,
            "dim": subject[0],
            "key": subject[1],
        },
    )
    daily = [(int(n), int(k)) for _, n, k in cur.fetchall()]
    n, k = _stats(cur, model, subject, recent_start, end)
    verdict = judge_regime((n, k), daily, th)
    if not verdict.judged:
        return
    fields = {
        "dimension": subject[0],
        "key": subject[1],
        "kind": "regime",
        "model": model,
        "hour": hour,
        "end": end,
        "n": n,
        "k": k,
        "share": verdict.observed_share,
        "base": verdict.baseline_share,
        "bn": sum(d[0] for d in daily),
        "p": verdict.p_value,
        "score": verdict.z,
        "sev": verdict.severity,
    }
    if verdict.severity and not live:
        fields["top"] = Json(_top_stories(cur, model, subject, (recent_start, end)))
        cur.execute(_OPEN, fields)
        row = cur.fetchone()
        if row:
            out["opened"].append(row[0])
            log.warning(
                "sustained-rise alert opened: %s:%s at %s: %.0f%% negative over %d days vs %.0f%% (z=%.1f)",
                *subject,
                hour.isoformat(),
                100 * verdict.observed_share,
                th.regime_days,
                100 * verdict.baseline_share,
                verdict.z,
            )
    elif live and verdict.elevated:
        fields.update(top=Json(_top_stories(cur, model, subject, (recent_start, end))), id=live[0])
        fields["sev"] = verdict.severity or "warning"
        _update(cur, fields, latest=hour >= live[2])
        out["updated"].append(live[0])
    elif live and hour > live[2]:
        cur.execute(_RESOLVE, (hour, live[0]))
        out["resolved"].append(live[0])


def detect_window(conn: connection, model: str, window: tuple[datetime, datetime], rules: Rules) -> dict:
    """Judge every hour of [start, end) in order; returns the alert ids opened, updated and resolved."""
    return detect_hours(conn, model, windows.hours(window), rules)


def stored_hours(conn: connection, window: tuple[datetime, datetime]) -> list[datetime]:
    """The hours of [start, end) that hold at least one story."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT date_trunc('hour', story_time) FROM articles WHERE story_time >= %s AND story_time < %s "
            "ORDER BY 1",
            window,
        )
        out = [r[0] for r in cur.fetchall()]
    conn.commit()
    return out


def detect_hours(conn: connection, model: str, hours: list[datetime], rules: Rules) -> dict:
    """Judge the given hours in order; returns the alert ids opened, updated and resolved."""
    totals: dict[str, list[int]] = {"opened": [], "updated": [], "resolved": []}
    for hour in hours:
        for k, v in detect_hour(conn, model, hour, rules).items():
            totals[k].extend(x for x in v if x not in totals[k])
    return totals
