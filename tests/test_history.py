"""A real history: headline archives imported once, replayed hour by hour with no look-ahead, cold starts
ignored, crises that build over days raised once and kept open."""

from __future__ import annotations

import csv
import gzip
import random
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest

from pipeline import cli, db, replay
from pipeline.ingest.headlines import ArchiveError, import_csv
from tests.helpers import query
from tests.seeding import MODEL, seed

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SURGE_HOUR = T0 + timedelta(days=33, hours=15)
RISE = (T0 + timedelta(days=36), T0 + timedelta(days=40))  # four days at twice the usual negative share


def archive_rows(seed_value: int = 7) -> list[dict]:
    """40 days of hourly business news: ~20 % negative, one hour of 80 %, four days at ~45 %.

    A title says what its label will be (``NEG``), so the replay can be judged with known labels.
    The very first hour is 4 of 10 negative: a cold start, never an alert.
    """
    rng = random.Random(seed_value)
    rows = []
    for h in range(40 * 24):
        hour = T0 + timedelta(hours=h)
        n = 10 if hour.weekday() < 5 else 4
        share = 0.2
        if hour == SURGE_HOUR:
            n, share = 20, 0.8
        elif RISE[0] <= hour < RISE[1]:
            share = 0.45
        if h == 0:
            share = 0.4
        for i in range(n):
            neg = i < round(n * share) if h in (0,) or hour == SURGE_HOUR else rng.random() < share
            rows.append(
                {
                    "published": (hour + timedelta(minutes=(7 * i) % 60)).isoformat(),
                    "source": ["Wire A", "Wire B"][i % 2],
                    "title": f"{'NEG ' if neg else ''}Markets story {h}-{i}",
                    "url": f"https://news.example/{h}/{i}",
                }
            )
    return rows


def write_archive(path, rows, gz: bool = False, extra: list[str] | None = None) -> None:
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["published", "source", "title", "url"])
        w.writeheader()
        w.writerows(rows)
        for line in extra or []:
            fh.write(line + "\n")


def label_by_title(url: str) -> None:
    """Scores for every imported story from its title (the test's known labels), under the active test model."""
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO scores (article_id, model_version, sentiment, p_negative, p_neutral, p_positive, topic, "
            "topic_confidence) SELECT id, %s, CASE WHEN title LIKE 'NEG %%' THEN 'negative' ELSE 'neutral' END, "
            "CASE WHEN title LIKE 'NEG %%' THEN 0.9 ELSE 0.1 END, 0.1, 0.0, 'Stock Commentary', 0.9 FROM articles "
            "ON CONFLICT DO NOTHING",
            (MODEL,),
        )
    conn.close()


def test_import_stores_each_row_once_skips_bad_rows_and_reads_gzip(db_url, tmp_path):
    rows = archive_rows()[:300]
    path = tmp_path / "archive.csv.gz"
    bad = [
        ",Wire A,no time,https://news.example/x1",
        "2024-01-01T00:00:00Z,,no source,https://news.example/x2",
        "2024-01-01T00:00:00Z,Wire A,,https://news.example/x3",
        "not a time,Wire A,bad time,https://news.example/x4",
        "1066-10-14T12:00:00Z,Wire A,too old,https://news.example/x5",
    ]
    write_archive(path, rows, gz=True, extra=bad)
    first = import_csv(path, database_url=db_url)
    assert first["rows"] == 305 and first["stored"] == 300 and first["skipped"] == 5
    assert first["skip_reasons"] == {
        "no readable published time": 2,
        "no source": 1,
        "no title": 1,
        "published time out of range": 1,
    }
    again = import_csv(path, database_url=db_url)
    assert again["stored"] == 0 and again["duplicates"] == 300
    assert query(db_url, "SELECT count(*), count(DISTINCT guid) FROM articles") == [(300, 300)]
    assert query(db_url, "SELECT min(story_time) FROM articles")[0][0] == T0  # stored at its published time
    assert sorted(r[0] for r in query(db_url, "SELECT name FROM feeds")) == ["Wire A", "Wire B"]
    windowed = import_csv(path, database_url=db_url, window=(T0 + timedelta(hours=10), T0 + timedelta(hours=11)))
    assert windowed["stored"] == 0 and windowed["outside_window"] == 300 - windowed["duplicates"]


