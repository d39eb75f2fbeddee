"""Alert delivery: email rendering (pure), sending through the Airflow smtp and Slack providers, tracking.

Routing (``config/alert_rules.yaml``, ``routing``) turns each alert into one
delivery per channel: ``email`` (all the recipients of every matching route,
one message) and ``slack:NAME`` per Slack channel. Each (alert, channel) row
of ``alert_deliveries`` is claimed with ``FOR UPDATE SKIP LOCKED``, sent, and
marked ``sent`` in the same transaction right after the server accepts it, so
a channel is delivered at most once (at-least-once across a crash between
acceptance and commit) and one channel's failure neither blocks nor repeats
another's. A failed send records the error and stays due: the task's retries
and later runs try it again. ``alerts.notified_at`` is set once every routed
channel has delivered.
"""

from __future__ import annotations

import html
import logging
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import urlencode, urlsplit

from psycopg2.extensions import connection

from pipeline.alerts import outbox, slack
from pipeline.alerts.routing import Routing

log = logging.getLogger(__name__)


class NotifyError(RuntimeError):
    """At least one alert could not be sent; the others were."""


def safe_link(url: str | None) -> str | None:
    return url if url and urlsplit(url).scheme in ("http", "https") else None


def render(alert: dict, dashboard_url: str, chart_cid: str | None = None) -> tuple[str, str, str]:
    """(subject, plain text, HTML). Feed text is escaped; only http(s) links are linked. ``chart_cid``: the
    Content-ID of an inline chart to show."""
    subject_name = alert["subject"]
    what = {"entity": "Company", "overall": "Stream", "source": "Source"}.get(alert["dimension"], "Topic")
    sev = alert["severity"].upper()
    obs, base = 100 * alert["observed_share"], 100 * alert["baseline_share"]
    window = f"{alert['last_hour']:%Y-%m-%d %H:%M}–{alert['window_end']:%H:%M} UTC"
    subject = f"[finsent] {sev} negative-news surge: {subject_name} ({obs:.0f}% negative vs {base:.0f}% baseline)"
    link = f"{dashboard_url.rstrip('/')}/?{urlencode({'page': 'Alerts', 'alert': alert['id']})}"
    facts = [
        (what, subject_name),
        ("Severity", sev),
        ("Hour", window),
        ("Surging since", f"{alert['started_at']:%Y-%m-%d %H:%M} UTC ({alert['hours_surging']} h)"),
        ("Negative stories", f"{alert['observed_negatives']} of {alert['observed_stories']} ({obs:.1f}%)"),
        ("Baseline share", f"{base:.1f}% over {alert['baseline_stories']} stories before the judged span"),
        ("p-value (binomial)", f"{alert['p_value']:.2g}"),
        ("z-score", f"{alert['score']:.1f}"),
        ("Model", alert["model_version"]),
    ]
    stories = alert.get("top_stories") or []
    text = [subject, ""] + [f"{k}: {v}" for k, v in facts] + ["", "Top negative stories:"]
    text += [
        f"- {s['title']} ({s['source']}, p_negative {s['p_negative']:.2f}) {s.get('url') or ''}".rstrip()
        for s in stories
    ]
    text += ["", f"Dashboard: {link}"]
    rows = "".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts)
    items = []
    for s in stories:
        title = html.escape(s["title"])
        url = safe_link(s.get("url"))
        title_html = f'<a href="{html.escape(url, quote=True)}">{title}</a>' if url else title
        items.append(
            f"<li>{title_html} <small>({html.escape(s['source'])}, p_negative {s['p_negative']:.2f})</small></li>"
        )
    body = (
        f"<html><body><h2>{html.escape(subject)}</h2>"
        + (
            f'<p><img src="cid:{html.escape(chart_cid, quote=True)}" width="560" height="200" '
            f'alt="negative share per hour against the baseline"></p>'
            if chart_cid
            else ""
        )
        + f"<table>{rows}</table>"
        f"<h3>Top negative stories</h3><ol>{''.join(items) or '<li>none stored</li>'}</ol>"
        f'<p><a href="{html.escape(link, quote=True)}">Open the alert in the dashboard</a></p></body></html>'
    )
    return subject, "\n".join(text) + "\n", body


def message_id(alert: dict, from_email: str) -> str:
    """The same Message-ID for every attempt at one alert.

    Delivery is at-least-once (a crash between the server's acceptance and the
    commit resends); a stable ID lets mail systems and clients fold such a
    resend into the first copy.
    """
    domain = from_email.rsplit("@", 1)[-1].strip(" >") or "finsent.local"
    return f"<finsent-alert-{alert['id']}-{alert['started_at']:%Y%m%dT%H}@{domain}>"


