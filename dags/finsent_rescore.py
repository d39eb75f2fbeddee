"""
### finsent re-scoring

After a model is promoted, score the whole stored history with it (in
committed chunks, with progress in the log) and rebuild its hourly
aggregates, so the dashboard and alerts read one model version throughout.

Scheduled on the asset `finsent://models/active` (updated by `finsent_train`
on promotion) and runnable by hand after `python -m pipeline models promote`:
`airflow dags trigger finsent_rescore`. Scoring runs on the `gpu` queue; a
crash or a kill leaves the rest for the next run (a work queue in SQL).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, Param, dag, get_current_context, task

from pipeline import config, tasks

settings = config.load()


@dag(
    dag_id="finsent_rescore",
    schedule=[Asset("finsent://models/active")],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "ml", "retries": 3, "retry_delay": timedelta(minutes=5)},
    doc_md=__doc__,
    on_failure_callback=tasks.failure_notifier(),
    tags=["finsent", "classify", "backfill"],
    params={"chunk_size": Param(1024, type="integer", minimum=16, description="stories per committed chunk")},
)
def finsent_rescore():
    @task(queue=settings.classify_queue, execution_timeout=timedelta(hours=12))
    def rescore_history() -> dict:
        return tasks.rescore(int(get_current_context()["params"]["chunk_size"]))

    rescore_history()


finsent_rescore()
