"""Company catalogue, linking rules, sync and re-linking on a real PostgreSQL, per-entity stats and alerts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.entities import catalogue
from pipeline.entities.catalogue import Catalogue, CatalogueError, Entity
from pipeline.entities.link import Linker
from tests.helpers import SMTPServer, query, seed_articles


@pytest.fixture(scope="module")
def bundled() -> Catalogue:
    return catalogue.load(user_file=Path("/nonexistent/entities.yaml"))


@pytest.fixture(scope="module")
def linker(bundled) -> Linker:
    return Linker(bundled)


def ids(linker: Linker, text: str) -> list[str]:
    return [m.entity_id for m in linker.link(text)]


# ---- catalogue validation ------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "entities.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "entities:\n  - {id: acme, name: Acme, tickers: [ACME]}\n",
            "entities[0] (id 'acme'): tickers[0] 'ACME' must be",
        ),
        ("entities:\n  - {id: acme}\n", "entities[0] (id 'acme'): name is required"),
        ("entities:\n  - {id: Acme Corp, name: Acme}\n", "id 'Acme Corp' must be lower-case"),
        ("entities:\n  - {id: acme, name: Acme, colour: red}\n", "unknown keys ['colour']"),
        (
            "entities:\n  - {id: acme, name: Acme}\n  - {id: acme, name: Acme 2}\n",
            "entities[1] (id 'acme'): id given twice",
        ),
        ('entities:\n  - {id: acme, name: "A\\u0000cme"}\n', "control characters"),
        (
            "watchlists:\n  - {name: core, entities: [no-such-co]}\n",
            "watchlists[0] (name 'core'): entities[0]: 'no-such-co' is not",
        ),
        ("watchlists:\n  - {name: core, entities: []}\n", "watchlists[0] (name 'core'): lists no entities"),
        ("entities: [\n", "not valid YAML"),
        ("- just a list\n", "top level must be a mapping"),
        ("entities:\n  - {id: zz-unknown, disabled: true}\n", "disabled, but there is no bundled entity"),
    ],
)
def test_bad_entries_are_named(tmp_path, text, message):
    with pytest.raises(CatalogueError) as err:
        catalogue.load(write(tmp_path, text))
    assert message in str(err.value)
    assert str(tmp_path / "entities.yaml") in str(err.value)


def test_user_file_adds_amends_disables_and_resolves_watchlists(tmp_path):
    path = write(
        tmp_path,
        """
entities:
  - id: acme-rockets
    name: Acme Rockets Corp
    aliases: [Acme Rockets]
    tickers: [NYSE:ACMR]
    sector: Aerospace
  - id: apple
    aliases: [iPhone maker]
  - id: target
    disabled: true
watchlists:
  - name: core holdings
    description: what the desk holds
    entities: [acme-rockets, AAPL, NYSE:ACMR]