def build_message(
    alert: dict, to: list[str], from_email: str, dashboard_url: str, chart: bytes | None = None
) -> EmailMessage:
    """Text and HTML alternatives; with ``chart`` (PNG) the HTML shows it inline (multipart/related)."""
    cid = make_msgid(domain="finsent.local") if chart else None
    subject, text, body = render(alert, dashboard_url, cid[1:-1] if cid else None)
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = from_email
    msg["To"] = ", ".join(to)
    msg["X-Finsent-Alert-Id"] = str(alert["id"])
    msg["Message-ID"] = message_id(alert, from_email)
    msg.set_content(text)
    msg.add_alternative(body, subtype="html")
    if chart:
        msg.get_payload()[1].add_related(chart, maintype="image", subtype="png", cid=cid, filename="surge.png")
    return msg


_SERIES = """
SELECT hour, stories, negatives FROM hourly_stats
WHERE model_version = %s AND dimension = %s AND key = %s AND hour >= %s AND hour < %s ORDER BY hour
"""


def surge_chart(conn: connection, alert: dict, hours: int = 48) -> bytes | None:
    """The alert's subject over the ``hours`` before its latest hour ended, as a PNG (None if it cannot be drawn)."""
    from pipeline.alerts.chart import surge_png

    end = alert["window_end"]
    start = end - timedelta(hours=hours)
    try:
        with conn.cursor() as cur:
            cur.execute(_SERIES, (alert["model_version"], alert["dimension"], alert["key"], start, end))
            got = {h: (n, k) for h, n, k in cur.fetchall()}
        series = [(start + timedelta(hours=i), *got.get(start + timedelta(hours=i), (0, 0))) for i in range(hours)]
        return surge_png(
            series, alert["baseline_share"], alert["started_at"], f"{alert['subject']}: negative share per hour"
        )
    except Exception as exc:  # a picture is a nicety: the alert goes out without it
        log.warning("alert %s: no chart (%s)", alert.get("id"), exc)
        return None


_MISSING = object()


def smtp_client(hook):  # an open SmtpHook -> its smtplib.SMTP client
    """The one place that reaches into the provider's private ``SmtpHook._smtp_client``.

    The hook's public ``send_email_smtp`` builds its own message and cannot send
    the multipart (text + HTML, fixed Message-ID) message alerts need. If a
    provider release renames the attribute, this fails loudly (and so does
    ``tests/test_alerts.py::test_smtp_hook_still_exposes_its_client``).
    """
    client = getattr(hook, "_smtp_client", _MISSING)
    if client is _MISSING:
        raise NotifyError(
            "apache-airflow-providers-smtp no longer exposes SmtpHook._smtp_client: "
            "update pipeline.alerts.notify.smtp_client for this provider version"
        )
    if client is None:
        raise NotifyError(f"SMTP connection {hook.smtp_conn_id!r} did not open")
    return client


def send(msg: EmailMessage, smtp_conn_id: str) -> None:
    """Send through the smtp provider's hook (connection, TLS/SSL, auth and retries from the Airflow connection)."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=smtp_conn_id) as hook:
        smtp_client(hook).send_message(msg)


_COLUMNS = [
    "id",
    "dimension",
    "key",
    "subject",
    "watchlists",
    "model_version",
    "started_at",
    "last_hour",
    "window_end",
    "observed_stories",
    "observed_negatives",
    "observed_share",
    "baseline_share",
    "baseline_stories",
    "p_value",
    "score",
    "severity",
    "hours_surging",
    "top_stories",
]


# What the alert is about, as people read it: the topic, "overall", or the company's name and ticker.
SUBJECT_SQL = """(CASE WHEN al.dimension = 'overall' THEN 'overall'
     WHEN al.dimension = 'entity' THEN coalesce((SELECT e.name || coalesce(' (' || e.tickers[1] || ')', '')
                                                 FROM entities e WHERE e.id = al.key), al.key)
     ELSE al.key END) || CASE WHEN al.kind = 'regime' THEN ' (sustained rise)' ELSE '' END"""
_SELECT = {
    "subject": SUBJECT_SQL,
    "watchlists": "ARRAY(SELECT we.watchlist FROM watchlist_entities we "
    "WHERE al.dimension = 'entity' AND we.entity_id = al.key ORDER BY 1)",
}
_DUE = (
    "SELECT "
    + ", ".join(_SELECT.get(c, f"al.{c}") for c in _COLUMNS)
    + " FROM alerts al WHERE al.status IN ('open', 'acknowledged') AND al.notified_at IS NULL "
    "AND al.window_end > %s AND al.window_end <= %s ORDER BY al.id"
)
_PLAN = "INSERT INTO alert_deliveries (alert_id, channel, target) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
_NEXT_DELIVERY = (
    "SELECT d.alert_id, d.channel, d.target FROM alert_deliveries d WHERE d.status <> 'sent' "
    "AND d.alert_id = ANY(%s) AND NOT ((d.alert_id::text || ' ' || d.channel) = ANY(%s)) "
    "ORDER BY d.alert_id, d.channel LIMIT 1 FOR UPDATE OF d SKIP LOCKED"
)
_MARK = (
    "UPDATE alert_deliveries SET status = %(status)s, attempts = attempts + 1, last_error = %(error)s, "
    "updated_at = now(), sent_at = CASE WHEN %(status)s = 'sent' THEN now() END "
    "WHERE alert_id = %(id)s AND channel = %(channel)s"
)
# The alert's own summary of its deliveries: attempts so far, the failing channels' errors, and
# notified_at once nothing is left to send.
_ROLL_UP = """
UPDATE alerts al SET notify_attempts = al.notify_attempts + 1,
    last_notify_error = (SELECT string_agg(d.channel || ': ' || d.last_error, '; ' ORDER BY d.channel)
                         FROM alert_deliveries d WHERE d.alert_id = al.id AND d.status = 'failed'),
    notified_at = CASE WHEN EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert_id = al.id AND d.status <> 'sent')
                       THEN NULL ELSE now() END
