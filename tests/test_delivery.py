"""Alert routing, Slack and the daily digest: real PostgreSQL, aiosmtpd and an HTTP webhook server on 127.0.0.1."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from pipeline import tasks
from pipeline.alerts import routing, slack
from pipeline.alerts.notify import NotifyError
from pipeline.classify.model.labels import TOPICS
from tests.helpers import SMTPServer, WebhookServer, query
from tests.seeding import HOSTILE, H, seed, week_of_normal, window

# A headline written to abuse a chat channel: a broadcast mention, a bare @here, a forged link.
CHAT_HOSTILE = "<!channel> @here Refinery fire <https://evil.example/login|Read the report> & more"

ROUTES = """
routing:
  slack:
    risk-chat: {conn_id: finsent_slack_test}
  routes:
    - {name: risk team, email: [risk-team@example.com]}
    - {name: oil chat, topics: [Energy | Oil], slack: [risk-chat]}
    - {name: cro, topics: [overall], min_severity: critical, email: [cro@example.com]}
  digest:
    email: [digest@example.com]
    slack: [risk-chat]
"""


@pytest.fixture()
def chat(monkeypatch, tmp_path):
    """A webhook server, the Airflow connection that points at it, and a rules file routing to it."""
    with WebhookServer() as server:
        monkeypatch.setenv(
            "AIRFLOW_CONN_FINSENT_SLACK_TEST", json.dumps({"conn_type": "slackwebhook", "password": server.url})
        )
        rules = tmp_path / "alert_rules.yaml"
        rules.write_text(ROUTES)
        monkeypatch.setenv("FINSENT_ALERT_RULES", str(rules))
        yield server


def parse(text: str, watchlists=None):
    import yaml

    return routing.parse(yaml.safe_load(text)["routing"], "routing", tuple(TOPICS), watchlists)


def test_routes_match_topics_overall_watchlists_companies_and_severity():
    desk = "    - {name: desk, watchlists: [banks], companies: [acme], email: [desk@example.com]}\n"
    r = parse(ROUTES.replace("  digest:", desk + "  digest:"))
    oil = {"dimension": "topic", "key": "Energy | Oil", "severity": "warning"}
    assert r.deliveries(oil) == {"email": "risk-team@example.com", "slack:risk-chat": "finsent_slack_test"}
    overall = {"dimension": "overall", "key": "all", "severity": "warning"}
    assert r.deliveries(overall) == {"email": "risk-team@example.com"}  # the CRO route wants critical only
    assert r.deliveries({**overall, "severity": "critical"}) == {"email": "risk-team@example.com, cro@example.com"}
    bank = {"dimension": "entity", "key": "zbank", "severity": "warning", "watchlists": ["banks"]}
    assert r.deliveries(bank)["email"] == "risk-team@example.com, desk@example.com"
    acme = {"dimension": "entity", "key": "acme", "severity": "warning", "watchlists": []}
    assert r.deliveries(acme)["email"] == "risk-team@example.com, desk@example.com"
    other = {"dimension": "entity", "key": "other", "severity": "warning", "watchlists": ["tech"]}
    assert r.deliveries(other) == {"email": "risk-team@example.com"}
    assert r.digest_deliveries() == {"email": "digest@example.com", "slack:risk-chat": "finsent_slack_test"}
    rows = r.describe()
    assert rows[-1]["route"] == "daily digest" and "finsent_slack_test" in rows[1]["slack"]


@pytest.mark.parametrize(
    "bad, message",
    [
        ("routes: [{email: ['a@example.com\\nBcc: x@evil.example']}]", "not a valid email address"),
        ("routes: [{email: [not-an-address]}]", "not a valid email address"),
        ("routes: [{slack: [nowhere]}]", "'nowhere' is not declared"),
        ("routes: [{topics: [Weather], email: [a@example.com]}]", "'Weather' is not a topic"),
        ("routes: [{topics: [Energy | Oil]}]", "sends nowhere"),
        ("routes: [{email: [a@example.com], when: always}]", "a route is a mapping of"),
        ("routes: [{email: [a@example.com], min_severity: info}]", "min_severity"),
        ("slack: {Risk Chat: {conn_id: x}}", "channel names are"),
        ("slack: {risk: {url: 'https://hooks.slack.com/x'}}", "the webhook URL stays in Airflow"),
        ("routes: [{watchlists: [nope], email: [a@example.com]}]", "no watchlist 'nope'"),
        ("digest: {email: a@example.com}", "must be a list"),
    ],
)
def test_bad_routing_is_refused_with_its_place(bad, message):
    with pytest.raises(routing.RoutingError, match=message) as err:
        parse("routing:\n  " + bad.replace("\n", "\n  "), watchlists={"banks"})
    assert str(err.value).startswith("routing")


def test_bad_routing_in_the_rules_file_names_the_file(tmp_path):
    from pipeline.alerts import rules

    path = tmp_path / "alert_rules.yaml"
    path.write_text("routing:\n  routes:\n    - {name: oops, email: [nobody]}\n")
    with pytest.raises(rules.RulesError, match=r"alert_rules.yaml: routing.routes\[0\] \('oops'\).email"):
        rules.load(path)


def test_the_shipped_rules_file_routes_every_alert_somewhere():
    from pipeline.alerts import rules

    r = rules.load().routing
    assert r.deliveries({"dimension": "topic", "key": "Earnings", "severity": "warning"})["email"]
    assert r.digest_deliveries()


def test_slack_text_cannot_mention_or_forge_links():
    out = slack.escape(CHAT_HOSTILE)
    assert "<" not in out and ">" not in out and "<!channel>" not in out
    assert "@\u2060here" in out and "@here" not in out
    assert slack.link("javascript:alert(1)", "x") == "x"
    assert slack.link("https://news.example/a|b>c d", "T|<i>") == "<https://news.example/a%7Cb%3Ec%20d|T¦&lt;i&gt;>"


def _surge(db_url: str) -> None:
    seed(db_url, week_of_normal(H) + [(H, "Energy | Oil", 50, 30), (H, "Earnings", 50, 10)])
    query_exec(db_url, "UPDATE articles SET title = %s WHERE title = %s", (CHAT_HOSTILE, HOSTILE))
    query_exec(  # the most negative story of its day, so that the digest lists it
        db_url,
        "UPDATE scores SET p_negative = 0.99 WHERE article_id IN (SELECT id FROM articles WHERE title = %s)",
        (CHAT_HOSTILE,),
    )
    assert len(tasks.detect(window(H))["opened"]) == 2


def query_exec(url: str, sql: str, params: tuple) -> None:
    import psycopg2

    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(sql, params)
    conn.close()


def test_one_channel_failing_neither_blocks_nor_repeats_the_other(db_url, smtp_port, chat):
    _surge(db_url)
    live_now = H + timedelta(hours=1, minutes=5)
    chat.fail = True
    with SMTPServer(smtp_port) as smtp:
        with pytest.raises(NotifyError, match="1 delivery"):
            tasks.notify(window(H), {}, now=live_now)
        assert len(smtp.messages) == 2  # both alerts emailed although the chat service is down
        rows = query(db_url, "SELECT channel, status, attempts FROM alert_deliveries ORDER BY alert_id, channel")
        assert sorted(rows) == [("email", "sent", 1), ("email", "sent", 1), ("slack:risk-chat", "failed", 1)]
        oil = query(
            db_url,
            "SELECT notified_at, last_notify_error FROM alerts WHERE dimension = 'topic' AND key = 'Energy | Oil'",
        )[0]
        assert oil[0] is None and oil[1].startswith("slack:risk-chat: ")  # not fully delivered yet

        chat.fail = False  # the next run retries the chat alone
        out = tasks.notify(window(H + timedelta(hours=1)), {}, now=live_now + timedelta(hours=1))
        assert out["deliveries"] == [f"{out['sent'][0]} slack:risk-chat"] and len(smtp.messages) == 2
        again = tasks.notify(window(H + timedelta(hours=1)), {}, now=live_now + timedelta(hours=1))
        assert again == {"sent": [], "deliveries": []} and len(chat.posts) == 1
    assert query(db_url, "SELECT count(*) FROM alerts WHERE notified_at IS NULL OR last_notify_error IS NOT NULL") == [
        (0,)
    ]
    post = chat.posts[0]
    assert post["path"] == "/services/T000/B000/test"
    payload = json.dumps(post["json"], ensure_ascii=False)
    assert "Energy | Oil" in post["json"]["text"] and "60% negative vs 20% baseline" in post["json"]["text"]
    assert "<!channel>" not in payload and "<https://evil" not in payload and "@here" not in payload
    assert "&lt;!channel&gt; @\u2060here Refinery fire" in payload
    assert "|Open the alert in the dashboard>" in payload and "page=Alerts&alert=" in payload
    assert post["json"].get("unfurl_links") is False


def test_an_alert_with_no_route_is_an_error_not_silence(db_url, smtp_port, tmp_path, monkeypatch):
    rules = tmp_path / "alert_rules.yaml"
    rules.write_text("routing:\n  routes:\n    - {topics: [Currencies], email: [fx@example.com]}\n")
    monkeypatch.setenv("FINSENT_ALERT_RULES", str(rules))
    seed(db_url, week_of_normal(H) + [(H, "Energy | Oil", 50, 30), (H, "Earnings", 50, 10)])
    tasks.detect(window(H))
    with SMTPServer(smtp_port) as smtp, pytest.raises(NotifyError, match="2 alert"):
        tasks.notify(window(H), {}, now=H + timedelta(hours=1, minutes=5))
    assert smtp.messages == []
    assert {r[0] for r in query(db_url, "SELECT last_notify_error FROM alerts")} == {
        "no route sends alerts about 'Energy | Oil' anywhere",
        "no route sends alerts about 'overall' anywhere",
    }


def test_the_old_recipients_variable_is_refused_loudly(db_url, monkeypatch):
    monkeypatch.setenv("FINSENT_ALERT_RECIPIENTS", "/etc/finsent/recipients.yaml")
    with pytest.raises(NotifyError, match="no longer read"):
        tasks.notify(window(H), {}, now=H + timedelta(hours=1))


def test_daily_digest_once_per_day_and_channel(db_url, smtp_port, chat):
    _surge(db_url)
    day = tasks.digest_day(H + timedelta(days=1, hours=-7), {})
    assert day == "2026-08-10" and tasks.digest_day(H, {"day": "2026-08-01"}) == "2026-08-01"
    chat.fail = True
    with SMTPServer(smtp_port) as smtp:
        with pytest.raises(NotifyError, match="1 channel"):
            tasks.digest(day)
        chat.fail = False
        assert tasks.digest(day)["sent"] == ["slack:risk-chat"]
        assert tasks.digest(day)["sent"] == []  # re-running the day sends nothing new
    assert len(smtp.messages) == 1 and len(chat.posts) == 1
    msg = smtp.messages[0]
    assert msg["Subject"] == "[finsent] Daily digest, 2026-08-10 UTC: 1,500 stories, 2 alerts open"
    assert msg["Message-ID"].startswith("<finsent-digest-20260810@") and smtp.rcpts[0] == ["digest@example.com"]
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    # the day holds 14 normal hours (2 topics x 50 stories, 20% negative) and the surge hour (100 stories, 40 negative)
    assert "Stories: 1,500, negative 21.3% (the 7 days before: 20.0% of 15,400)" in text
    assert "Energy | Oil: 22.7% of 750 (before: 20.0%)" in text and "Earnings: 20.0% of 750" in text
    assert CHAT_HOSTILE in text  # plain text shows it as written
    html_part = msg.get_body(("html",)).get_content()
    assert "<!channel>" not in html_part and "&lt;!channel&gt;" in html_part
    payload = json.dumps(chat.posts[0]["json"], ensure_ascii=False)
    assert "Daily digest for 2026-08-10" in payload and "<!channel>" not in payload and "@here" not in payload
    assert query(db_url, "SELECT channel, status, attempts FROM digest_deliveries ORDER BY channel") == [
        ("email", "sent", 1),
        ("slack:risk-chat", "sent", 2),
    ]


def test_a_quiet_day_still_gets_a_digest_that_says_so(db_url, smtp_port, chat):
    seed(db_url, [])
    with SMTPServer(smtp_port) as smtp:
        tasks.digest("2026-08-01")
    text = smtp.messages[0].get_body(("plain",)).get_content()
    assert "No stories were stored and scored for 2026-08-01 (UTC)." in text and "Alerts open during the day: 0" in text


def test_validate_checks_routed_watchlists_and_companies_against_the_catalogue(tmp_path, monkeypatch, capsys):
    from pipeline.cli import main as cli

    rules = tmp_path / "alert_rules.yaml"
    rules.write_text(
        "routing:\n  routes:\n    - {watchlists: [megacaps], companies: [no-such-co], email: [a@example.com]}\n"
    )
    monkeypatch.setenv("FINSENT_ALERT_RULES", str(rules))
    assert cli(["entities", "validate"]) == 2
    assert "route 'route 1' names unknown watchlists or companies ['no-such-co']" in capsys.readouterr().err
    rules.write_text("routing:\n  routes:\n    - {watchlists: [megacaps], email: [a@example.com]}\n")
    assert cli(["entities", "validate"]) == 0
    assert '"alert_routes": 1' in capsys.readouterr().out


def test_a_hung_slack_webhook_times_out_email_still_goes_and_the_next_run_posts_once(
    db_url, smtp_port, chat, monkeypatch
):
    import time

    _surge(db_url)
    live_now = H + timedelta(hours=1, minutes=5)
    monkeypatch.setenv("FINSENT_SLACK_TIMEOUT_S", "1")
    chat.hang_s = 4.0  # reads the post, then never answers within the timeout
    with SMTPServer(smtp_port) as smtp:
        t0 = time.monotonic()
        with pytest.raises(NotifyError, match="1 delivery"):
            tasks.notify(window(H), {}, now=live_now)
        assert time.monotonic() - t0 < 30  # bounded by the timeout, not by the hung service
        assert chat.hung == 1 and len(smtp.messages) == 2 and not chat.posts
        assert sorted(query(db_url, "SELECT channel, status FROM alert_deliveries")) == [
            ("email", "sent"),
            ("email", "sent"),
            ("slack:risk-chat", "failed"),
        ]
        chat.hang_s = 0.0
        out = tasks.notify(window(H + timedelta(hours=1)), {}, now=live_now + timedelta(hours=1))
        assert out["deliveries"] == [f"{out['sent'][0]} slack:risk-chat"]
        assert len(chat.posts) == 1 and len(smtp.messages) == 2  # posted once, no second email
