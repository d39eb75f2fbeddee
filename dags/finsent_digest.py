"""
### finsent daily digest

Every day at 07:00 UTC: a summary of the previous UTC day (stories and negative
share against the 7 days before, alerts open during the day, topics and
watchlist companies whose negative share rose most, the most negative
headlines) to the recipients and Slack channels under `routing.digest` in
`config/alert_rules.yaml`.

Each (day, channel) is delivered once: re-running a day sends nothing new, and
a failed channel is retried without repeating the others. Send a past day with
`airflow dags trigger finsent_digest --conf '{"day": "2026-08-10"}'`.

Logic lives in `pipeline/`; this file only wires tasks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from pipeline import tasks


@dag(
    dag_id="finsent_digest",
    schedule="0 7 * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "data-eng", "retries": 3, "retry_delay": timedelta(minutes=10)},
    doc_md=__doc__,
    on_failure_callback=tasks.failure_notifier(),
    tags=["finsent", "alerts"],
    params={"day": Param(None, type=["null", "string"], description="the UTC day to summarise (default: yesterday)")},
)
def finsent_digest():
    @task
    def send_digest() -> dict:
        ctx = get_current_context()
        day = tasks.digest_day(ctx.get("logical_date") or ctx["dag_run"].run_after, ctx["params"])
        return tasks.digest(day)

    send_digest()


finsent_digest()
