"""The daily digest: what the previous UTC day's news looked like, for people who do not watch the dashboard.

Facts are read from PostgreSQL (hourly aggregates, alerts, scores) for the
active model; rendering is pure; delivery is tracked per (day, channel) in
``digest_deliveries`` exactly like alerts, so re-running a day never sends a
second copy and a failed channel is retried without repeating the others.
A day with no stored stories still gets a digest that says so: silence would
look like an outage.
"""

from __future__ import annotations

import html
import logging
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage

from psycopg2.extensions import connection

from pipeline.alerts import outbox, slack
from pipeline.alerts.notify import SUBJECT_SQL, NotifyError, safe_link, send
from pipeline.alerts.routing import Routing

log = logging.getLogger(__name__)

# Read from the scores themselves (not hourly_stats), so a day whose aggregates were never rebuilt still adds up.
_SCORED = """
WITH d AS (
    SELECT a.story_time >= %(d)s AS today, s.topic, s.sentiment = 'negative' AS neg, s.p_positive - s.p_negative AS m
    FROM scores s JOIN articles a ON a.id = s.article_id
    WHERE s.model_version = %(m)s AND a.story_time >= %(d)s - interval '7 days' AND a.story_time < %(e)s)
SELECT topic, count(*) FILTER (WHERE today), count(*) FILTER (WHERE today AND neg), sum(m) FILTER (WHERE today),
       count(*) FILTER (WHERE NOT today), count(*) FILTER (WHERE NOT today AND neg)
FROM d GROUP BY topic
"""
_COMPANIES = """
SELECT es.entity_id, count(*) FILTER (WHERE a.story_time >= %(d)s),
       count(*) FILTER (WHERE a.story_time >= %(d)s AND es.sentiment = 'negative'), 0,
       count(*) FILTER (WHERE a.story_time < %(d)s), count(*) FILTER (WHERE a.story_time < %(d)s AND es.sentiment = 'negative')
FROM entity_scores es JOIN articles a ON a.id = es.article_id
WHERE es.model_version = %(m)s AND a.story_time >= %(d)s - interval '7 days' AND a.story_time < %(e)s
  AND es.entity_id IN (SELECT entity_id FROM watchlist_entities)
GROUP BY es.entity_id
"""
_NAMES = "SELECT id, name || coalesce(' (' || tickers[1] || ')', '') FROM entities WHERE id = ANY(%s)"
_ALERTS = f"""
SELECT al.id, {SUBJECT_SQL}, al.severity, al.status, al.observed_share, al.baseline_share, al.started_at
FROM alerts al WHERE al.model_version = %(m)s
  AND (al.started_at >= %(d)s AND al.started_at < %(e)s
       OR al.started_at < %(e)s AND (al.resolved_at IS NULL OR al.resolved_at >= %(d)s))
ORDER BY al.severity = 'critical' DESC, al.started_at
"""
_NEGATIVE = """
SELECT a.title, a.url, f.name, s.p_negative FROM scores s JOIN articles a ON a.id = s.article_id
JOIN feeds f ON f.id = a.feed_id
WHERE s.model_version = %(m)s AND s.sentiment = 'negative' AND a.story_time >= %(d)s AND a.story_time < %(e)s
ORDER BY s.p_negative DESC, a.id LIMIT 5
"""