WHERE al.id = %s
"""


def notify_pending(
    conn: connection,
    since: datetime,
    until: datetime,
    *,
    routing: Routing,
    smtp_conn_id: str,
    from_email: str,
    dashboard_url: str,
) -> dict:
    """Deliver every live (open or acknowledged), undelivered alert whose latest hour ended in (since, until].

    An acknowledgement on the dashboard never silences the risk team's email.
    Returns the ids of alerts fully delivered by this call and the (alert, channel) pairs sent.
    """
    with conn.cursor() as cur:
        cur.execute(_DUE, (since, until))
        due = {row[0]: dict(zip(_COLUMNS, row)) for row in cur.fetchall()}
        unrouted = []
        for alert in due.values():
            plan = routing.deliveries(alert)
            for channel, target in plan.items():
                cur.execute(_PLAN, (alert["id"], channel, target))
            if not plan:
                unrouted.append(alert["id"])
                cur.execute(
                    "UPDATE alerts SET notify_attempts = notify_attempts + 1, last_notify_error = %s WHERE id = %s",
                    (f"no route sends alerts about {alert['subject']!r} anywhere", alert["id"]),
                )
    conn.commit()
    done: list[int] = []

    def mark(cur, row: tuple, status: str, error: str | None) -> None:
        cur.execute(_MARK, {"status": status, "error": error, "id": row[0], "channel": row[1]})
        cur.execute(_ROLL_UP + " RETURNING notified_at IS NOT NULL", (row[0],))
        if cur.fetchone()[0]:
            done.append(row[0])

    result = outbox.drain(
        conn,
        _NEXT_DELIVERY,
        (list(due),),
        key=lambda row: f"{row[0]} {row[1]}",
        send=lambda row: deliver(conn, due[row[0]], row[1], row[2], smtp_conn_id, from_email, dashboard_url),
        mark=mark,
        describe=lambda row: f"alert {row[0]} ({due[row[0]]['subject']}, {due[row[0]]['severity']}) to {row[1]}",
    )
    failed = [(a, c) for a, c, _ in result.failed]
    if failed or unrouted:
        raise NotifyError(
            f"{len(failed)} delivery(ies) failed {failed}; {len(unrouted)} alert(s) with no route {unrouted}; "
            f"{len(result.sent)} sent"
        )
    return {"sent": done, "deliveries": [f"{a} {c}" for a, c, _ in result.sent]}


def deliver(
    conn: connection, alert: dict, channel: str, target: str, smtp_conn_id: str, from_email: str, dashboard_url: str
) -> None:
    """One alert to one channel; raises when the server does not accept it."""
    if channel == "email":
        to = [t.strip() for t in target.split(",") if t.strip()]
        send(build_message(alert, to, from_email, dashboard_url, surge_chart(conn, alert)), smtp_conn_id)
    elif channel.startswith("slack:"):
        slack.send(slack.alert_message(alert, dashboard_url), target)
    else:
        raise NotifyError(f"unknown channel {channel!r}")


def window_for_notify(
    window_start: datetime, window_end: datetime, live: bool, lookback_h: float, force: bool
) -> tuple[datetime, datetime] | None:
    """Which alerts a run may email (pure): a live run also retries recent unsent ones;
    a backfill sends nothing unless forced, and then only its own window's."""
    if live:
        return window_end - timedelta(hours=lookback_h), window_end
    if force:
        return window_start, window_end
    return None
