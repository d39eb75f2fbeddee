"""Hostile input never stops a run: bad values, bad entries, slow headers, internal redirects, secrets.

Every test here also checks that the good feed in the same run lands and that the run is recorded.
Traffic goes only to the loopback feed server each test starts; non-loopback refusals use a stubbed
resolver or literal addresses that are refused before any connection is made.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import psycopg2
import pytest

from pipeline import config, status
from pipeline.ingest import policy
from pipeline.ingest.fetch import fetch
from pipeline.ingest.run import ingest
from tests.helpers import REAL, query

GOOD = "real/cnbc_finance_2026-08-14.xml"  # 30 stories
GOOD_STORIES = 30


def rss(items: list[str]) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        "<link>https://example.com/</link><description>d</description>" + "".join(items) + "</channel></rss>"
    ).encode()


def item(title: str, link: str | None = None, guid: str | None = None, date: str | None = None) -> str:
    parts = [f"<title>{title}</title>"]
    if link:
        parts.append(f"<link>{link}</link>")
    if guid:
        parts.append(f'<guid isPermaLink="false">{guid}</guid>')
    if date:
        parts.append(f"<pubDate>{date}</pubDate>")
    return "<item>" + "".join(parts) + "</item>"


def registry(tmp_path: Path, entries: str) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text("feeds:\n" + entries)
    return path


def by_name(summary: dict) -> dict:
    return {f["name"]: f for f in summary["feeds"]}


def runs(db_url: str) -> int:
    return query(db_url, "SELECT count(*) FROM ingest_runs")[0][0]


def test_bad_values_and_entries_are_isolated(db_url, feed_server, tmp_path):
    hostile = feed_server.add(
        "hostile.xml",
        rss(
            [
                item("Zone offset out of range", "https://x.example/1", date="Mon, 10 Aug 2026 12:00:00 +9999"),
                item("Year zero", "https://x.example/2", date="Mon, 10 Aug 0000 12:00:00 GMT"),
                item("Hour 25", "https://x.example/3", date="Mon, 10 Aug 2026 25:00:00 GMT"),
                item("Overflows UTC", "https://x.example/4", date="9999-12-31T23:59:59-23:59"),
                item("Far future pins itself to the top", "https://x.example/5", date="Fri, 01 Jan 2100 00:00:00 GMT"),
                item("Before 1990", "https://x.example/6", date="Mon, 01 Jan 1900 00:00:00 GMT"),
                item("A sane one", "https://x.example/7", date="Mon, 10 Aug 2026 12:00:00 GMT"),
            ]
        ),
    )
    nul_etag = feed_server.add(
        "nul-etag.xml",
        rss([item("Header with a NUL", "https://y.example/1", date="Mon, 10 Aug 2026 12:00:00 GMT")]),
        headers=[("Content-Type", "application/rss+xml"), ("ETag", '"abc\x00def"')],
    )
    path = registry(
        tmp_path,
        f"""  - {{name: good, url: '{feed_server.url(GOOD)}'}}
  - {{name: hostile, url: '{hostile}'}}
  - {{name: nul-etag, url: '{nul_etag}'}}
  - {{name: bad-zone, url: '{feed_server.url(GOOD)}', timezone: Mars/Olympus}}
  - {{name: bad-timeout, url: '{feed_server.url(GOOD)}', timeout_s: fast}}
  - {{name: bad-size, url: '{feed_server.url(GOOD)}', max_bytes: -5}}
  - {{name: disabled, url: '{feed_server.url(GOOD)}', enabled: 'false'}}
  - {{name: 'good ', url: '{feed_server.url(GOOD)}'}}
  - {{url: '{feed_server.url(GOOD)}'}}