def facts(conn: connection, model_version: str, day: date, min_stories: int = 5) -> dict:
    """Everything the digest says about ``day`` (UTC), compared with the 7 days before it."""
    d = datetime.combine(day, time(), tzinfo=UTC)
    p = {"m": model_version, "d": d, "e": d + timedelta(days=1), "min": min_stories}
    with conn.cursor() as cur:
        cur.execute(_SCORED, p)
        topics = cur.fetchall()
        cur.execute(_COMPANIES, p)
        companies = cur.fetchall()
        n, k, sent_sum, bn, bk = (sum(float(r[i] or 0) for r in topics) for i in range(1, 6))
        movers = {}
        for dim, rows_ in (("topic", topics), ("entity", companies)):
            rows = [
                {"key": key, "stories": int(n_), "share": k_ / n_, "baseline": (bk_ / bn_) if bn_ else None}
                for key, n_, k_, _, bn_, bk_ in rows_
                if n_ >= min_stories
            ]
            rows.sort(key=lambda r: (-(r["share"] - (r["baseline"] or 0.0)), r["key"]))
            movers[dim] = rows[:5]
        if movers["entity"]:
            cur.execute(_NAMES, ([r["key"] for r in movers["entity"]],))
            names = dict(cur.fetchall())
            for r in movers["entity"]:
                r["key"] = names.get(r["key"], r["key"])
        cur.execute(_ALERTS, p)
        alerts = [
            {"id": i, "subject": s, "severity": sev, "status": st, "share": o, "baseline": b, "started_at": t}
            for i, s, sev, st, o, b, t in cur.fetchall()
        ]
        cur.execute(_NEGATIVE, p)
        top = [{"title": t, "url": u, "source": f, "p_negative": float(pn)} for t, u, f, pn in cur.fetchall()]
    conn.commit()
    return {
        "day": day,
        "model_version": model_version,
        "stories": int(n),
        "negatives": int(k),
        "mean_sentiment": (sent_sum / n) if n else None,
        "baseline_stories": int(bn),
        "baseline_share": (bk / bn) if bn else None,
        "topics": movers["topic"],
        "companies": movers["entity"],
        "alerts": alerts,
        "top_negative": top,
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def summary_lines(f: dict) -> list[str]:
    """The digest's facts as short lines (shared by email and Slack)."""
    if not f["stories"]:
        lines = [f"No stories were stored and scored for {f['day']:%Y-%m-%d} (UTC)."]
    else:
        lines = [
            f"Stories: {f['stories']:,}, negative {_pct(f['negatives'] / f['stories'])} "
            f"(the 7 days before: {_pct(f['baseline_share'])} of {f['baseline_stories']:,}); "
            f"mean sentiment {f['mean_sentiment']:+.3f}."
        ]
    lines.append(
        f"Alerts open during the day: {len(f['alerts'])}"
        + "".join(
            f"\n  - #{a['id']} {a['subject']}: {a['severity']}, {a['status']}, "
            f"{_pct(a['share'])} negative vs {_pct(a['baseline'])}"
            for a in f["alerts"][:10]
        )
    )
    for what, rows in (("Topics", f["topics"]), ("Watchlist companies", f["companies"])):
        if rows:
            lines.append(
                f"{what} by rise in negative share:"
                + "".join(
                    f"\n  - {r['key']}: {_pct(r['share'])} of {r['stories']} (before: {_pct(r['baseline'])})"
                    for r in rows
                )
            )
    lines.append(f"Model: {f['model_version']}")
    return lines


def render(f: dict, dashboard_url: str) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of the digest email; feed text escaped, only http(s) links linked."""
    # no parentheses: Python's email folding would push the whole subject onto a continuation line
    subject = (
        f"[finsent] Daily digest, {f['day']:%Y-%m-%d} UTC: {f['stories']:,} stories, {len(f['alerts'])} alerts open"
    )
    lines = summary_lines(f)
    text = [subject, "", *lines, "", "Most negative headlines:"]
    text += [
        f"- {s['title']} ({s['source']}, p_negative {s['p_negative']:.2f}) {s['url'] or ''}".rstrip()
        for s in f["top_negative"]
    ]
    text += ["", f"Dashboard: {dashboard_url}"]
    paras = "".join(f"<pre>{html.escape(line)}</pre>" for line in lines)
    items = []
    for s in f["top_negative"]:
        title, url = html.escape(s["title"]), safe_link(s["url"])
        linked = f'<a href="{html.escape(url, quote=True)}">{title}</a>' if url else title
        items.append(f"<li>{linked} <small>({html.escape(s['source'])}, p_negative {s['p_negative']:.2f})</small></li>")
    dash = safe_link(dashboard_url)
    body = (
        f"<html><body><h2>{html.escape(subject)}</h2>{paras}<h3>Most negative headlines</h3>"
        f"<ol>{''.join(items) or '<li>none</li>'}</ol>"
        + (f'<p><a href="{html.escape(dash, quote=True)}">Open the dashboard</a></p>' if dash else "")
        + "</body></html>"
    )
    return subject, "\n".join(text) + "\n", body


def build_message(f: dict, to: list[str], from_email: str, dashboard_url: str) -> EmailMessage:
    subject, text, body = render(f, dashboard_url)
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = from_email
    msg["To"] = ", ".join(to)
    domain = from_email.rsplit("@", 1)[-1].strip(" >") or "finsent.local"
    msg["Message-ID"] = f"<finsent-digest-{f['day']:%Y%m%d}@{domain}>"  # the same on every attempt
    msg.set_content(text)
    msg.add_alternative(body, subtype="html")
    return msg


_NEXT = (
    "SELECT channel, target FROM digest_deliveries WHERE day = %s AND status <> 'sent' "
    "AND NOT (channel = ANY(%s)) ORDER BY channel LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_MARK = (
    "UPDATE digest_deliveries SET status = %(status)s, attempts = attempts + 1, last_error = %(error)s, "
    "updated_at = now(), sent_at = CASE WHEN %(status)s = 'sent' THEN now() END WHERE day = %(day)s AND channel = %(channel)s"
)


def send_digest(
    conn: connection,
    day: date,
    *,
    model_version: str,
    routing: Routing,
    smtp_conn_id: str,
    from_email: str,
    dashboard_url: str,
) -> dict:
    """Deliver ``day``'s digest on every channel routing names that has not had it; raise if any failed."""
    plan = routing.digest_deliveries()
    if not plan:
        log.info("no digest recipients configured (routing.digest): nothing to send")
        return {"day": day.isoformat(), "sent": [], "skipped": "no digest route"}
    with conn.cursor() as cur:
        for channel, target in plan.items():
            cur.execute(
                "INSERT INTO digest_deliveries (day, channel, target) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (day, channel, target),
            )
        cur.execute("SELECT count(*) FROM digest_deliveries WHERE day = %s AND status <> 'sent'", (day,))
        pending = cur.fetchone()[0]
    conn.commit()
    if not pending:
        return {"day": day.isoformat(), "sent": []}
    summary = facts(conn, model_version, day)  # read once, before any delivery row is claimed

    def deliver(row: tuple) -> None:
        channel, target = row
        if channel == "email":
            to = [t.strip() for t in target.split(",") if t.strip()]
            send(build_message(summary, to, from_email, dashboard_url), smtp_conn_id)
        elif channel.startswith("slack:"):
            lines = summary_lines(summary)
            slack.send(slack.digest_message(summary["day"], lines, summary["top_negative"], dashboard_url), target)
        else:
            raise NotifyError(f"unknown channel {channel!r}")

    result = outbox.drain(
        conn,
        _NEXT,
        (day,),
        key=lambda row: row[0],
        send=deliver,
        mark=lambda cur, row, status, error: cur.execute(
            _MARK, {"status": status, "error": error, "day": day, "channel": row[0]}
        ),
        describe=lambda row: f"digest {day} to {row[0]}",
    )
    sent, failed = [c for c, _ in result.sent], [c for c, _ in result.failed]
    if failed:
        raise NotifyError(f"digest {day}: {len(failed)} channel(s) failed {failed}; {len(sent)} sent")
    return {"day": day.isoformat(), "sent": sent}
