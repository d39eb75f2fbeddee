"""The hourly DAG on real Airflow 3 against a real PostgreSQL."""

import json
from datetime import UTC, datetime
from pathlib import Path

from pipeline import config
from tests.helpers import query, run_py

DAG_FILE = config.REPO_ROOT / "dags" / "finsent_hourly.py"


def test_dagbag_imports_cleanly_with_expected_shape(airflow_env):
    code = f"""
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(config.REPO_ROOT / "dags")!r})
dag = bag.get_dag("finsent_hourly")
print(json.dumps({{
    "dags": sorted(bag.dag_ids),
    "train_queues": sorted({{t.queue for t in bag.get_dag("finsent_train").tasks}}),
    "rescore_schedule": type(bag.get_dag("finsent_rescore").timetable).__name__,
    "classify_queue": dag.get_task("classify").queue,
    "failure_callback": bool(dag.on_failure_callback),
    "errors": {{k: str(v) for k, v in bag.import_errors.items()}},
    "tasks": sorted(dag.task_ids),
    "catchup": dag.catchup, "max_active_runs": dag.max_active_runs,
    "tags": sorted(dag.tags), "doc": bool(dag.doc_md),
    "retries": [t.retries for t in dag.tasks],
    "params": sorted(dag.params.keys()),
    "fast": {{"tasks": sorted(bag.get_dag("finsent_fast").task_ids),
              "classify_queue": bag.get_dag("finsent_fast").get_task("classify").queue,
              "paused_on_creation": bag.get_dag("finsent_fast").is_paused_upon_creation,
              "max_active_runs": bag.get_dag("finsent_fast").max_active_runs,
              "schedule": str(bag.get_dag("finsent_fast").schedule)}},
}}))
"""
    proc = run_py(code, airflow_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["errors"] == {}
    assert info["dags"] == ["finsent_digest", "finsent_fast", "finsent_hourly", "finsent_rescore", "finsent_train"]
    fast = info["fast"]
    assert fast["tasks"] == ["classify", "judge", "notify", "poll_feeds"] and fast["classify_queue"] == "gpu"
    assert fast["paused_on_creation"] is True and fast["max_active_runs"] == 1 and "*/2" in fast["schedule"]
    assert info["tasks"] == ["classify", "detect", "ingest_feeds", "notify", "plan_window"]
    assert info["classify_queue"] == "gpu" and "gpu" in info["train_queues"]
    assert info["failure_callback"] and info["rescore_schedule"] == "AssetTriggeredTimetable"
    assert info["catchup"] is False and info["max_active_runs"] == 1
    assert "finsent" in info["tags"] and info["doc"]
    assert all(r >= 2 for r in info["retries"])
    assert {"start", "end", "feeds_file", "notify", "ingest_live", "archive_dir", "history_csv"} <= set(info["params"])


def test_dag_file_has_no_business_logic():
    text = DAG_FILE.read_text()
    assert "import psycopg2" not in text and "feedparser" not in text and "SELECT" not in text


def dag_test(env: dict, logical_date: str, conf: dict, dag_id: str = "finsent_hourly") -> dict:
    code = f"""
import json, sys
from datetime import datetime
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder={str(DAG_FILE.parent / (dag_id + ".py"))!r}).get_dag({dag_id!r})
run = dag.test(logical_date=datetime.fromisoformat({logical_date!r}), run_conf={conf!r})
print(json.dumps({{"state": str(run.state), "run_id": run.run_id}}))
"""
    proc = run_py(code, env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_dag_runs_end_to_end_and_a_rerun_adds_nothing(airflow_env, db_url, feed_server, tmp_path, tiny_models):
    names = ["cnbc_finance_2026-08-14.xml", "bbc_business_2026-08-14.xml", "coindesk_2026-08-11.xml"]
    registry = tmp_path / "feeds.yaml"
    registry.write_text(
        "feeds:\n"
        + "".join(f"  - {{name: {n.split('_2')[0]}, url: '{feed_server.url('real/' + n)}'}}\n" for n in names)
        + f"  - {{name: broken, url: '{feed_server.url('-/status/500')}'}}\n"
    )
    env = {**airflow_env, "DATABASE_URL": db_url, "FINSENT_CONF_FILE_ROOTS": str(tmp_path)}
    conf = {"feeds_file": str(registry), "ingest_live": True}  # a past hour: fetch the feeds anyway

    first = dag_test(env, "2026-08-14T09:00:00+00:00", conf)
    assert first["state"] == "success"  # classify is skipped, not failed, while no model is active
    assert query(db_url, "SELECT count(*) FROM articles")[0][0] == 30 + 50 + 25
    assert query(db_url, "SELECT count(*) FROM scores")[0][0] == 0

    from pipeline import db
    from pipeline.classify.release import registry

    conn = db.connect(db_url)
    version = registry.register(conn, tiny_models[0])
    registry.promote(conn, version)
    conn.close()

    feed_server.conditional = False  # make the second run re-download and re-parse everything
    second = dag_test(env, "2026-08-14T09:00:00+00:00", conf)
    assert second["state"] == "success"
    assert query(db_url, "SELECT count(*) FROM articles")[0][0] == 105
    assert query(db_url, "SELECT count(*), count(DISTINCT article_id), min(model_version) FROM scores") == [
        (105, 105, version)
    ]
    runs = query(
        db_url, "SELECT run_key, window_start, window_end, items_new, feeds_failed FROM ingest_runs ORDER BY id"
    )
    utc = UTC
    assert [r[1:] for r in runs] == [
        (datetime(2026, 8, 14, 8, tzinfo=utc), datetime(2026, 8, 14, 9, tzinfo=utc), 105, 1),
        (datetime(2026, 8, 14, 8, tzinfo=utc), datetime(2026, 8, 14, 9, tzinfo=utc), 0, 1),
    ]
    assert [r[0] for r in runs] == [first["run_id"], second["run_id"]]
    assert query(db_url, "SELECT last_status, last_error FROM feeds WHERE name = 'broken'") == [
        ("error", "HTTP 500 Internal Server Error")
    ]


def test_backfill_replays_archived_feeds_for_past_hours_without_duplicates(airflow_env, db_url, tmp_path, tiny_models):
    import shutil

    from pipeline import db
    from pipeline.classify.release import registry
    from tests.helpers import REAL

    archive = tmp_path / "archive"
    (archive / "cnbc-finance").mkdir(parents=True)
    shutil.copy(REAL / "cnbc_finance_2026-08-14.xml", archive / "cnbc-finance" / "2026-08-14.xml")
    (archive / "broken.xml").write_bytes(b"this is not a feed at all")
    conn = db.connect(db_url)
    registry.promote(conn, registry.register(conn, tiny_models[0]))
    conn.close()
    env = {**airflow_env, "DATABASE_URL": db_url, "FINSENT_CONF_FILE_ROOTS": str(tmp_path)}
    # CNBC's snapshot spans 4-14 Aug 2026; back-fill the day of 13 Aug, twice
    conf = {"start": "2026-08-13T00:00:00Z", "end": "2026-08-14T00:00:00Z", "archive_dir": str(archive)}
    for _ in range(2):
        assert dag_test(env, "2026-11-01T00:00:00+00:00", conf)["state"] == "success"
    in_day = query(
        db_url, "SELECT count(*) FROM articles WHERE published_at >= '2026-08-13' AND published_at < '2026-08-14'"
    )[0][0]
    assert in_day > 0
    assert query(db_url, "SELECT count(*) FROM articles")[0][0] == in_day  # only the window's stories
    assert query(db_url, "SELECT count(*), count(DISTINCT article_id) FROM scores") == [(in_day, in_day)]
    assert query(db_url, "SELECT sum(stories) FROM hourly_stats WHERE dimension = 'overall'")[0][0] == in_day
    runs = query(
        db_url, "SELECT summary->'totals'->>'new', summary->'totals'->>'feeds_failed' FROM ingest_runs ORDER BY id"
    )
    assert runs == [(str(in_day), "1"), ("0", "1")]
    # the live feed registry was not fetched, and the archive feed has no live state
    assert query(db_url, "SELECT name, last_status FROM feeds") == [("cnbc-finance", None)]


def test_digest_dag_sends_yesterday_once(airflow_env, db_url, smtp_port):
    """finsent_digest under dag.test(): the run at 07:00 UTC summarises the day before; a re-run sends nothing."""
    import os

    from pipeline import tasks
    from tests.helpers import SMTPServer
    from tests.seeding import H, seed, week_of_normal, window

    seed(db_url, week_of_normal(H) + [(H, "Energy | Oil", 50, 30), (H, "Earnings", 50, 10)])
    tasks.detect(window(H))
    env = {**airflow_env, "DATABASE_URL": db_url, "AIRFLOW_CONN_SMTP_ALERTS": os.environ["AIRFLOW_CONN_SMTP_ALERTS"]}
    with SMTPServer(smtp_port) as smtp:
        for _ in range(2):
            assert dag_test(env, "2026-08-11T07:00:00+00:00", {}, "finsent_digest")["state"] == "success"
    assert [m["Subject"] for m in smtp.messages] == [
        "[finsent] Daily digest, 2026-08-10 UTC: 1,500 stories, 2 alerts open"
    ]
    assert query(db_url, "SELECT day::text, channel, status, attempts FROM digest_deliveries") == [
        ("2026-08-10", "email", "sent", 1)
    ]


def test_a_backfill_run_imports_a_headline_archive_for_its_window(airflow_env, db_url, tmp_path, tiny_models):
    """conf history_csv: the rows published inside the run's window are stored, scored and counted, once."""
    from pipeline import db
    from pipeline.classify.release import registry

    archive = tmp_path / "headlines.csv"
    rows = ["published,source,title,url"] + [
        f"2023-03-{d:02d}T{h:02d}:15:00Z,Wire,Bank shares slide {d}-{h},https://news.example/{d}/{h}"
        for d in (9, 10, 11)
        for h in range(0, 24, 3)
    ]
    archive.write_text("\n".join(rows) + "\n")
    conn = db.connect(db_url)
    registry.promote(conn, registry.register(conn, tiny_models[0]))
    conn.close()
    env = {**airflow_env, "DATABASE_URL": db_url, "FINSENT_CONF_FILE_ROOTS": str(tmp_path)}
    conf = {"start": "2023-03-10T00:00:00Z", "end": "2023-03-11T00:00:00Z", "history_csv": str(archive)}
    for _ in range(2):
        assert dag_test(env, "2026-11-01T00:00:00+00:00", conf)["state"] == "success"
    assert query(db_url, "SELECT count(*), min(published_at)::date::text FROM articles") == [(8, "2023-03-10")]
    assert query(db_url, "SELECT count(*), count(DISTINCT article_id) FROM scores") == [(8, 8)]
    assert query(db_url, "SELECT sum(stories) FROM hourly_stats WHERE dimension = 'overall'")[0][0] == 8


def _shifted(src, dst, delta: float):
    """A copy of a model folder whose recorded figures are all ``delta`` better (or worse): an active model
    that any candidate beats, or one no candidate can."""
    import shutil

    from pipeline.classify.model import modeldir

    def shift(node):
        if isinstance(node, dict):
            return {k: shift(v) for k, v in node.items()}
        return node + delta if isinstance(node, float) else node

    shutil.copytree(src, dst)
    meta = modeldir.read_meta(dst)
    meta["version"] += "-" + dst.name
    meta["metrics"] = shift(meta["metrics"])
    modeldir.write_meta(dst, meta)
    return dst


def test_the_weekly_training_run_promotes_a_better_candidate_and_refuses_a_worse_one(
    airflow_env, db_url, tiny_models, tiny_base, tmp_path
):
    """finsent_train end to end on a tiny model: train, evaluate, fit its company tagger, register, and the gate
    decides. Against a weaker active model the candidate is promoted (and brings its tagger); against a
    stronger one it is registered and refused, and the active model stays."""
    from pipeline import db
    from pipeline.classify.release import registry
    from pipeline.entities.detect import HEAD_FILE

    env = {**airflow_env, "DATABASE_URL": db_url, "FINSENT_HOME": str(tmp_path / "home")}
    conf = {"method": "heads", "base_model": str(tiny_base), "limit_per_task": 120}
    conn = db.connect(db_url)
    try:
        weak = registry.register(conn, _shifted(tiny_models[0], tmp_path / "weak", -0.3))
        registry.promote(conn, weak)
        conn.commit()
        assert dag_test(env, "2026-11-02T00:00:00+00:00", conf, "finsent_train")["state"] == "success"
        active = registry.active(conn)
        assert active["version"] != weak and (Path(active["path"]) / HEAD_FILE).is_file()

        strong = registry.register(conn, _shifted(tiny_models[0], tmp_path / "strong", 0.3))
        registry.promote(conn, strong)
        conn.commit()
        assert dag_test(env, "2026-11-09T00:00:00+00:00", conf, "finsent_train")["state"] == "success"
        assert registry.active(conn)["version"] == strong  # refused: the run is a success, the model stays
        n = query(db_url, "SELECT count(*) FROM models")[0][0]
        assert n == 4  # weak, the first candidate, strong, the refused candidate (registered, not active)
    finally:
        conn.close()
