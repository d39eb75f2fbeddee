"""Companies in any publisher's headlines: curated short and former names, shared names ranked, short names as
subjects, and the mention tagger that keeps names the catalogue lacks (issue 35)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from pipeline.config import REPO_ROOT
from pipeline.entities import build, catalogue, detect
from pipeline.entities.catalogue import Entity
from pipeline.entities.link import Linker
from tests.helpers import query, seed_articles

TEN = {  # the ten headlines and the company each names
    "BP cuts capital spending again": "bp",
    "Shell raises dividend after record profit": "shell",
    "GlaxoSmithKline wins approval for new vaccine": "gsk",
    "Morrisons sales fall for third quarter": "wm-morrison-supermarkets",
    "SABMiller rejects takeover approach": "sabmiller",
    "RBS fined over mis-selling": "natwest",
    "Sainsbury's to close 20 stores": "sainsbury-s",
    "Lloyds returns to profit": "lloyds-banking",
    "IAG orders 50 new jets": "international-airlines",
    "Barclays shares slide as investment bank struggles": "barclays",
}


@pytest.fixture(scope="module")
def linker() -> Linker:
    return Linker(catalogue.load())


@pytest.fixture(scope="module")
def tagged():
    """The shipped model (rebuilt under the state folder once) with its mention tagger."""
    from pipeline.classify.release import shipped

    model_dir = shipped.materialize()
    assert (model_dir / detect.HEAD_FILE).is_file(), "the shipped model carries its mention tagger"
    return model_dir


def test_the_ten_headlines_link_to_the_right_company_by_the_rules_alone(linker):
    for text, want in TEN.items():
        assert [m.entity_id for m in linker.link(text)] == [want], text


def test_a_shared_name_goes_to_the_ranked_entity_and_keeps_the_others_as_candidates(linker):
    (m,) = linker.link("GlaxoSmithKline wins approval for new vaccine")
    assert m.entity_id == "gsk"  # an index member before a wide-list listing and an Indian subsidiary
    assert {"glaxosmithkline", "glaxosmithkline-pharmaceuticals"} <= set(linker.others(m))
    (m,) = linker.link("IAG orders 50 new jets")
    assert m.entity_id == "international-airlines" and "insurance-australia" in linker.others(m)


def test_a_short_upper_case_name_counts_as_a_subject_only_before_a_verb_in_sentence_case(linker):
    assert [m.entity_id for m in linker.link("BP to sell Alaska assets")] == ["bp"]
    assert linker.link("BP Cuts Capital Spending Again") == []  # in Title Case the capitals prove nothing
    assert linker.link("BP and the price of oil") == []  # no verb after it
    assert linker.link("UK fined over air quality") == []  # an acronym of news is never a company


def test_curated_names_add_aliases_and_delisted_companies_each_with_a_source(tmp_path):
    path = tmp_path / "curated.csv"
    rows = [
        ["entity_id", "form", "kind", "name", "successor", "source"],
        ["acme", "Acme", "short", "", "", "the company's own short name"],
        ["oldco", "OldCo", "former", "OldCo plc", "acme", "taken over in 2016 (announcement)"],
    ]
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    ents = {"acme": Entity(id="acme", name="Acme Rockets Corp", source="pytickersymbols")}
    assert build.add_curated_names(ents, path) == 2
    assert "Acme" in ents["acme"].aliases
    old = ents["oldco"]
    assert (old.delisted, old.successor, old.former_names, old.source) == (True, "acme", ("OldCo",), "curated")
    with open(path, "a", newline="") as fh:
        csv.writer(fh).writerow(["acme", "ACR", "short", "", "", ""])
    with pytest.raises(ValueError, match="needs a kind .* and a source"):
        build.add_curated_names(dict(ents), path)
    # the committed file names a source on every row and only companies the catalogue holds or adds
    with open(build.CURATED_NAMES, newline="", encoding="utf-8") as fh:
        committed = list(csv.DictReader(fh))
    cat = catalogue.load()
    assert committed and all(r["source"].strip() and r["entity_id"] in cat.entities for r in committed)


def test_words_tags_and_spans_round_trip():
    text = "Tesco's profits slump as Aldi and Lidl gain share"
    spans = detect.words(text)
    assert text[slice(*spans[0])] == "Tesco"  # the possessive is not part of the name
    gold = [(0, 5), (25, 29), (34, 38)]
    labels = detect.bio(spans, gold)
    found = detect.decode(spans, labels, [1.0] * len(spans))
    assert [(a, b) for a, b, _ in found] == gold
    two_words = detect.bio(detect.words("Metro Bank shares fall"), [(0, 10)])
    assert two_words.tolist() == [detect.BEGIN, detect.INSIDE, detect.OUTSIDE, detect.OUTSIDE]


def test_the_cli_keeps_names_the_catalogue_lacks_and_links_the_rest(tagged, tmp_path):
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    texts = [*TEN, "OpenAI hires former Tesla executive to lead robotics push", "Nothing here moved today"]
    with open(src, "w", newline="") as fh:
        csv.writer(fh).writerows([["text"], *[[t] for t in texts]])
    run = subprocess.run(
        [sys.executable, "-m", "pipeline", "entities", "link", "--input", src, "--output", out, "--model", tagged],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout[run.stdout.index("{") :])
    assert summary["detector"].startswith("detector:") and summary["unlinked_names"] >= 1
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_text: dict[str, list[dict]] = {}
    for r in rows:
        by_text.setdefault(r["text"], []).append(r)
    for text, want in TEN.items():
        assert [r["entity_id"] for r in by_text[text]] == [want], text
    openai = by_text["OpenAI hires former Tesla executive to lead robotics push"]
    assert {(r["span"], r["entity_id"]) for r in openai} == {("OpenAI", ""), ("Tesla", "tesla")}
    assert "Nothing here moved today" not in by_text


def test_unlinked_names_are_stored_counted_and_relinked_only_when_the_tagger_changes(tagged, db_url):
    from pipeline import db
    from pipeline.entities import store

    titles = ["OpenAI weighs share sale at higher valuation", "Barclays shares slide", "Microsoft and OpenAI talk"]
    aids = seed_articles(db_url, titles)
    cat = catalogue.load()
    tagger = detect.MentionDetector.load(tagged)
    conn = db.connect(db_url)
    try:
        store.sync(conn, cat)
        out = store.link_pending(conn, detect.Finder(Linker(cat), tagger))
        assert out["linked"] == 3 and out["unlinked_names"] == 2 and out["tagger"].startswith("detector:")
        rows = query(db_url, "SELECT article_id, name, name_key FROM story_names ORDER BY article_id")
        assert rows == [(aids[0], "OpenAI", "openai"), (aids[2], "OpenAI", "openai")]
        linked = query(db_url, "SELECT article_id, entity_id FROM story_entities ORDER BY article_id, start_pos")
        assert linked == [(aids[1], "barclays"), (aids[2], "microsoft")]
        assert store.link_pending(conn, detect.Finder(Linker(cat), tagger))["linked"] == 0  # a no-op re-run
        # the Companies page finds the name by part of it and counts its stories per bucket
        from dashboard import queries

        pool = queries.make_pool(db_url)
        try:
            names = queries.unlinked_names(pool, "opena")
            assert names[["name", "stories"]].values.tolist() == [["OpenAI", 2]]
            assert queries.unlinked_names(pool, "%").empty  # the search's wildcards are taken literally
            series = queries.name_series(pool, "no-model", "openai", "day")
            assert int(series["stories"].sum()) == 2 and int(series["negatives"].sum()) == 0
        finally:
            pool.closeall()
        # the rules alone are another linker: the stories are re-linked, and the names go with the tagger
        assert store.link_pending(conn, Linker(cat))["linked"] == 3
        assert query(db_url, "SELECT count(*) FROM story_names") == [(0,)]
    finally:
        conn.close()
