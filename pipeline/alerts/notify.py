"""Alert emails: rendering (pure) and sending through the Airflow smtp provider.

Each alert is emailed at most once: alerts are taken one at a time with
``FOR UPDATE SKIP LOCKED`` and ``notified_at`` is set in the same
transaction right after the SMTP server accepts the message. A failed send
records the error, leaves ``notified_at`` empty (the alert is retried by the
task's retries and by later runs) and never marks the alert as sent.
"""

from __future__ import annotations

import html
import logging
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import yaml
from psycopg2.extensions import connection

log = logging.getLogger(__name__)


class NotifyError(RuntimeError):
    """At least one alert could not be sent; the others were."""


def recipients_for(alert: dict, recipients_file: Path) -> list[str]:
    """``default`` gets everything; ``topics`` adds people per topic (or ``overall``); ``watchlists`` adds
    people for every company on that watchlist."""
    doc = yaml.safe_load(Path(recipients_file).read_text()) or {}
    people = []
    if alert["dimension"] in ("topic", "overall"):
        people += list((doc.get("topics") or {}).get(alert["subject"]) or [])
    for watchlist in alert.get("watchlists") or []:
        people += list((doc.get("watchlists") or {}).get(watchlist) or [])
    people += list(doc.get("default") or [])
    return list(dict.fromkeys(p.strip() for p in people if isinstance(p, str) and p.strip()))


def _safe_link(url: str | None) -> str | None:
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
        url = _safe_link(s.get("url"))
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
SUBJECT_SQL = """CASE WHEN al.dimension = 'overall' THEN 'overall'
     WHEN al.dimension = 'entity' THEN coalesce((SELECT e.name || coalesce(' (' || e.tickers[1] || ')', '')
                                                 FROM entities e WHERE e.id = al.key), al.key)
     ELSE al.key END"""
_SELECT = {
    "subject": SUBJECT_SQL,
    "watchlists": "ARRAY(SELECT we.watchlist FROM watchlist_entities we "
    "WHERE al.dimension = 'entity' AND we.entity_id = al.key ORDER BY 1)",
}
_NEXT_UNSENT = (
    "SELECT "
    + ", ".join(_SELECT.get(c, f"al.{c}") for c in _COLUMNS)
    + " FROM alerts al WHERE al.status IN ('open', 'acknowledged') AND al.notified_at IS NULL "
    "AND al.window_end > %s AND al.window_end <= %s AND NOT (al.id = ANY(%s)) ORDER BY al.id LIMIT 1 "
    "FOR UPDATE OF al SKIP LOCKED"
)


def notify_pending(
    conn: connection,
    since: datetime,
    until: datetime,
    *,
    smtp_conn_id: str,
    from_email: str,
    recipients_file: Path,
    dashboard_url: str,
) -> dict:
    """Email every live (open or acknowledged), unsent alert whose latest hour ended in (since, until].

    An acknowledgement on the dashboard never silences the risk team's email.
    """
    sent, failed = [], []
    skip: list[int] = []
    while True:
        with conn.cursor() as cur:
            cur.execute(_NEXT_UNSENT, (since, until, skip))
            row = cur.fetchone()
            if row is None:
                conn.commit()
                break
            alert = dict(zip(_COLUMNS, row))
            to = recipients_for(alert, recipients_file)
            try:
                if not to:
                    raise NotifyError(f"no recipients for {alert['subject']!r} in {recipients_file}")
                send(build_message(alert, to, from_email, dashboard_url, surge_chart(conn, alert)), smtp_conn_id)
            except Exception as exc:  # SMTP outage, refused recipients, bad connection
                cur.execute(
                    "UPDATE alerts SET notify_attempts = notify_attempts + 1, last_notify_error = %s WHERE id = %s",
                    (f"{type(exc).__name__}: {exc}"[:500], alert["id"]),
                )
                conn.commit()
                failed.append(alert["id"])
                skip.append(alert["id"])
                log.error("alert %d not sent: %s", alert["id"], exc)
                continue
            cur.execute(
                "UPDATE alerts SET notified_at = now(), notify_attempts = notify_attempts + 1, "
                "last_notify_error = NULL WHERE id = %s",
                (alert["id"],),
            )
            conn.commit()
            sent.append(alert["id"])
            log.info("alert %d (%s, %s) emailed to %s", alert["id"], alert["subject"], alert["severity"], ", ".join(to))
    if failed:
        raise NotifyError(f"{len(failed)} alert(s) not sent ({failed}); {len(sent)} sent")
    return {"sent": sent}


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