""",
    )
    cat = catalogue.load(path)
    assert cat.entities["acme-rockets"].tickers == ("NYSE:ACMR",)
    assert "iPhone maker" in cat.entities["apple"].aliases and "Apple" in cat.entities["apple"].aliases
    assert cat.entities["apple"].source == "bundled+user"
    assert "target" not in cat.entities
    assert cat.watchlists["core holdings"].entities == ("acme-rockets", "apple")
    assert cat.fingerprint() != catalogue.load(Path("/nonexistent")).fingerprint()
    hits = Linker(cat).link("Acme Rockets shares soar; iPhone maker's supplier cuts jobs")
    assert [(m.entity_id, m.span) for m in hits] == [("acme-rockets", "Acme Rockets"), ("apple", "iPhone maker")]


def test_bundled_catalogue_is_valid_and_sizeable(bundled):
    assert len(bundled.entities) > 2000
    assert bundled.entities["apple"].tickers == ("NASDAQ:AAPL",)
    assert {e.source for e in bundled.entities.values()} == {
        "pytickersymbols",
        "sentfin",
        "financedatabase",
        "ftse100-history",
        "curated",  # data/entities/curated_names.csv: companies gone before every list (SABMiller)
    }
    # world listings, delisted names and former names an archive backfill needs
    svb, cs, shire = (bundled.entities[i] for i in ("svb-financial", "credit-suisse", "shire-pharmaceuticals"))
    assert "Silicon Valley Bank" in svb.aliases and cs.delisted and cs.isin == "CH0012138530"
    assert shire.delisted and shire.successor == "takeda-pharmaceutical"
    assert "WPP Group" in bundled.entities["wpp"].former_names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BP profits jump as oil prices rise", [("bp", "BP")]),
        ("BP oil spill hearing", []),  # two capitals need a company noun right after them
        ("Next raises guidance after strong Christmas", [("next", "Next")]),
        ("Next week's vote on rates", []),
        ("ITV shares slump on advertising warning", [("itv", "ITV")]),
        ("SVB collapse rattles banks", [("svb-financial", "SVB")]),
        ("Royal Dutch Shell to buy BG Group", [("royal-dutch-shell", "Royal Dutch Shell")]),
        ("Two companies agree to merge", []),
        ("Mr Burton said the plan was sound", []),  # a surname from an old FTSE name needs context
    ],
)
def test_world_catalogue_names_short_capitals_and_former_names(bundled, text, expected):
    assert [(m.entity_id, m.span) for m in Linker(bundled).link(text)] == expected


# ---- linking rules ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # word boundaries
        ("Applebee's franchisee files for bankruptcy", []),
        ("Snapple maker Keurig Dr Pepper beats estimates", ["keurig-dr-pepper"]),
        # possessives and punctuation
        ("Apple's iPhone sales slump in China", ["apple"]),
        ("Apple\u2019s supplier warns", ["apple"]),
        ("(Apple) shares rise", ["apple"]),
        ("Johnson & Johnson cuts outlook", ["johnson-johnson"]),
        # cashtags and tickers in context
        ("$AAPL and $TSLA lead the Nasdaq higher", ["apple", "tesla"]),
        ("Allstate (NYSE: ALL) posts quarterly loss", ["allstate"]),
        ("Johnson & Johnson <JNJ.N> shares gained", ["johnson-johnson"]),
        # common words that are also companies need context
        ("I ate an apple and hit my target", []),
        ("Analysts raise their price target after the visa ruling", []),
        ("Company Misses Its Sales Target Again", []),
        ("Apple shares rise after iPhone sales beat", ["apple"]),
        ("Target Corp cuts its outlook", ["target"]),
        ("Retailer Target warns on profit as shoppers pull back", ["target"]),
        ("Shares of Visa fall after the lawsuit", ["visa"]),
        # short and word-like tickers never count bare
        ("A rally in ALL sectors as IT stocks gain", []),
        ("ALL IN: MARKETS RALLY AS AAPL AND MSFT GAIN ON EARNINGS", []),
        ("Q2 net profit rises 20%", []),
        # longest match, bare long tickers
        ("Bank of America profit jumps", ["bank-of-america"]),
        ("MSFT and NVDA slip in early trade", ["microsoft", "nvidia"]),
        ("Infosys, Wipro gain; TCS falls", ["infosys", "wipro"]),  # 3-letter bare tickers: too often not
        ("Infosys, Wipro gain; $TCS falls", ["infosys", "wipro", "tata-consultancy-services"]),
    ],
)
def test_linking_rules(linker, text, expected):
    assert ids(linker, text) == expected


def test_offsets_index_the_raw_text(linker):
    text = "İstanbul \u00fcber-news \u2014 Apple\u2019s $MSFT rival"
    for m in linker.link(text):
        assert text[m.start : m.end] == m.span
    assert [m.span for m in linker.link(text)] == ["Apple", "$MSFT"]


def test_shared_forms_go_to_their_named_owner_else_by_the_stated_order():
    cat = Catalogue(
        entities={
            "acme-a": Entity("acme-a", "Acme", ("Acme Group",)),
            "acme-b": Entity("acme-b", "Acme Bank", ("Acme",)),
            "zed-1": Entity("zed-1", "Zed One", ("Zed",), source="financedatabase"),
            "zed-2": Entity("zed-2", "Zed Two", ("Zed",), tickers=("LON:ZED",), source="pytickersymbols"),
            "zed-3": Entity("zed-3", "Zed Three", ("Zed",), source="pytickersymbols", delisted=True),
        }
    )
    linker = Linker(cat, words=frozenset())
    assert ids(linker, "Acme shares rise") == ["acme-a"]
    # three claim "Zed" as an alias: the live index member wins, the others stay as candidates, best first
    (m,) = linker.link("Zed shares rise")
    assert m.entity_id == "zed-2" and linker.others(m) == ("zed-1", "zed-3")


# ---- sync, link, re-link, per-entity stats ---------------------------------------------------------------------


def test_sync_links_and_relinks_past_stories(db_url, tmp_path):
    from pipeline import db
    from pipeline.entities import store

    titles = ["Acme Rockets shares soar after launch", "Zyntrex recalls widgets", "Nothing to see here"]
    aids = seed_articles(db_url, titles)
    first = catalogue.load(
        write(tmp_path, "entities:\n  - {id: acme-rockets, name: Acme Rockets Corp, aliases: [Acme Rockets]}\n"),
        bundled=None,
    )
    conn = db.connect(db_url)
    try:
        out = store.sync(conn, first)
        assert out["entities"] == 1 and out["added"] == 1
        assert store.link_pending(conn, Linker(first))["linked"] == 3
        assert store.link_pending(conn, Linker(first))["linked"] == 0  # re-running is a no-op
        rows = query(db_url, "SELECT article_id, entity_id, start_pos, end_pos, matched FROM story_entities")
        assert rows == [(aids[0], "acme-rockets", 0, 12, "Acme Rockets")]

        # a new entity in the user file re-links the past: the Zyntrex story gains its link
        second = catalogue.load(
            write(
                tmp_path,
                "entities:\n  - {id: acme-rockets, name: Acme Rockets Corp, aliases: [Acme Rockets]}\n"
                "  - {id: zyntrex, name: Zyntrex Inc, aliases: [Zyntrex]}\n"
                "watchlists:\n  - {name: desk, entities: [zyntrex]}\n",
            ),
            bundled=None,
        )
        store.sync(conn, second)
        assert store.link_pending(conn, Linker(second))["linked"] == 3
        rows = query(db_url, "SELECT article_id, entity_id FROM story_entities ORDER BY article_id")
        assert rows == [(aids[0], "acme-rockets"), (aids[1], "zyntrex")]
        assert query(db_url, "SELECT watchlist, entity_id FROM watchlist_entities") == [("desk", "zyntrex")]

        # a removed entity takes its links with it; a linker for another catalogue is refused
        third = catalogue.load(
            write(tmp_path, "entities:\n  - {id: zyntrex, name: Zyntrex Inc, aliases: [Zyntrex]}\n"), bundled=None
        )
        with pytest.raises(RuntimeError, match="not the synced one"):
            store.link_pending(conn, Linker(third))
        assert store.sync(conn, third)["removed"] == 1
        assert query(db_url, "SELECT entity_id FROM story_entities") == [("zyntrex",)]
        assert query(db_url, "SELECT count(*) FROM watchlists") == [(0,)]
    finally:
        conn.close()


def test_entity_labels_stats_and_alert_email(db_url, tmp_path, monkeypatch, smtp_port):
    """Story labels stand in for entity labels when the model has no entity head; stats per entity are
    idempotent; a surge on a watchlist company opens one alert whose email names it and its headlines."""
    from pipeline import db
    from pipeline.alerts import aggregate
    from pipeline.alerts.refresh import refresh
    from pipeline.entities import store
    from tests.seeding import MODEL, H, seed

    # four quiet weeks of Zyntrex news (1 in 5 negative), then a bad day
    traffic = [(H - timedelta(hours=h), "Earnings", 2, 0) for h in range(30, 28 * 24, 6)]
    seed(db_url, traffic)
    seed(db_url, [(H - timedelta(hours=h), "Earnings", 1, 1) for h in range(30, 28 * 24, 30)])
    seed(db_url, [(H - timedelta(hours=h), "Earnings", 2, 2) for h in range(0, 5)])
    conn = db.connect(db_url)
    with conn.cursor() as cur:
        cur.execute("UPDATE articles SET title = 'Zyntrex ' || title")
    conn.commit()
    cat = catalogue.load(
        write(
            tmp_path,
            "entities:\n  - {id: zyntrex, name: Zyntrex Inc, aliases: [Zyntrex]}\n"
            "watchlists:\n  - {name: desk, entities: [zyntrex]}\n",
        ),
        bundled=None,
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "entities:\n  defaults: {min_stories: 5, min_negatives: 4}\n"
        "routing:\n  routes:\n    - {email: [risk@example.com]}\n"
        "    - {name: desk, watchlists: [desk], email: [desk@example.com]}\n"
    )
    monkeypatch.setenv("FINSENT_ALERT_RULES", str(rules))
    monkeypatch.setenv("FINSENT_ENTITIES_FILE", str(tmp_path / "entities.yaml"))
    try:
        store.sync(conn, cat)
        store.link_pending(conn, Linker(cat))
        out = store.score_pending(conn, MODEL, scorer=None)
        n_links = query(db_url, "SELECT count(*) FROM story_entities")[0][0]
        assert out["pairs"] == n_links > 0
        assert store.score_pending(conn, MODEL, scorer=None)["pairs"] == 0
        assert query(db_url, "SELECT DISTINCT method FROM entity_scores") == [("story_label",)]

        span = (H - timedelta(days=29), H + timedelta(hours=1))
        first = aggregate.recompute(conn, MODEL, *span)
        again = aggregate.recompute(conn, MODEL, *span)
        assert first == again
        stats = query(
            db_url,
            "SELECT sum(stories), sum(negatives) FROM hourly_stats WHERE dimension = 'entity' AND key = 'zyntrex'",
        )
        assert stats == [
            (n_links, query(db_url, "SELECT count(*) FROM entity_scores WHERE sentiment = 'negative'")[0][0])
        ]

        res = refresh(conn, (H, H + timedelta(hours=1)))
        alerts = query(db_url, "SELECT id, dimension, key, severity FROM alerts WHERE dimension = 'entity'")
        assert len(alerts) == 1 and alerts[0][2] == "zyntrex", (res, alerts)
        refresh(conn, (H, H + timedelta(hours=1)))  # re-running the hour opens nothing new
        assert len(query(db_url, "SELECT id FROM alerts WHERE dimension = 'entity'")) == 1
    finally:
        conn.close()

    from pipeline import tasks

    with SMTPServer(smtp_port) as server:
        sent = tasks.notify(
            {"start": H.isoformat(), "end": (H + timedelta(hours=1)).isoformat()},
            {"notify": True},
            now=H + timedelta(hours=1),
        )
        again = tasks.notify(
            {"start": H.isoformat(), "end": (H + timedelta(hours=1)).isoformat()},
            {"notify": True},
            now=H + timedelta(hours=1),
        )
    entity_mail = [m for m in server.messages if "Zyntrex" in m["Subject"]]
    assert len(entity_mail) == 1, [m["Subject"] for m in server.messages]
    body = entity_mail[0].get_body(("plain",)).get_content()
    assert "Zyntrex Inc" in entity_mail[0]["Subject"] and "Zyntrex" in body and "Company" in body
    rcpts = server.rcpts[server.messages.index(entity_mail[0])]
    assert set(rcpts) == {"risk@example.com", "desk@example.com"}
    assert len(sent["sent"]) >= 1 and again["sent"] == []
