"""Alerts end to end on a real PostgreSQL and a real SMTP server (aiosmtpd on 127.0.0.1)."""

from datetime import timedelta

import pytest

from pipeline import tasks
from tests.helpers import SMTPServer, query
from tests.seeding import HOSTILE, H, seed, week_of_normal, window


def test_smtp_hook_still_exposes_its_client(smtp_port):
    """Alerts reach into SmtpHook._smtp_client (pipeline.alerts.notify.smtp_client); a provider change must fail here."""
    import smtplib

    from airflow.providers.smtp.hooks.smtp import SmtpHook

    from pipeline.alerts.notify import smtp_client

    with SMTPServer(smtp_port), SmtpHook(smtp_conn_id="smtp_alerts") as hook:
        assert hasattr(hook, "_smtp_client"), "the smtp provider renamed SmtpHook._smtp_client"
        client = smtp_client(hook)
        assert isinstance(client, smtplib.SMTP)
        assert client.noop()[0] == 250


def alerts(url: str) -> list[tuple]:
    return query(
        url,
        "SELECT CASE WHEN dimension = 'overall' THEN 'overall' ELSE key END AS subject, status, severity,"
        " hours_surging, notified_at IS NOT NULL FROM alerts ORDER BY 1",
    )


def test_surge_opens_one_alert_per_topic_updates_it_and_resolves_it(db_url):
    seed(db_url, week_of_normal(H) + [(H, "Energy | Oil", 50, 30), (H, "Earnings", 50, 10)])
    first = tasks.detect(window(H))
    assert len(first["opened"]) == 2
    assert alerts(db_url) == [("Energy | Oil", "open", "critical", 1, False), ("overall", "open", "critical", 1, False)]
    stats = query(
        db_url,
        "SELECT stories, negatives, round(neg_share::numeric, 2)::float FROM hourly_stats "
        "WHERE hour = %s AND dimension = 'topic' AND key = 'Energy | Oil'",
        (H,),
    )
    assert stats == [(50, 30, 0.60)]
    top = query(db_url, "SELECT top_stories FROM alerts WHERE dimension = 'topic' AND key = 'Energy | Oil'")[0][0]
    assert len(top) == 5 and top[0]["title"] == HOSTILE and top[0]["url"].startswith("https://news.example/")

    again = tasks.detect(window(H))  # re-running the hour changes nothing
    assert again["opened"] == [] and alerts(db_url) == alerts(db_url)
    assert query(db_url, "SELECT count(*) FROM alerts")[0][0] == 2
    assert (
        query(db_url, "SELECT count(*) FROM hourly_stats WHERE hour = %s", (H,))[0][0] == 4
    )  # overall, 2 topics, 1 source

    seed(db_url, [(H + timedelta(hours=1), "Energy | Oil", 50, 28), (H + timedelta(hours=1), "Earnings", 50, 10)])
    second = tasks.detect(window(H + timedelta(hours=1)))
    assert second["opened"] == [] and len(second["updated"]) == 2, (second, alerts(db_url))
    assert alerts(db_url)[0] == ("Energy | Oil", "open", "critical", 2, False)

    # the first calm hour keeps the alert open (hysteresis), the second resolves it
    for hours in (2, 3):
        seed(
            db_url,
            [(H + timedelta(hours=hours), "Energy | Oil", 50, 10), (H + timedelta(hours=hours), "Earnings", 50, 10)],
        )
    assert tasks.detect(window(H + timedelta(hours=2)))["resolved"] == []
    third = tasks.detect(window(H + timedelta(hours=3)))
    assert len(third["resolved"]) == 2
    assert [a[1] for a in alerts(db_url)] == ["resolved", "resolved"]


