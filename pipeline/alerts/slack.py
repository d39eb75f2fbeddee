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
# Slack's documented Block Kit limits (api.slack.com/reference/block-kit/blocks): a section's text, a header's
# plain text, a context element, and the blocks of one message.
SECTION_MAX, HEADER_MAX, CONTEXT_MAX, MAX_BLOCKS = 3000, 150, 2000, 50
LONG_LINK = 300  # aggregator redirect links run 300-700 characters: dropped first when a section is too long


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


def _story_line(s: dict, links: str) -> str:
    url = s.get("url") if links == "all" or (links == "short" and len(s.get("url") or "") <= LONG_LINK) else None
    return f"• {link(url, s['title'])} ({escape(s['source'])}, p_negative {s['p_negative']:.2f})"


def _cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, never ending inside an escape such as ``&amp;``."""
    if len(text) <= limit:
        return text
    text = re.sub(r"&[a-z]*$", "", text[: limit - 1])
    return text + "…"


def fit_lines(title: str, lines: list[str], limit: int = SECTION_MAX) -> str:
    """``title`` and as many whole ``lines`` as fit in ``limit`` characters (the last one cut), saying how many
    were left out."""
    text = title + "\n" + ("\n".join(lines) or "none")
    if len(text) <= limit:
        return text
    out, shown = title, 0
    for line in lines:
        more = f"\n… {len(lines) - shown} more"
        if len(out) + 1 + len(line) + len(more) > limit:
            room = limit - len(out) - 1 - len(more)
            if room > 40:
                out, shown = out + "\n" + _cut(line, room), shown + 1
            break
        out, shown = out + "\n" + line, shown + 1
    rest = len(lines) - shown
    return _cut(out + (f"\n… {rest} more" if rest else ""), limit)


def stories_section(title: str, stories: list[dict], limit: int = SECTION_MAX) -> str:
    """The headline list within Slack's section limit: long links are dropped before any text is cut, then
    every link, and only then are lines cut."""
    for links in ("all", "short", "none"):
        text = title + "\n" + ("\n".join(_story_line(s, links) for s in stories) or "none")
        if len(text) <= limit:
            return text
    return fit_lines(title, [_story_line(s, "none") for s in stories], limit)


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
    first, *rest = facts.split("\n")
    blocks = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(f"[finsent] {sev} surge: {alert['subject']}", HEADER_MAX)},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": fit_lines(first, rest)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": stories_section("*Top negative stories*", stories[:5])}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": link(dash, "Open the alert in the dashboard")}]},
    ]
    return {"text": _cut(f"[finsent] {headline}", SECTION_MAX), "blocks": blocks[:MAX_BLOCKS]}


def digest_message(day, lines: list[str], top_negative: list[dict], dashboard_url: str) -> dict:
    """The daily digest (its summary ``lines`` and most negative headlines) as a webhook payload."""
    title = f"[finsent] Daily digest for {day:%Y-%m-%d} (UTC)"
    escaped = [escape(line) for line in lines]
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(title, HEADER_MAX)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": fit_lines(escaped[0] if escaped else "", escaped[1:])}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": stories_section("*Most negative headlines*", top_negative)},
        },
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": _cut(link(dashboard_url, "Open the dashboard"), CONTEXT_MAX)}],
        },
    ]
    return {"text": title, "blocks": blocks[:MAX_BLOCKS]}


def send(payload: dict, conn_id: str) -> None:
    """Post through the Slack provider's webhook hook (the URL lives in the Airflow connection).

    A webhook that hangs fails after FINSENT_SLACK_TIMEOUT_S; the delivery stays pending for the next run.
    """
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    from pipeline import config

    SlackWebhookHook(slack_webhook_conn_id=conn_id, timeout=config.slack_timeout_s()).send(
        text=payload["text"], blocks=payload["blocks"], unfurl_links=False, unfurl_media=False
    )
