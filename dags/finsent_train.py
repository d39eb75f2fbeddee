"""
### finsent model training

Fine-tunes the dual-head GPT classifier, evaluates it on the held-out sets
(with TF-IDF+LR and VADER baselines in the same run), fits its company
mention tagger, registers it and promotes it if it does not score below the
active model (`force` overrides).
The promotion updates the asset `finsent://models/active`, which schedules
`finsent_rescore` (history re-scored with the new model).

Runs weekly, or on demand: `airflow dags trigger finsent_train --conf '{"method": "finetune"}'`.
Training and evaluation run on the `gpu` queue.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, Param, dag, get_current_context, task

from pipeline import config, tasks

settings = config.load()
ACTIVE_MODEL = Asset("finsent://models/active")  # updated on promotion; finsent_rescore is scheduled on it


@dag(
    dag_id="finsent_train",
    schedule="@weekly",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "ml", "retries": 1, "retry_delay": timedelta(minutes=10)},
    doc_md=__doc__,
    on_failure_callback=tasks.failure_notifier(),
    tags=["finsent", "training"],
    params={
        "method": Param(
            "finetune", enum=["heads", "finetune"], description="heads = fast path, finetune = quality path"
        ),
        "base_model": Param("smollm2", type="string", description="smollm2, a local folder or a cached hub id"),
        "train_layers": Param(0, type="integer", description="finetune: top blocks to update (0 = all)"),
        "num_train_epochs": Param(3.0, type="number"),
        "learning_rate": Param(3e-5, type="number"),
        "limit_per_task": Param(None, type=["null", "integer"]),
        "max_minutes": Param(None, type=["null", "number"]),
        "force": Param(False, type="boolean", description="promote even if below the active model"),
    },
)
def finsent_train():
    @task(queue=settings.classify_queue, execution_timeout=timedelta(hours=6))
    def train() -> str:
        return tasks.train_model(get_current_context()["params"])

    @task(queue=settings.classify_queue, execution_timeout=timedelta(hours=1))
    def evaluate(model_dir: str) -> str:
        tasks.evaluate_model(model_dir)
        return model_dir

    @task(queue=settings.classify_queue, execution_timeout=timedelta(hours=1))
    def fit_tagger(model_dir: str) -> str:
        tasks.fit_mention_tagger(model_dir)
        return model_dir

    @task(outlets=[ACTIVE_MODEL])
    def register_and_promote(model_dir: str) -> dict:
        return tasks.register_and_promote(model_dir, force=bool(get_current_context()["params"]["force"]))

    register_and_promote(fit_tagger(evaluate(train())))


finsent_train()
