"""User files and windows from careless operators and attackers: YAML bombs, wrong shapes, twice-given keys,
reversed or enormous windows, huge cells. What a user sees: the exit code, one line naming the place."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from pipeline import cli, safeyaml, windows

BOMB = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def run(args: list[str], capsys) -> tuple[int, str]:
    code = cli.main(args)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.fixture()
def files(tmp_path, monkeypatch):
    rules, entities = tmp_path / "alert_rules.yaml", tmp_path / "entities.yaml"
    rules.write_text("defaults: {}\n")
    entities.write_text("entities: []\n")
    monkeypatch.setenv("FINSENT_ALERT_RULES", str(rules))
    monkeypatch.setenv("FINSENT_ENTITIES_FILE", str(entities))
    return rules, entities


def _bombed(kind: str) -> str:
    """The bomb placed in a value of each file, as an attacker with write access to one line would."""
    body = BOMB.replace("\n", "\n  ")
    if kind == "rules":
        return "defaults:\n  " + body + "\n"
    return "entities:\n  - id: x\n    name: X\n    aliases:\n      " + BOMB.replace("\n", "\n      ") + "\n"


@pytest.mark.parametrize("which", ["rules", "entities"])
def test_an_alias_bomb_is_refused_at_once_with_a_short_message(files, which, capsys):
    rules, entities = files
    (rules if which == "rules" else entities).write_text(_bombed(which))
    t0 = time.monotonic()
    code, err = run(["entities", "validate"], capsys)
    assert code == 2 and "aliases (*name) are not allowed" in err and "line " in err
    assert len(err) < 400 and "\n" not in err and "lol" not in err
    assert time.monotonic() - t0 < 10  # refused while parsing, not after expanding (it took 18-46 s and died)


@pytest.mark.parametrize(
    "text, place",
    [
        ("topics: [Earnings]\n", "topics: must be a mapping"),
        ("entities:\n  per_entity: [apple]\n", "entities.per_entity: must be a mapping"),
        ("routing:\n  slack: [risk-chat]\n  routes: []\n", "routing.slack: must be a mapping"),
        ("routing:\n  routes: {name: x}\n", "routing.routes: must be a list"),
        ("defaults: [1, 2]\n", "defaults: must be a mapping"),
        ("- just\n- a list\n", "the top level must be a mapping"),
    ],
)
def test_a_wrong_shape_names_its_place_and_exits_2(files, text, place, capsys):
    rules, _ = files
    rules.write_text(text)
    code, err = run(["entities", "validate"], capsys)
    assert code == 2 and place in err and str(rules) in err and "AttributeError" not in err, err


def test_a_key_given_twice_is_an_error_not_a_silent_drop(files, capsys):
    rules, entities = files
    rules.write_text(
        "routing:\n  routes:\n    - {name: risk team, email: [risk@example.com]}\n"
        "    - {name: cro, email: [cro@example.com]}\n"
        "defaults: {}\n"
        "routing:\n  routes:\n    - {name: intern, email: [intern@example.com]}\n"
    )
    code, err = run(["entities", "validate"], capsys)
    assert code == 2 and "'routing' is given twice" in err and "line 6" in err
    entities.write_text("entities:\n  - {id: acme, name: Acme, name: Other}\n")
    rules.write_text("defaults: {}\n")
    code, err = run(["entities", "validate"], capsys)
    assert code == 2 and "'name' is given twice" in err


def test_huge_files_and_values_are_capped_and_quoted_short(files, tmp_path, capsys):
    rules, entities = files
    rules.write_text("defaults:\n  min_stories: " + "9" * 100 + "\n")
    code, err = run(["entities", "validate"], capsys)
    assert code == 2 and "min_stories" in err and len(err) < 400
    rules.write_text("defaults: {}\n")
    entities.write_text("entities:\n  - {id: acme, name: '" + "A" * 100_000 + "'}\n")
    code, err = run(["entities", "validate"], capsys)
    assert code == 2 and "longer than 65,536 characters" in err and len(err) < 400
    entities.write_text("# padding\n" * 300_000)
    code, err = run(["entities", "validate"], capsys)
    assert code == 2 and "larger than 2,097,152 bytes" in err
    entities.write_text("entities:\n  - {id: 'Bad Id " + "x" * 5000 + "', name: Acme}\n")
    code, err = run(["entities", "validate"], capsys)
    assert code == 2 and "chars)" in err and len(err) < 400  # the value quoted by a short prefix


def test_feed_registries_go_through_the_same_reader(tmp_path):
    from pipeline.ingest.registry import RegistryError, read

    path = tmp_path / "feeds.yaml"
    path.write_text("feeds:\n  - &f {name: a, url: 'https://example.com/a.xml'}\n  - *f\n")
    with pytest.raises(RegistryError, match="aliases"):
        read(path)
    path.write_text("feeds: []\nfeeds:\n  - {name: a, url: 'https://example.com/a.xml'}\n")
    with pytest.raises(RegistryError, match="given twice"):
        read(path)


def test_the_dashboard_says_the_rules_file_is_invalid_for_every_class(files, db_url):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from pipeline import config
    from tests.seeding import H, seed, week_of_normal

    seed(db_url, week_of_normal(H)[:48])  # an active model and a few stories: the Alerts page renders
    st.cache_data.clear()
    st.cache_resource.clear()  # the connection pool points at this test's database
    rules, _ = files
    for text in (_bombed("rules"), "topics: [Earnings]\n", "routing: {}\nrouting: {}\n"):
        rules.write_text(text)
        at = AppTest.from_file(str(config.REPO_ROOT / "dashboard" / "app.py"), default_timeout=60)
        at.query_params["page"] = "Alerts"
        at.run()
        assert not at.exception, text
        assert any(e.value.startswith("The alert rules file is invalid") for e in at.error), text


def test_short_quotes_stay_short():
    assert safeyaml.short("x" * 10_000).endswith("… (10000 chars)'") and len(safeyaml.short("x" * 10_000)) < 90
    assert safeyaml.short(list(range(10**6))) == "<list of 1000000>"


# --- windows ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, end, message",
    [
        ("2026-03-02", "2026-03-01", "must be after 'start'"),
        ("2026-03-01T10:20", "2026-03-01T10:50", "must be after 'start'"),  # empty once floored
        ("0001-01-01", "9999-12-31", "spans 3,652,058 days"),
        ("yesterday", "2026-03-01", "not an ISO 8601 time"),
        ("2026-03-01" + "0" * 10_000, "2026-03-02", "not an ISO 8601 time"),
    ],
)
def test_bad_windows_exit_2_before_any_work(start, end, message, capsys, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")  # never reached
    t0 = time.monotonic()
    code, err = run(["aggregate", "--start", start, "--end", end], capsys)
    assert code == 2 and message in err and len(err) < 300, err
    assert time.monotonic() - t0 < 5


def test_a_dag_conf_window_is_checked_the_same_way():
    from datetime import UTC, datetime

    now = datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(windows.WindowError, match="spans"):
        windows.run_window(now, {"start": "1000-01-01", "end": "9000-01-01"})
    with pytest.raises(windows.WindowError, match="must be after"):
        windows.run_window(now, {"start": "2026-03-02", "end": "2026-03-01"})
    with pytest.raises(windows.WindowError, match="spans"):
        windows.hours((datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)))
    assert len(windows.hours(windows.run_window(now, {"start": "2025-03-01", "end": "2026-03-01"}))) == 365 * 24


# --- huge cells -------------------------------------------------------------------------------------------------


def test_entities_link_output_stays_bounded_for_a_huge_cell(tmp_path, capsys):
    from pipeline.entities_cli import LINK_CELL_CHARS, LINK_MAX_MENTIONS

    src, out = tmp_path / "in.csv", tmp_path / "links.csv"
    huge = "Apple shares rise while Intel warns. " * 3_600  # ~130 KB, 7,200 mentions
    pd.DataFrame({"id": [1, 2], "text": [huge, "Intel slides"]}).to_csv(src, index=False)
    code = cli.main(["entities", "link", "--input", str(src), "--output", str(out)])
    summary = capsys.readouterr().out
    assert code == 0 and '"rows_over_mention_cap": 1' in summary and '"cells_cut": 1' in summary
    links = pd.read_csv(out)
    assert len(links) == LINK_MAX_MENTIONS + 1 and out.stat().st_size < 200_000  # not a gigabyte
    assert links["text"].str.len().max() == LINK_CELL_CHARS and list(links["row"].unique()) == [0, 1]
    first = links.iloc[1]
    assert huge[first["start"] : first["end"]] == first["span"]  # offsets index the full input text


def test_predict_on_huge_cells_labels_them_and_echoes_each_once(tiny_models, tmp_path, capsys):
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    pd.DataFrame({"text": ["Profit warning sends shares lower " * 30_000, "", "Shares rise"]}).to_csv(src, index=False)
    assert cli.main(["predict", "--model", str(tiny_models[1]), "--input", str(src), "--output", str(out)]) == 0
    got = pd.read_csv(out, keep_default_na=False)
    assert len(got) == 3 and set(got["sentiment"]) <= {"negative", "neutral", "positive"}
    assert out.stat().st_size < 2 * src.stat().st_size