def test_email_arrives_with_content_once_and_survives_an_smtp_outage(db_url, smtp_port):
    seed(db_url, week_of_normal(H) + [(H, "Energy | Oil", 50, 30), (H, "Earnings", 50, 10)])
    tasks.detect(window(H))
    live_now = H + timedelta(hours=1, minutes=5)

    # SMTP down: nothing is marked sent, the error is recorded, the task fails (and retries)
    from pipeline.alerts.notify import NotifyError

    with pytest.raises(NotifyError):
        tasks.notify(window(H), {}, now=live_now)
    rows = query(
        db_url, "SELECT notified_at, notify_attempts, last_notify_error FROM alerts ORDER BY dimension DESC, key"
    )
    assert all(r[0] is None and r[1] == 1 and r[2] for r in rows)

    with SMTPServer(smtp_port) as smtp:
        # the next run (an hour later, still inside the lookback) sends both
        result = tasks.notify(window(H + timedelta(hours=1)), {}, now=live_now + timedelta(hours=1))
        assert len(result["sent"]) == 2 and len(smtp.messages) == 2
        by_subject = {m["Subject"]: (m, r) for m, r in zip(smtp.messages, smtp.rcpts)}
        subject = next(s for s in by_subject if "Energy | Oil" in s)
        msg, rcpts = by_subject[subject]
        assert subject.startswith("[finsent] CRITICAL negative-news surge: Energy | Oil (60% negative vs 20% baseline)")
        assert rcpts == ["risk-team@example.com"]
        alert_id = msg["X-Finsent-Alert-Id"]
        assert msg["Message-ID"] == f"<finsent-alert-{alert_id}-{H:%Y%m%dT%H}@example.com>"  # same on every attempt
        overall_rcpts = next(r for s, (m, r) in by_subject.items() if "overall" in s)
        assert sorted(overall_rcpts) == ["cro-office@example.com", "risk-team@example.com"]
        text = msg.get_body(("plain",)).get_content()
        html_part = msg.get_body(("html",)).get_content()
        # the surge's chart travels inline: an image part whose Content-ID the HTML shows
        pngs = [p for p in msg.walk() if p.get_content_type() == "image/png"]
        assert len(pngs) == 1 and pngs[0].get_content()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="cid:{pngs[0]["Content-ID"].strip("<>")}"' in html_part
        assert "Negative stories: 30 of 50 (60.0%)" in text and "Baseline share: 20.0%" in text
        assert "http://localhost:8501/?page=Alerts&alert=" in text
        assert HOSTILE in text  # plain text shows it literally
        assert "<script>" not in html_part and "&lt;script&gt;" in html_part
        assert 'href="javascript' not in html_part and 'href="https://news.example/' in html_part

        # re-running the same hour, or the next one, sends nothing new
        assert tasks.notify(window(H), {}, now=live_now)["sent"] == []
        assert tasks.notify(window(H + timedelta(hours=1)), {}, now=live_now + timedelta(hours=1))["sent"] == []
        assert len(smtp.messages) == 2
    assert (
        query(db_url, "SELECT count(*) FROM alerts WHERE notified_at IS NOT NULL AND last_notify_error IS NULL")[0][0]
        == 2
    )


def test_backfill_records_alerts_but_emails_only_when_asked(db_url, smtp_port):
    seed(db_url, week_of_normal(H) + [(H, "Energy | Oil", 50, 30), (H, "Earnings", 50, 10)])
    much_later = H + timedelta(days=30)
    with SMTPServer(smtp_port) as smtp:
        assert len(tasks.detect(window(H))["opened"]) == 2
        assert tasks.notify(window(H), {}, now=much_later) == {"sent": [], "skipped": "backfill"}
        assert smtp.messages == []
        sent = tasks.notify(window(H), {"notify": True}, now=much_later)
        assert len(sent["sent"]) == 2 and len(smtp.messages) == 2


def test_dag_failure_callback_emails_the_data_team(smtp_port):
    """The DAG's on_failure_callback (the smtp provider's SmtpNotifier), rendered and sent for real."""
    from airflow.dag_processing.dagbag import DagBag

    from pipeline import config

    dag = DagBag(dag_folder=str(config.REPO_ROOT / "dags" / "finsent_hourly.py")).dags["finsent_hourly"]
    callbacks = dag.on_failure_callback if isinstance(dag.on_failure_callback, list) else [dag.on_failure_callback]
    with SMTPServer(smtp_port) as smtp:
        for cb in callbacks:
            cb({"dag": dag, "run_id": "scheduled__2026-08-10T14:00:00+00:00", "ti": None})
    assert len(smtp.messages) == 1
    msg = smtp.messages[0]
    assert msg["Subject"] == "[finsent] DAG finsent_hourly failed: run scheduled__2026-08-10T14:00:00+00:00"
    assert smtp.rcpts[0] == ["data-eng@example.com"]
    assert "Failed task: n/a" in msg.get_body(("html",)).get_content()


def test_an_acknowledged_alert_is_still_emailed(db_url, smtp_port):
    """A click on the dashboard records who looked; it never silences the risk team's email."""
    from dashboard import queries as q

    seed(db_url, week_of_normal(H) + [(H, "Energy | Oil", 50, 30), (H, "Earnings", 50, 10)])
    opened = tasks.detect(window(H))["opened"]
    pool = q.make_pool(db_url)
    try:
        assert all(q.acknowledge(pool, alert_id, "ana.lyst") for alert_id in opened)
    finally:
        pool.closeall()
    assert {a[1] for a in alerts(db_url)} == {"acknowledged"}
    with SMTPServer(smtp_port) as smtp:
        result = tasks.notify(window(H), {}, now=H + timedelta(hours=1, minutes=5))
    assert sorted(result["sent"]) == sorted(opened) and len(smtp.messages) == 2
    assert query(
        db_url, "SELECT count(*) FROM alerts WHERE notified_at IS NOT NULL AND acknowledged_by = 'ana.lyst'"
    ) == [(2,)]