""",
    )
    summary = ingest(path, database_url=db_url, settings=config.load())
    feeds = by_name(summary)
    assert runs(db_url) == 1 and summary["run_id"]
    assert feeds["good"]["status"] == "ok" and feeds["good"]["new"] == GOOD_STORIES
    assert feeds["hostile"]["status"] == "ok" and feeds["hostile"]["new"] == 7
    assert "stored as unknown" in feeds["hostile"]["warning"]
    assert feeds["nul-etag"]["status"] == "ok" and feeds["nul-etag"]["new"] == 1
    assert "disabled" not in feeds  # enabled: 'false' is read as false: not fetched
    for name, field in (("bad-zone", "timezone"), ("bad-timeout", "timeout_s"), ("bad-size", "max_bytes")):
        assert (
            feeds[name]["status"] == "error" and f"'{field}'" in feeds[name]["error"] and name in feeds[name]["error"]
        )
    assert "duplicate feed name" in feeds["feeds[7]"]["error"]
    assert "'name' is required" in feeds["feeds[8]"]["error"]
    # the item dates: only the sane one is kept as published; the others fall back to the fetch time
    dated = dict(
        query(db_url, "SELECT title, published_at IS NOT NULL FROM articles WHERE url LIKE %s", ("https://x.%",))
    )
    assert dated == {
        "Zone offset out of range": False,
        "Year zero": False,
        "Hour 25": False,
        "Overflows UTC": False,
        "Far future pins itself to the top": False,
        "Before 1990": False,
        "A sane one": True,
    }
    assert query(db_url, "SELECT etag FROM feeds WHERE name = 'nul-etag'") == [('"abcdef"',)]
    rows = dict(query(db_url, "SELECT name, consecutive_failures FROM feeds WHERE last_status = 'error'"))
    assert rows == {"bad-zone": 1, "bad-timeout": 1, "bad-size": 1}
    failing = {f["name"] for f in status.report(db_url)["feeds"]["failing"]}
    assert {"bad-zone", "bad-timeout", "bad-size"} <= failing
    # a second run counts the failures up, and stores nothing twice
    again = ingest(path, database_url=db_url, settings=config.load())
    assert again["totals"]["new"] == 0 and runs(db_url) == 2
    assert query(db_url, "SELECT consecutive_failures FROM feeds WHERE name = 'bad-zone'") == [(2,)]


def test_slow_header_lines_hit_the_whole_exchange_deadline(db_url, feed_server, monkeypatch):
    monkeypatch.setenv("FINSENT_FETCH_TIMEOUT_S", "2")
    from pipeline.ingest.model import FeedSpec

    specs = [
        FeedSpec(name="slow-header-lines", url=feed_server.url("-/slow-header-lines?interval=0.7&lines=40")),
        FeedSpec(name="good", url=feed_server.url(GOOD)),
    ]
    t0 = time.monotonic()
    summary = ingest(specs=specs, database_url=db_url, settings=config.load())
    feeds = by_name(summary)
    assert feeds["slow-header-lines"]["error"].startswith("timeout")
    assert feeds["slow-header-lines"]["elapsed_s"] < 5  # 40 lines x 0.7 s would be 28 s
    assert time.monotonic() - t0 < 15
    assert feeds["good"]["new"] == GOOD_STORIES and runs(db_url) == 1


def test_redirects_to_internal_addresses_are_refused(db_url, feed_server, tmp_path):
    port = feed_server.base.rsplit(":", 1)[1]
    internal = feed_server.add("internal.xml", rss([item("INTERNAL ONLY page", "https://intra.example/1")]))
    to = internal.replace("127.0.0.1", "localhost")
    path = registry(
        tmp_path,
        f"""  - {{name: good, url: '{feed_server.url(GOOD)}'}}
  - {{name: to-localhost, url: '{feed_server.url("-/redirect?to=" + to)}'}}
  - {{name: to-metadata, url: '{feed_server.url("-/redirect?to=http://169.254.169.254/latest/meta-data/")}'}}
  - {{name: to-private, url: '{feed_server.url("-/redirect?to=http://10.20.30.40/feed.xml")}'}}
  - {{name: to-v6-loopback, url: '{feed_server.url(f"-/redirect?to=http://[::1]:{port}/internal.xml")}'}}
  - {{name: allowed, url: '{feed_server.url("-/redirect?to=" + to)}', allow_hosts: [localhost]}}
