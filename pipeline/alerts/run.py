"""Apply surge detection to stored hourly stats and keep the ``alerts`` table current."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from psycopg2.extensions import connection
from psycopg2.extras import Json

from pipeline import windows
from pipeline.alerts.detect import Thresholds, judge_recent, transition

log = logging.getLogger(__name__)
OVERALL = "overall"
SEVERITY_RANK = {"warning": 1, "critical": 2}


def _stats(cur, model: str, key_dim: tuple[str, str], start: datetime, end: datetime) -> tuple[int, int]:
    cur.execute(
        "SELECT coalesce(sum(stories), 0), coalesce(sum(negatives), 0) FROM hourly_stats "
        "WHERE model_version = %s AND dimension = %s AND key = %s AND hour >= %s AND hour < %s",
        (model, key_dim[0], key_dim[1], start, end),
    )
    n, k = cur.fetchone()
    return int(n), int(k)


def _per_hour(
    cur, model: str, key_dim: tuple[str, str], start: datetime, end: datetime
) -> dict[datetime, tuple[int, int]]:
    """(stories, negatives) by hour in [start, end): the judged hour and those pooled with it, in one query."""
    cur.execute(
        "SELECT hour, stories, negatives FROM hourly_stats "
        "WHERE model_version = %s AND dimension = %s AND key = %s AND hour >= %s AND hour < %s",
        (model, key_dim[0], key_dim[1], start, end),
    )
    return {h: (int(n), int(k)) for h, n, k in cur.fetchall()}


def _top_stories(cur, model: str, topic: str, hour: datetime, limit: int = 5) -> list[dict]:
    cur.execute(
        """
        SELECT a.id, a.title, a.url, f.name, s.p_negative
        FROM scores s JOIN articles a ON a.id = s.article_id JOIN feeds f ON f.id = a.feed_id
        WHERE s.model_version = %(m)s AND s.sentiment = 'negative'
          AND coalesce(a.published_at, a.fetched_at) >= %(h)s
          AND coalesce(a.published_at, a.fetched_at) < %(h)s + interval '1 hour'
          AND (%(t)s = 'overall' OR s.topic = %(t)s)
        ORDER BY s.p_negative DESC, a.id LIMIT %(n)s
        """,
        {"m": model, "h": hour, "t": topic, "n": limit},
    )
    return [
        {"article_id": i, "title": t, "url": u, "source": src, "p_negative": round(float(p), 4)}
        for i, t, u, src, p in cur.fetchall()
    ]


def detect_hour(conn: connection, model: str, hour: datetime, th: Thresholds) -> dict[str, list[int]]:
    """Judge every topic (and overall) for one hour; open, update or resolve alerts."""
    out: dict[str, list[int]] = {"opened": [], "updated": [], "resolved": []}
    base_start = hour - timedelta(days=th.baseline_days)
    base_end = hour - th.hours_before * windows.HOUR  # the baseline excludes the hours pooled with this one
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('finsent.detect'), hashtext(%s))", (model,))
        prior_n, prior_k = _stats(cur, model, ("overall", "all"), base_start, base_end)
        prior_share = prior_k / prior_n if prior_n else 0.2
        cur.execute(
            "SELECT key FROM hourly_stats WHERE model_version = %s AND dimension = 'topic' AND hour = %s", (model, hour)
        )
        topics = {r[0] for r in cur.fetchall()}
        cur.execute("SELECT topic FROM alerts WHERE model_version = %s AND status <> 'resolved'", (model,))
        topics |= {r[0] for r in cur.fetchall()}
        for topic in sorted(topics | {OVERALL}):
            key = ("overall", "all") if topic == OVERALL else ("topic", topic)
            recent = _per_hour(cur, model, key, base_end, hour + windows.HOUR)
            n, k = recent.get(hour, (0, 0))
            prev = [recent.get(hour - i * windows.HOUR, (0, 0)) for i in range(1, th.hours_before + 1)]
            bn, bk = _stats(cur, model, key, base_start, base_end)
            verdict = judge_recent((n, k), prev, (bn, bk), prior_share, th)
            cur.execute(
                "SELECT id, started_at, last_hour FROM alerts WHERE topic = %s AND model_version = %s "
                "AND status <> 'resolved' FOR UPDATE",
                (topic, model),
            )
            live = cur.fetchone()
            if live and hour < live[1]:
                continue  # a re-run of an hour before this surge began: leave the later alert alone
            step = transition(live is not None, verdict)
            fields = {
                "topic": topic,
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
                fields["top"] = Json(_top_stories(cur, model, topic, hour))
                cur.execute(
                    """
                    INSERT INTO alerts (topic, model_version, started_at, last_hour, window_end, observed_stories,
                        observed_negatives, observed_share, baseline_share, baseline_stories, p_value, score,
                        severity, peak_severity, top_stories)
                    VALUES (%(topic)s, %(model)s, %(hour)s, %(hour)s, %(end)s, %(n)s, %(k)s, %(share)s, %(base)s,
                            %(bn)s, %(p)s, %(score)s, %(sev)s, %(sev)s, %(top)s)
                    ON CONFLICT (topic, model_version, started_at) DO NOTHING
                    RETURNING id
                    """,
                    fields,
                )
                row = cur.fetchone()
                if row:
                    out["opened"].append(row[0])
                    log.warning(
                        "surge alert opened: %s %s at %s: %d/%d negative (%.0f%% vs %.0f%% baseline, p=%.2g)",
                        step.severity,
                        topic,
                        hour.isoformat(),
                        k,
                        n,
                        100 * verdict.observed_share,
                        100 * verdict.baseline_share,
                        verdict.p_value,
                    )
            elif step.action == "update" and step.severity:
                fields["top"] = Json(_top_stories(cur, model, topic, hour))
                fields["id"] = live[0]
                cur.execute(
                    """
                    UPDATE alerts SET
                        last_hour = greatest(last_hour, %(hour)s),
                        window_end = greatest(window_end, %(end)s),
                        hours_surging = greatest(hours_surging,
                            (extract(epoch FROM %(hour)s - started_at) / 3600)::int + 1),
                        observed_stories = CASE WHEN %(hour)s >= last_hour THEN %(n)s ELSE observed_stories END,
                        observed_negatives = CASE WHEN %(hour)s >= last_hour THEN %(k)s ELSE observed_negatives END,
                        observed_share = CASE WHEN %(hour)s >= last_hour THEN %(share)s ELSE observed_share END,
                        baseline_share = CASE WHEN %(hour)s >= last_hour THEN %(base)s ELSE baseline_share END,
                        baseline_stories = CASE WHEN %(hour)s >= last_hour THEN %(bn)s ELSE baseline_stories END,
                        p_value = least(p_value, %(p)s), score = greatest(score, %(score)s),
                        severity = CASE WHEN %(hour)s >= last_hour THEN %(sev)s ELSE severity END,
                        peak_severity = CASE WHEN peak_severity = 'critical' OR %(sev)s = 'critical'
                                             THEN 'critical' ELSE 'warning' END,
                        top_stories = CASE WHEN %(hour)s >= last_hour THEN %(top)s ELSE top_stories END,
                        updated_at = now()
                    WHERE id = %(id)s
                    """,
                    fields,
                )
                out["updated"].append(live[0])
            elif step.action == "resolve" and hour > live[2]:
                cur.execute(
                    "UPDATE alerts SET status = 'resolved', resolved_at = %s, updated_at = now() WHERE id = %s",
                    (hour, live[0]),
                )
                out["resolved"].append(live[0])
                log.info(
                    "surge alert %d resolved: %s back to %.0f%% negative", live[0], topic, 100 * verdict.observed_share
                )
    conn.commit()
    return out


def detect_window(conn: connection, model: str, window: tuple[datetime, datetime], th: Thresholds) -> dict:
    totals: dict[str, list[int]] = {"opened": [], "updated": [], "resolved": []}
    for hour in windows.hours(window):
        for k, v in detect_hour(conn, model, hour, th).items():
            totals[k].extend(x for x in v if x not in totals[k])
    return totals