def test_unusable_archives_are_one_line_errors(tmp_path, capsys, db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    (tmp_path / "cols.csv").write_text("when,who,what\n2024-01-01,a,b\n")
    (tmp_path / "latin1.csv").write_bytes("published,source,title,caf\xe9\n2024-01-01,a,b,c\n".encode("latin-1"))
    for name, message in (("missing.csv", "does not exist"), ("cols.csv", "has no"), ("latin1.csv", "UTF-8")):
        assert cli.main(["history", "import", "--csv", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
    with pytest.raises(ArchiveError):
        import_csv(tmp_path / "cols.csv", database_url=db_url)


def _replayed(url: str, path, **window) -> list[tuple]:
    out = replay.replay(path, database_url=url, **window)
    return [(a["kind"], a["dimension"], a["subject"], a["opened"], a["resolved"]) for a in out["alerts"]]


def test_replay_raises_the_surge_and_the_sustained_rise_but_not_the_cold_start(db_url, tmp_path):
    path = tmp_path / "archive.csv"
    write_archive(path, archive_rows())
    seed(db_url, [])  # the active test model
    import_csv(path, database_url=db_url)
    label_by_title(db_url)
    alerts = _replayed(db_url, path)
    overall = [a for a in alerts if a[1] == "overall"]
    assert not [a for a in alerts if a[3] < T0 + timedelta(days=1)]  # the first hour's 4/10 is not a surge
    surge = [a for a in overall if a[0] == "surge" and a[3] == SURGE_HOUR]
    assert surge and surge[0][4] <= SURGE_HOUR + timedelta(hours=12)  # opened in its hour, resolved the same day
    regimes = [a for a in overall if a[0] == "regime"]
    assert len(regimes) == 1, regimes  # raised once, kept open while the rise lasts
    kind, _, subject, opened, resolved = regimes[0]
    assert subject == "overall (sustained rise)" and RISE[0] < opened < RISE[0] + timedelta(days=2)
    assert resolved is None  # the archive ends inside the rise
    # replaying the same archive again adds nothing: same alerts, no duplicates
    assert _replayed(db_url, path) == alerts
    assert query(db_url, "SELECT count(*) FROM alerts")[0][0] == len(alerts)


def test_replay_in_two_parts_equals_one_replay(db_url, tmp_path):
    """No look-ahead: judging hour by hour, the first half cannot depend on the second."""
    path = tmp_path / "archive.csv"
    write_archive(path, archive_rows())
    seed(db_url, [])
    import_csv(path, database_url=db_url)
    label_by_title(db_url)
    whole = _replayed(db_url, path)
    other = db.ensure_database(db_url, "history_two_parts")
    db.migrate(other)
    seed(other, [])
    import_csv(path, database_url=other)
    label_by_title(other)
    mid = (T0 + timedelta(days=34, hours=5)).isoformat()
    first = _replayed(other, path, end=mid)
    second = _replayed(other, path, start=mid)
    conn = psycopg2.connect(other)
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT kind, dimension, ({replay.SUBJECT_SQL}), started_at, resolved_at FROM alerts al ORDER BY started_at, id"
        )
        parts = [tuple(r) for r in cur.fetchall()]
    conn.close()
    assert first and set(first) <= set(parts) and set(second) <= set(parts)
    assert sorted(parts, key=str) == sorted(whole, key=str)


def test_history_replay_cli_prints_the_alerts_as_csv(db_url, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    path = tmp_path / "archive.csv"
    write_archive(path, archive_rows())
    seed(db_url, [])
    assert cli.main(["history", "import", "--csv", str(path)]) == 0
    capsys.readouterr()
    label_by_title(db_url)
    assert cli.main(["history", "replay", "--csv", str(path), "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ",".join(replay.COLUMNS)
    assert any(",surge," in line and ",overall," in line for line in out[1:])
    assert any("overall (sustained rise)" in line for line in out[1:])
    assert cli.main(["history", "replay", "--csv", str(path)]) == 0
    table = capsys.readouterr().out
    assert "still open" in table and "NEG Markets story" in table


def test_the_bundled_demo_window_reads_whole():
    """data/history: every row readable, inside its stated window, and the bank failures in it."""
    from pipeline.demo import HISTORY
    from pipeline.ingest.headlines import ImportSummary, read_rows

    summary = ImportSummary()
    rows = list(read_rows(HISTORY, summary))
    assert len(rows) == summary.rows == 4324 and not summary.skipped
    times = [s.published_at for _, s in rows]
    assert min(times) >= datetime(2023, 1, 23, tzinfo=UTC) and max(times) < datetime(2023, 3, 25, tzinfo=UTC)
    titles = " ".join(s.title for _, s in rows)
    assert "Silicon Valley Bank" in titles and "Credit Suisse" in titles


def test_the_event_benchmark_names_companies_the_catalogue_holds_and_scores_purely():
    from bench import events
    from pipeline.entities import catalogue

    cat = catalogue.load()
    named = [e for _, _, e, _ in events.EVENTS if e]
    assert named and all(e in cat.entities for e in named), [e for e in named if e not in cat.entities]
    span = (datetime(2023, 3, 1, tzinfo=UTC), datetime(2023, 4, 3, tzinfo=UTC))
    alerts = [
        {
            "kind": "surge",
            "dimension": "entity",
            "key": "svb-financial",
            "opened": datetime(2023, 3, 10, 14, tzinfo=UTC),
            "resolved": None,
        },
        {
            "kind": "surge",
            "dimension": "entity",
            "key": "ubs",
            "opened": datetime(2023, 3, 10, 15, tzinfo=UTC),
            "resolved": None,
        },
        {
            "kind": "surge",
            "dimension": "topic",
            "key": "Macro",
            "opened": datetime(2023, 3, 27, 9, tzinfo=UTC),
            "resolved": datetime(2023, 3, 27, 12, tzinfo=UTC),
        },
    ]
    out = events.score_events(alerts, span)
    by_day = {e["day"]: e for e in out["events"]}
    assert by_day["2023-03-10"]["caught"] and by_day["2023-03-10"]["delay_h"] == 14.0
    assert by_day["2023-03-10"]["by"] == ["surge:entity:svb-financial"]  # UBS's alert is not SVB's
    assert not by_day["2023-03-08"]["caught"]  # Silvergate: an alert on another company does not count
    assert out["calm_weeks"] == 1 and out["false_alerts_per_calm_week"] == 1.0  # the week of 27 March
