"""
### finsent fast lane (optional; paused until switched on)

Every two minutes (`FINSENT_FAST_SCHEDULE`): poll the feeds that are due (conditional GET; each feed's
Retry-After and `min_interval_s` honoured), score the stories that landed (on the `gpu` queue), rebuild
the stats of the hour under way and judge it as a partial hour, then deliver new alerts. A surge can open
minutes after its first stories are published instead of at the end of the next hourly run.

`finsent_hourly` stays the system of record: it rebuilds every hour whole, resolves alerts and judges the
slow sustained rise. Stories, scores, alerts and deliveries share their keys across both lanes, so nothing
is stored, scored, alerted or emailed twice. Switch it on with `airflow dags unpause finsent_fast`.

Why a short cron and not an asset watcher or `@continuous`: docs/alerts.md ("The fast lane").
Logic lives in `pipeline/fast.py`; this file only wires tasks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, get_current_context, task

from pipeline import config, fast, tasks

settings = config.load()


@dag(
    dag_id="finsent_fast",
    schedule=settings.fast_schedule,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,  # a slow poll delays the next one; runs never pile up
    is_paused_upon_creation=True,
    dagrun_timeout=timedelta(minutes=20),
    default_args={"owner": "data-eng", "retries": 1, "retry_delay": timedelta(seconds=30)},
    doc_md=__doc__,
    tags=["finsent", "fast-lane", "alerts"],
)
def finsent_fast():
    @task(execution_timeout=timedelta(minutes=5))
    def poll_feeds() -> dict:
        return fast.poll(run_key=get_current_context()["run_id"])

    @task(queue=settings.classify_queue, execution_timeout=timedelta(minutes=10))
    def classify(polled: dict) -> dict:
        return tasks.classify()

    @task(execution_timeout=timedelta(minutes=5))
    def judge(scored: dict) -> dict:
        return fast.judge()

    @task(retries=3, retry_delay=timedelta(seconds=30))
    def notify(judged: dict) -> dict:
        return tasks.notify(fast.current_hour(), {})

    notify(judge(classify(poll_feeds())))


finsent_fast()
