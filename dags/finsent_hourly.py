"""
### finsent hourly monitor

Every hour: fetch the finance feeds in the registry and store each new story
in PostgreSQL exactly once, then score every story the active model has not
scored yet (on the `gpu` Celery queue by default; it falls back to CPU on a
worker without a GPU). The classify step is a work queue, so a crash or a
skipped hour leaves nothing behind: the next run picks it up. Finally it
rebuilds the hourly aggregates, judges each topic for a negative surge
(binomial test against the previous 7 days) and emails new alerts.

**Backfills** (a window that ended more than 2 h ago) re-process what is
stored: re-score, re-aggregate, re-detect. They do not fetch live feeds
(which only list recent items) unless `{"ingest_live": true}`, can replay
archived feed files with `{"archive_dir": "..."}`, and record alerts but
email nobody unless the conf says `{"notify": true}`.

**Window.** A run at logical date *T* covers the hour `[floor(T) - 1h, floor(T))`
(Airflow 3 cron schedules have zero-length data intervals, so the window is
explicit). Pass `{"start": "...", "end": "..."}` in the run conf to cover a
range instead.

**Idempotent.** Re-running any hour stores nothing twice: stories are keyed
by guid, canonical URL and (for syndicated copies) normalised title.

Logic lives in `pipeline/`; this file only wires tasks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from pipeline import config, tasks

settings = config.load()

default_args = {
    "owner": "data-eng",
    "retries": 3,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=20),
}


@dag(
    dag_id="finsent_hourly",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    doc_md=__doc__,
    on_failure_callback=tasks.failure_notifier(),
    tags=["finsent", "ingest", "classify", "alerts"],
    params={
        "feeds_file": Param(
            None, type=["null", "string"], description="feed registry YAML (default: FINSENT_FEEDS_FILE)"
        ),
        "start": Param(None, type=["null", "string"], description="backfill range start, ISO 8601 (UTC if no zone)"),
        "end": Param(None, type=["null", "string"], description="backfill range end, ISO 8601, exclusive"),
        "notify": Param(False, type="boolean", description="email alerts even when the window is a backfill"),
        "ingest_live": Param(False, type="boolean", description="fetch the live feeds even for a past window"),
        "archive_dir": Param(
            None, type=["null", "string"], description="folder of archived feed files to replay for the window"
        ),
        "history_csv": Param(
            None, type=["null", "string"], description="headline archive CSV (published, source, title) to import"
        ),
    },
)
def finsent_hourly():
    @task
    def plan_window() -> dict:
        ctx = get_current_context()
        # Runs triggered without a logical date (Airflow 3 allows it) use run_after.
        return tasks.plan(ctx.get("logical_date") or ctx["dag_run"].run_after, ctx["params"])

    @task(execution_timeout=timedelta(minutes=15))
    def ingest_feeds(window: dict) -> dict:
        ctx = get_current_context()
        return tasks.ingest(window, ctx["params"], run_key=ctx["run_id"])

    @task(queue=settings.classify_queue, execution_timeout=timedelta(minutes=45))
    def classify(counts: dict) -> dict:
        return tasks.classify()

    @task
    def detect(window: dict, scored: dict) -> dict:
        return tasks.detect(window)

    @task(retries=5, retry_delay=timedelta(minutes=5))
    def notify(window: dict, alerts: dict) -> dict:
        return tasks.notify(window, get_current_context()["params"])

    window = plan_window()
    notify(window, detect(window, classify(ingest_feeds(window))))


finsent_hourly()
