"""Hardening, round three: what a careless or hostile user meets, asserted as they would see it.

Archives (BOM, a stray Windows-1252 byte, an unterminated quote, an endless compressed line, a year typo),
trial replays kept from the risk team, DAG conf paths, one odd Retry-After header, Slack's size limits, CLI
output files, two databases migrated at once, the password in every connection-string form, models whose
labels the classifier cannot use, and company names with invisible characters or one letter. Real
PostgreSQL, HTTP servers, SMTP server and CLI throughout.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline import cli, db
from pipeline.ingest.headlines import ArchiveError, import_csv
from tests.helpers import WebhookServer, query

# -- headline archives -------------------------------------------------------------------------------------


def _rows(n: int, day: str = "2023-05-02") -> list[str]:
    return [
        f"{day}T{h % 24:02d}:{h % 60:02d}:00Z,Wire,Plain headline number {h},https://news.example/{h}" for h in range(n)
    ]


def test_an_excel_csv_a_stray_byte_an_open_quote_and_a_year_typo_cost_their_own_rows_only(db_url, tmp_path):
    good = _rows(6)
    lines = ["published,source,title,url", *good[:2]]
    lines.append('2023-05-02T05:00:00Z,Wire,"A quote that never closes,https://news.example/open')
    lines += good[2:4]
    lines.append("1923-05-02T06:00:00Z,Wire,A year typo,https://news.example/typo")
    lines += good[4:]
    body = "\n".join(lines).encode("utf-8")
    body = body.replace(b"number 3", b"number \x92 3")  # one Windows-1252 apostrophe in the middle of the file
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + body + b"\n")  # Excel's "CSV UTF-8": a byte-order mark first

    out = import_csv(path, database_url=db_url)
    assert out["stored"] == 5 and out["rows"] == 8
    assert out["skip_reasons"] == {
        "unterminated quote": 1,
        "not UTF-8 text": 1,
        "published time out of range": 1,
    }
    titles = {r[0] for r in query(db_url, "SELECT title FROM articles")}
    assert titles == {f"Plain headline number {i}" for i in (0, 1, 2, 4, 5)}


def test_a_compressed_endless_line_is_skipped_unread_and_the_rest_lands(db_url, tmp_path):
    from pipeline.ingest import headlines

    path = tmp_path / "bomb.csv.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(("published,source,title,url\n" + _rows(1)[0] + "\n").encode())
        chunk = b"x" * (1 << 20)
        for _ in range(3 * headlines.MAX_LINE_BYTES // len(chunk)):  # three times the cap, no line break
            fh.write(chunk)
        fh.write(("\n" + _rows(3)[2] + "\n").encode())
    out = import_csv(path, database_url=db_url)
    assert out["stored"] == 2 and out["skip_reasons"] == {f"line over {headlines.MAX_LINE_BYTES:,} bytes": 1}


def test_a_header_that_is_not_utf8_is_refused_without_quoting_the_file(db_url, tmp_path):
    path = tmp_path / "secret.csv"
    path.write_bytes(b"SMTP_PASSWORD=hunter2\n")
    with pytest.raises(ArchiveError) as err:
        import_csv(path, database_url=db_url)
    assert "hunter2" not in str(err.value) and "published" in str(err.value)
    assert query(db_url, "SELECT count(*) FROM articles") == [(0,)]


def test_a_replay_whose_rows_span_too_long_stores_nothing(db_url, tmp_path):
    from pipeline import replay
    from pipeline.windows import WindowError
    from tests.seeding import seed

    seed(db_url, [])
    path = tmp_path / "typo.csv"
    path.write_text("published,source,title,url\n" + "\n".join(_rows(3)) + "\n1991-05-02T00:00:00Z,Wire,typo,\n")
    with pytest.raises(WindowError):
        replay.replay(path, database_url=db_url)
    assert query(db_url, "SELECT count(*) FROM articles") == [(0,)]


# -- a trial replay never reaches the risk team ------------------------------------------------------------


def test_trial_rules_replayed_over_recent_hours_open_no_live_alert_and_send_nothing(db_url, tmp_path, smtp_port):
    from pipeline import replay, tasks
    from pipeline.windows import floor_hour, run_window
    from tests.helpers import SMTPServer
    from tests.seeding import seed
    from tests.test_history import label_by_title

    seed(db_url, [])
    now = datetime.now(UTC)
    start = floor_hour(now) - timedelta(hours=30)
    rows = ["published,source,title,url"]
    for h in range(30):
        neg = 9 if h == 28 else 1  # the hour before last: 9 of 10 negative
        for i in range(10):
            t = start + timedelta(hours=h, minutes=i)
            rows.append(f"{t.isoformat()},Wire,{'NEG ' if i < neg else ''}Story {h}-{i},https://news.example/{h}/{i}")
    path = tmp_path / "recent.csv"
    path.write_text("\n".join(rows) + "\n")
    trial = tmp_path / "trial.yaml"
    trial.write_text(
        "defaults: {baseline_days: 1, min_stories: 3, min_negatives: 2, warning_p: 0.5, min_ratio: 1.0, "
        "min_history_stories: 0}\n"
    )
    import_csv(path, database_url=db_url)
    label_by_title(db_url)

    out = replay.replay(path, database_url=db_url, rules_file=trial)
    assert out["scope"] == replay.TRIAL_TABLE and out["alerts"], out  # the trial rules did raise alerts
    assert query(db_url, "SELECT count(*) FROM alerts") == [(0,)]  # none in the live table
    assert query(db_url, f"SELECT count(*) FROM {replay.TRIAL_TABLE}")[0][0] == len(out["alerts"])
    with SMTPServer(smtp_port) as smtp:
        sent = tasks.notify(dict(zip(("start", "end"), (t.isoformat() for t in run_window(now)))), {})
        assert sent["sent"] == [] and smtp.messages == []


# -- DAG conf paths ----------------------------------------------------------------------------------------


def test_a_run_conf_cannot_import_files_outside_the_configured_roots(db_url, tmp_path, monkeypatch):
    from pipeline import tasks

    allowed, elsewhere = tmp_path / "imports", tmp_path / "home"
    allowed.mkdir()
    elsewhere.mkdir()
    secret = elsewhere / "credentials.csv"
    secret.write_text("published,source,title\n2023-05-02T00:00:00Z,smtp,password hunter2\n")
    (allowed / "link.csv").symlink_to(secret)  # a link inside the root to a file outside it
    monkeypatch.setenv("FINSENT_CONF_FILE_ROOTS", str(allowed))
    window = {"start": "2023-05-02T00:00:00+00:00", "end": "2023-05-02T01:00:00+00:00"}
    for conf in (
        {"history_csv": str(secret)},
        {"history_csv": str(allowed / "link.csv")},
        {"history_csv": "/proc/self/environ"},
        {"archive_dir": str(elsewhere)},
        {"feeds_file": str(secret)},
    ):
        with pytest.raises(tasks.ConfPathRefused) as err:
            tasks.ingest(window, conf, run_key=None)
        assert "outside the allowed folders" in str(err.value) and "hunter2" not in str(err.value)
    assert query(db_url, "SELECT count(*) FROM articles") == [(0,)]
    inside = allowed / "ok.csv"
    shutil.copy(secret, inside)
    assert tasks.ingest(window, {"history_csv": str(inside)}, run_key=None)["history"]["stored"] == 1


# -- one odd header never stops the pass -------------------------------------------------------------------


def test_a_superscript_retry_after_costs_nothing_and_every_feed_lands(db_url, feed_server, tmp_path):
    from pipeline.digits import ascii_int
    from pipeline.ingest.run import ingest

    assert [ascii_int(v) for v in ("²", "١٢", " 12 ", "12a", "", "0")] == [None, None, 12, None, None, 0]
    real = Path(__file__).parent / "data" / "feeds" / "real"
    body = (real / "cnbc_finance_2026-08-14.xml").read_bytes()
    feed_server.add("odd.xml", body, headers=[("Content-Type", "application/rss+xml"), ("Retry-After", "²")])
    registry = tmp_path / "feeds.yaml"
    registry.write_text(
        "feeds:\n"
        f"  - {{name: odd, url: '{feed_server.url('odd.xml')}'}}\n"
        f"  - {{name: bbc, url: '{feed_server.url('real/bbc_business_2026-08-14.xml')}'}}\n"
    )
    out = ingest(registry, database_url=db_url)
    assert {f["name"]: f["status"] for f in out["feeds"]} == {"odd": "ok", "bbc": "ok"}
    assert out["totals"]["new"] == 30 + 50 and out["run_id"]
    assert query(db_url, "SELECT retry_after_until FROM feeds WHERE name = 'odd'") == [(None,)]


# -- Slack's limits ----------------------------------------------------------------------------------------


def test_alerts_and_digests_with_aggregator_links_fit_slacks_limits(monkeypatch):
    from pipeline.alerts import slack

    long_url = "https://news.google.com/rss/articles/" + "CBMi" * 170  # ~700 characters, as aggregators send
    stories = [
        {
            "url": long_url + str(i),
            "title": f"Bank & Co <b>falls</b> @here {i} " * 8,
            "source": "Google News",
            "p_negative": 0.9,
        }
        for i in range(5)
    ]
    alert = {
        "id": 7, "severity": "critical", "observed_share": 0.6, "baseline_share": 0.1, "dimension": "topic",
        "subject": "Financials " * 30, "last_hour": datetime(2026, 12, 1, 9), "hours_surging": 2,
        "observed_negatives": 6, "observed_stories": 10, "baseline_stories": 400, "p_value": 1e-4,
        "model_version": "v1", "top_stories": stories,
    }  # fmt: skip
    unfitted = "\n".join(slack._story_line(s, "all") for s in stories)
    assert len(unfitted) > slack.SECTION_MAX  # what was refused before
    digest = slack.digest_message(datetime(2026, 12, 1), [f"line {i}" for i in range(2000)], stories * 4, "http://x")
    with WebhookServer() as server:
        monkeypatch.setenv(
            "AIRFLOW_CONN_FINSENT_SLACK_LIMITS", json.dumps({"conn_type": "slackwebhook", "password": server.url})
        )
        slack.send(slack.alert_message(alert, "http://127.0.0.1:8501"), "finsent_slack_limits")
        slack.send(digest, "finsent_slack_limits")
        assert server.refused == [] and len(server.posts) == 2
        text = server.posts[0]["json"]["blocks"][2]["text"]["text"]
        assert text.count("Bank &amp; Co") >= 5 and "news.google.com" not in text  # links dropped, titles kept
        assert "more" in server.posts[1]["json"]["blocks"][1]["text"]["text"]  # the digest says what it left out


# -- CLI output files --------------------------------------------------------------------------------------


def test_entities_link_refuses_to_overwrite_its_input(tmp_path, capsys):
    src = tmp_path / "heads.csv"
    src.write_text("text\nBarclays shares slide\nA calm day\n")
    before = src.read_bytes()
    for output in (str(src), str(tmp_path / "." / "heads.csv")):
        assert cli.main(["entities", "link", "--input", str(src), "--output", output]) == 2
        assert "is the input file" in capsys.readouterr().err
    assert src.read_bytes() == before
    (tmp_path / "alias.csv").symlink_to(src)
    assert cli.main(["entities", "link", "--input", str(src), "--output", str(tmp_path / "alias.csv")]) == 2
    assert src.read_bytes() == before


def test_predict_checks_its_output_before_loading_a_model(tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("text\nStocks fall\n")
    # /proc takes no new files, even for root; the model path does not exist: the output is checked first
    code = cli.main(
        ["predict", "--model", str(tmp_path / "no-model"), "--input", str(src), "--output", "/proc/out.csv"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "not writable" in err and "no-model" not in err


# -- database set-up ---------------------------------------------------------------------------------------


def test_two_databases_on_a_new_server_migrate_at_the_same_moment(tmp_path):
    import tempfile

    import pgserver

    datadir = Path(tempfile.mkdtemp(prefix="fspg2-", dir="/tmp"))
    try:
        server = db.start_embedded(datadir)
        urls = [db.ensure_database(server, f"twin_{i}") for i in range(2)]
        barrier, errors = threading.Barrier(2), []

        def run(url: str) -> None:
            try:
                barrier.wait()
                db.migrate(url)
            except Exception as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=run, args=(u,)) for u in urls]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        for url in urls:
            assert query(url, "SELECT count(*) FROM pg_roles WHERE rolname = 'finsent_dashboard'") == [(1,)]
            assert query(url, "SELECT count(*) FROM schema_migrations")[0][0] >= 10
    finally:
        try:
            pgserver.get_server(str(datadir), cleanup_mode="stop").cleanup()
        except Exception:
            pass
        shutil.rmtree(datadir, ignore_errors=True)


def test_db_migrate_never_prints_the_password_in_any_libpq_form(db_url, monkeypatch, capsys):
    from psycopg2.extensions import make_dsn, parse_dsn

    from pipeline.redact import redact

    parts = parse_dsn(db_url)
    host = parts.pop("host", "")
    forms = [
        make_dsn(**parts, host=host, password="pw-in-keywords"),
        f"postgresql:///{parts['dbname']}?host={host}&user={parts.get('user', '')}&password=pw-in-query",
    ]
    for dsn in forms:
        monkeypatch.setenv("DATABASE_URL", dsn)
        assert cli.main(["db", "migrate"]) == 0
        out = capsys.readouterr().out
        assert "pw-in" not in out and "***" in out
    assert redact("postgresql://finsent:s3cret@db/finsent") == "postgresql://finsent:***@db/finsent"
    assert redact("host=db password='a b\\' c' user=x") == "host=db password=*** user=x"


# -- models whose labels the classifier cannot use ---------------------------------------------------------


@pytest.mark.parametrize(
    "sentiment",
    [["positive", "neutral", "negative"], ["negative", "neutral", "positive", "mixed"]],
    ids=["reordered", "fourth-class"],
)
def test_a_model_with_labels_the_classifier_cannot_use_is_refused_at_register(
    db_url, tiny_models, tmp_path, capsys, sentiment
):
    folder = tmp_path / "model"
    shutil.copytree(tiny_models[0], folder)
    meta = json.loads((folder / "finsent_model.json").read_text())
    meta["labels"]["sentiment"] = sentiment
    meta["version"] = "20990101T000000-badlabels"
    (folder / "finsent_model.json").write_text(json.dumps(meta))
    assert cli.main(["models", "register", str(folder)]) == 2
    assert "sentiment labels" in capsys.readouterr().err
    assert query(db_url, "SELECT count(*) FROM models WHERE version = %s", (meta["version"],)) == [(0,)]


# -- names -------------------------------------------------------------------------------------------------


def test_names_with_invisible_characters_or_one_letter_are_refused_and_tickers_need_context(tmp_path):
    from pipeline.entities.catalogue import CatalogueError, load
    from pipeline.entities.link import Linker

    bad = {
        "zwsp": ('name: "Acme\u200b Corp"', "U+200B"),
        "one-letter alias": ("name: Acme Corp\n    aliases: [A]", "fewer than two letters"),
    }
    for what, (entry, message) in bad.items():
        f = tmp_path / f"{what}.yaml"
        f.write_text(f"entities:\n  - id: acme\n    {entry}\n")
        with pytest.raises(CatalogueError, match=re.escape(message)):
            load(f, bundled=None)
    linker = Linker(load(tmp_path / "none.yaml"))  # the bundled catalogue: Agilent's ticker is A
    articles = ["A new plan for rates", "A bank fails", "A Class (A) shares rise", "$a rises"]
    assert [linker.link(t) for t in articles] == [[]] * len(articles)
    found = [m.entity_id for t in ("Agilent $A jumps", "Shares of (NYSE: A) fall") for m in linker.link(t)]
    assert found == ["agilent-technologies", "agilent-technologies"]


def test_the_linker_ignores_one_letter_names_from_any_source():
    from pipeline.entities.catalogue import Catalogue, Entity
    from pipeline.entities.link import Linker

    x = Entity(id="x-corp", name="X", aliases=("X Corp",), tickers=(), sector="", country="", source="t", ambiguous=())
    linker = Linker(Catalogue(entities={"x-corp": x}), words=frozenset())
    assert linker.link("X marks the spot") == []
    assert [m.span for m in linker.link("X Corp sues advertisers")] == ["X Corp"]


def test_the_environment_is_never_read_by_the_archive_reader_even_when_asked(tmp_path):
    """Belt and braces: /proc/self/environ is not a CSV with a published column; nothing of it is echoed."""
    os.environ["FINSENT_TEST_SECRET"] = "do-not-echo"
    try:
        with pytest.raises(ArchiveError) as err:
            import_csv("/proc/self/environ", database_url="postgresql:///nowhere")
        assert "do-not-echo" not in str(err.value)
    finally:
        del os.environ["FINSENT_TEST_SECRET"]
