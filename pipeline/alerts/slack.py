"""Slack messages for alerts and digests: rendering (pure) and sending through Airflow's Slack provider.

Feed text is hostile until shown otherwise. Slack reads ``<...>`` as links and
mentions (``<!channel>``, ``<https://x|click here>``) and, where mention
parsing is on, a bare ``@channel``/``@here``. So every piece of feed text is
escaped (``&``, ``<``, ``>`` as Slack documents) and every ``@`` in it is
followed by a word joiner, which shows nothing but breaks the mention. Only
links we build are links: http(s) URLs, with the characters that would end or
split a Slack link percent-encoded.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode, urlsplit

_WORD_JOINER = "\u2060"


def escape(text: str) -> str:
    """Feed text as inert Slack ``mrkdwn``: no links, no mentions, no control characters."""
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", " ", str(text))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("@", "@" + _WORD_JOINER)


def link(url: str | None, label: str) -> str:
    """``<url|label>`` for an http(s) URL; the escaped label alone otherwise."""
    label = escape(label).replace("|", "¦")
    if not url or urlsplit(url).scheme not in ("http", "https"):
        return label
    safe = quote(url, safe=":/?#[]@!$&'()*+,;=%~-._")  # '<', '>', '|', spaces and quotes encoded
    return f"<{safe.replace('|', '%7C')}|{label}>"


def alert_message(alert: dict, dashboard_url: str) -> dict:
    """Webhook payload: a plain ``text`` fallback and ``blocks`` (header, facts, top headlines, dashboard link)."""
    sev = alert["severity"].upper()
    obs, base = 100 * alert["observed_share"], 100 * alert["baseline_share"]
    what = {"entity": "Company", "overall": "Stream", "source": "Source"}.get(alert["dimension"], "Topic")
    name = escape(alert["subject"])
    headline = f"{sev} negative-news surge: {name} ({obs:.0f}% negative vs {base:.0f}% baseline)"
    dash = f"{dashboard_url.rstrip('/')}/?{urlencode({'page': 'Alerts', 'alert': alert['id']})}"
    facts = (
        f"*{what}:* {name}\n*Hour:* {alert['last_hour']:%Y-%m-%d %H:%M} UTC, surging {alert['hours_surging']} h\n"
        f"*Negative stories:* {alert['observed_negatives']} of {alert['observed_stories']} ({obs:.1f}%), "
        f"baseline {base:.1f}% over {alert['baseline_stories']} stories\n"
        f"*p-value:* {alert['p_value']:.2g}   *Model:* {escape(alert['model_version'])}"
    )
    stories = alert.get("top_stories") or []
    lines = [
        f"• {link(s.get('url'), s['title'])} ({escape(s['source'])}, p_negative {s['p_negative']:.2f})"
        for s in stories[:5]
    ]
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"[finsent] {sev} surge: {alert['subject']}"[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": facts}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "*Top negative stories*\n" + ("\n".join(lines) or "none")},
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": link(dash, "Open the alert in the dashboard")}]},
    ]
    return {"text": f"[finsent] {headline}", "blocks": blocks}


def digest_message(day, lines: list[str], top_negative: list[dict], dashboard_url: str) -> dict:
    """The daily digest (its summary ``lines`` and most negative headlines) as a webhook payload."""
    heads = [
        f"• {link(s.get('url'), s['title'])} ({escape(s['source'])}, p_negative {s['p_negative']:.2f})"
        for s in top_negative
    ]
    title = f"[finsent] Daily digest for {day:%Y-%m-%d} (UTC)"
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": title}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(escape(line) for line in lines)}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "*Most negative headlines*\n" + ("\n".join(heads) or "none")},
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": link(dashboard_url, "Open the dashboard")}]},
    ]
    return {"text": title, "blocks": blocks}


def send(payload: dict, conn_id: str) -> None:
    """Post through the Slack provider's webhook hook (the URL lives in the Airflow connection).

    A webhook that hangs fails after FINSENT_SLACK_TIMEOUT_S; the delivery stays pending for the next run.
    """
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    from pipeline import config

    SlackWebhookHook(slack_webhook_conn_id=conn_id, timeout=config.slack_timeout_s()).send(
        text=payload["text"], blocks=payload["blocks"], unfurl_links=False, unfurl_media=False
    )