""",
    )
    summary = ingest(path, database_url=db_url, settings=config.load())
    feeds = by_name(summary)
    for name in ("to-localhost", "to-metadata", "to-private", "to-v6-loopback"):
        assert feeds[name]["status"] == "error" and "refused by outbound policy" in feeds[name]["error"], name
        assert feeds[name]["redirects"], name
    assert feeds["good"]["new"] == GOOD_STORIES and runs(db_url) == 1
    # the one entry that allows localhost got the page; no refused hop ever reached the server
    assert feeds["allowed"]["status"] == "ok" and feeds["allowed"]["new"] == 1
    assert [p for p, _ in feed_server.requests].count("/internal.xml") == 1


def test_outbound_policy_refuses_non_public_addresses_before_connecting(monkeypatch):
    answers = {
        "metadata.example": ["169.254.169.254"],
        "intranet.example": ["10.0.0.7"],
        "cgnat.example": ["100.64.1.1"],
        "v6.example": ["fd00:ec2::254"],
        "mapped.example": ["::ffff:127.0.0.1"],
        "mixed.example": ["93.184.216.34", "192.168.1.1"],
        "news.example": ["93.184.216.34"],
    }
    asked: list[str] = []

    def stub(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[host]

    def no_connections(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(policy, "resolve", stub)
    monkeypatch.setattr(socket, "create_connection", no_connections)
    monkeypatch.setattr(socket.socket, "connect", no_connections)
    for host in (
        "metadata.example",
        "intranet.example",
        "cgnat.example",
        "v6.example",
        "mapped.example",
        "mixed.example",
    ):
        with pytest.raises(policy.PolicyRefused, match="non-public"):
            policy.check_url(f"http://{host}/feed.xml")
        result = fetch(f"https://{host}/feed.xml", timeout_s=2)
        assert result.status == "error" and result.error.startswith("refused by outbound policy"), host
    policy.check_url("https://news.example/feed.xml")  # public: allowed (no connection made by the check)
    policy.check_url("http://metadata.example/", allow_hosts=["metadata.example"])  # listed: allowed
    with pytest.raises(policy.PolicyRefused):
        policy.check_url("http://127.0.0.1:8080/")  # a literal address is checked without resolving
    with pytest.raises(policy.PolicyRefused, match="scheme"):
        policy.check_url("gopher://news.example/")
    assert "127.0.0.1" not in asked


def test_file_urls_are_confined_to_allowed_regular_files(tmp_path):
    root = tmp_path / "feeds"
    root.mkdir()
    feed = root / "ok.xml"
    feed.write_bytes((REAL / "cnbc_finance_2026-08-14.xml").read_bytes())
    (root / "link.xml").symlink_to("/etc/hostname")
    (root / "big.xml").write_bytes(b"<rss>" + b" " * 5000)
    assert fetch(feed.as_uri(), file_roots=[root]).status == "ok"
    for target in ("/etc/hostname", "/dev/zero", str(root / "link.xml")):
        res = fetch(Path(target).as_uri(), file_roots=[root], max_bytes=1000)
        assert res.status == "error" and "refused by outbound policy" in res.error, target
    big = fetch((root / "big.xml").as_uri(), file_roots=[root], max_bytes=1000)
    assert big.error.startswith("body too large")
    (root / "dev-zero").symlink_to("/dev/zero")
    res = fetch((root / "dev-zero").as_uri(), file_roots=[root, Path("/dev")], max_bytes=1000)
    assert res.status == "error" and "not a regular file" in res.error


def test_credentials_in_feed_urls_are_never_stored_or_printed(db_url, feed_server, tmp_path, capsys):
    secret_url = feed_server.url(GOOD).replace("http://", "http://reader:s3cr3t-pw@") + "?api_token=tok-XYZ-123"
    path = registry(tmp_path, f"  - {{name: paid, url: '{secret_url}'}}\n  - {{name: gone, url: '{secret_url}x'}}\n")
    from pipeline import cli

    assert cli.main(["ingest", "--feeds", str(path)]) in (0, 1)
    printed = capsys.readouterr()
    assert "s3cr3t-pw" not in printed.out + printed.err and "tok-XYZ-123" not in printed.out + printed.err
    assert json.loads(printed.out)["totals"]["new"] == GOOD_STORIES
    dump = json.dumps(query(db_url, "SELECT row_to_json(f) FROM feeds f"), default=str)
    dump += json.dumps(query(db_url, "SELECT summary FROM ingest_runs"), default=str)
    assert "s3cr3t-pw" not in dump and "tok-XYZ-123" not in dump and "reader:***@" in dump
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET ROLE finsent_dashboard")
            cur.execute("SELECT name, last_status FROM feeds")
            assert cur.fetchall()
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("SELECT url FROM feeds")
    finally:
        conn.close()


def test_items_without_stable_keys_are_not_duplicated_or_merged(db_url, feed_server, monkeypatch, tmp_path):
    monkeypatch.setenv("FINSENT_TITLE_DEDUPE_WINDOW_H", "0.0001")  # the title window cannot save us here
    doc = feed_server.add(
        "keyless.xml",
        rss(
            [
                item("No guid, no link, no date"),
                item("Shares a junk guid A", guid="42"),
                item("Shares a junk guid B", guid="42"),
                item("Dated but keyless", date="Mon, 10 Aug 2026 12:00:00 GMT"),
            ]
        ),
    )
    path = registry(tmp_path, f"  - {{name: keyless, url: '{doc}', dedupe_titles: false}}\n")
    first = ingest(path, database_url=db_url, settings=config.load())
    assert first["totals"]["new"] == 4
    time.sleep(0.5)  # past the (tiny) title window
    second = ingest(path, database_url=db_url, settings=config.load())
    assert second["totals"]["new"] == 0 and query(db_url, "SELECT count(*) FROM articles") == [(4,)]


def _copy_model(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_damaged_models_fail_before_any_work(tiny_models, tmp_path):
    from pipeline.classify.model.modeldir import ModelDirError
    from pipeline.classify.model.predict import Classifier

    src = tiny_models[1]
    Classifier.load(src)  # the intact model loads

    def damaged(name: str, harm) -> Path:
        d = _copy_model(src, tmp_path / name)
        harm(d)
        return d

    weights = "backbone/model.safetensors"
    cases = {
        "truncated weights": damaged("trunc", lambda d: (d / weights).write_bytes((d / weights).read_bytes()[:4096])),
        "missing weights": damaged("noweights", lambda d: (d / weights).unlink()),
        "missing heads": damaged("noheads", lambda d: (d / "heads.safetensors").unlink()),
        "missing tokenizer": damaged("notok", lambda d: __import__("shutil").rmtree(d / "tokenizer")),
        "missing metadata": damaged("nometa", lambda d: (d / "finsent_model.json").unlink()),
        "not a folder": tmp_path / "absent",
    }

    def drop_a_layer(d: Path) -> None:
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(d / weights))
        save_file({k: v for k, v in tensors.items() if not k.startswith("layers.1.")}, str(d / weights))

    cases["missing tensors"] = damaged("missingtensors", drop_a_layer)

    def extra_tensor(d: Path) -> None:
        import torch
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(d / "heads.safetensors"))
        save_file({**tensors, "sneaky.weight": torch.zeros(2)}, str(d / "heads.safetensors"))

    cases["unexpected head tensor"] = damaged("extra", extra_tensor)
    for what, model_dir in cases.items():
        with pytest.raises(ModelDirError):
            Classifier.load(model_dir)
            pytest.fail(f"{what}: loaded")


def test_predict_cli_errors_are_one_line_with_exit_2(tiny_models, tmp_path, capsys):
    from pipeline import cli

    model = str(tiny_models[1])
    good = tmp_path / "in.csv"
    good.write_text("text\nStocks rally\n")
    inputs = {
        "empty": b"",
        "header-only": b"text\n",
        "no-text-column": b"title\nStocks rally\n",
        "latin1": "text\nCaf\u00e9 stocks\n".encode("latin-1"),
    }
    for name, content in inputs.items():
        path = tmp_path / f"{name}.csv"
        path.write_bytes(content)
        assert cli.main(["predict", "--model", model, "--input", str(path), "--output", str(tmp_path / "o.csv")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, (name, err)
    bad_calls = [
        ["--model", model, "--input", str(good), "--output", str(tmp_path / "no-such-dir" / "out.csv")],
        ["--model", model, "--input", str(tmp_path / "missing.csv"), "--output", str(tmp_path / "o.csv")],
        ["--model", str(tmp_path / "no-model"), "--input", str(good), "--output", str(tmp_path / "o.csv")],
    ]
    for args in bad_calls:
        assert cli.main(["predict", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err
    assert not (tmp_path / "o.csv").exists()
    assert cli.main(["predict", "--model", model, "--input", str(good), "--output", str(tmp_path / "o.csv")]) == 0
    assert (tmp_path / "o.csv").read_text().splitlines()[0].startswith("text,sentiment")
