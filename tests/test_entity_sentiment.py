"""The entity head: trained and judged by the project's own code on a tiny GPT, the CLI interfaces, the gate."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from pipeline.cli import main as cli


@pytest.fixture(scope="module")
def headed_model(tiny_models, tmp_path_factory):
    """A copy of the tiny heads model with an entity head fitted on SEntFiN (features cached in a temp home)."""
    import os

    from pipeline.entities.train_head import train_head

    model = tmp_path_factory.mktemp("headed") / "model"
    shutil.copytree(tiny_models[0], model)
    old = os.environ.get("FINSENT_HOME")
    os.environ["FINSENT_HOME"] = str(tmp_path_factory.mktemp("home"))
    try:
        metrics = train_head(model)
    finally:
        if old is None:
            os.environ.pop("FINSENT_HOME")
        else:
            os.environ["FINSENT_HOME"] = old
    return model, metrics


def test_train_head_writes_head_metadata_report_and_honest_splits(headed_model):
    from pipeline.classify.model import modeldir
    from pipeline.entities.train_head import finentity_pairs, sentfin_pairs

    model, metrics = headed_model
    assert (model / "entity_head.safetensors").is_file()
    meta = modeldir.read_meta(model)
    head = meta["entity_head"]
    assert head["C"] in (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1) and head["temperature"] > 0
    assert head["story_weight"] in (0.0, 0.25, 0.5, 1.0, 2.0)
    for name in ("sentfin_valid", "sentfin_test", "finentity"):
        m = metrics[name]
        assert 0 <= m["entity_head_macro_f1"] <= 1 and 0 <= m["story_label_baseline_macro_f1"] <= 1
        assert 0 < m["disagreeing_pairs"] < m["pairs"]
    assert meta["metrics"]["entity"]["sentfin_test"] == metrics["sentfin_test"]["entity_head_macro_f1"]
    report = json.loads((model / modeldir.REPORT_JSON).read_text())
    assert report["entity"]["finentity"]["pairs"] == metrics["finentity"]["pairs"]
    assert "## Entity-targeted sentiment" in (model / modeldir.REPORT_MD).read_text()

    # one split, shared: no headline is in two parts, and the test part is exactly the committed ids
    pairs = sentfin_pairs()
    parts = pairs.groupby("story")["split"].nunique()
    assert (parts == 1).all()
    from pipeline.classify.datasets.sources import registry

    test_ids = {f"sentfin:{i}" for i in registry()["sentfin"].test_ids.read_text().split()}
    assert set(pairs.loc[pairs["split"] == "test", "story"]) == test_ids & set(pairs["story"])
    assert set(finentity_pairs()["split"]) == {"finentity"}


def test_one_pass_per_text_and_not_found_pairs(headed_model):
    from pipeline.entities.sentiment import EntityScorer, Pair, locate

    model, _ = headed_model
    scorer = EntityScorer.load(model)
    text = "Acme beats estimates while Beta warns on margins"
    a, b = locate(text, "Acme"), locate(text, "beta")
    assert text[a[0] : a[1]] == "Acme" and text[b[0] : b[1]] == "Beta"
    together = scorer.score([Pair(text, *a), Pair(text, *b), Pair(text)])
    alone = scorer.score([Pair(text, *b)])
    assert together[1]["p_negative"] == pytest.approx(alone[0]["p_negative"], abs=1e-5)
    assert [r["found"] for r in together] == [True, True, False]
    for r in together:
        assert r["sentiment"] in ("negative", "neutral", "positive")
        assert r["p_negative"] + r["p_neutral"] + r["p_positive"] == pytest.approx(1, abs=1e-5)
    assert locate("$AAPL jumps", "AAPL") == (0, 5) and locate("Snapple", "Apple") == (-1, -1)


def test_entities_cli_link_and_predict_interfaces(headed_model, tmp_path, capsys):
    model, _ = headed_model
    src = tmp_path / "in.csv"
    pd.DataFrame(
        {
            "id": [1, 2, 3],
            "text": ["Apple shares rise while Intel warns on margins", "$TSLA slides", "No company here"],
        }
    ).to_csv(src, index=False)
    assert cli(["entities", "link", "--input", str(src), "--output", str(tmp_path / "links.csv")]) == 0
    links = pd.read_csv(tmp_path / "links.csv")
    assert list(links.columns[:2]) == ["id", "text"]
    assert {"entity", "ticker", "span", "start", "end", "confidence"} <= set(links.columns)
    assert list(links["span"]) == ["Apple", "Intel", "$TSLA"] and list(links["id"]) == [1, 1, 2]
    assert list(links["ticker"]) == ["NASDAQ:AAPL", "NASDAQ:INTC", "NASDAQ:TSLA"]
    row = links.iloc[1]
    assert row["text"][row["start"] : row["end"]] == "Intel"

    pairs = tmp_path / "pairs.csv"
    pd.DataFrame(
        {
            "text": ["Apple shares rise while Intel warns", "Apple shares rise while Intel warns", "Rates rise"],
            "entity": ["Intel", "AAPL", "Apple"],
            "note": ["a", "b", "c"],
        }
    ).to_csv(pairs, index=False)
    out = tmp_path / "pred.csv"
    assert cli(["entities", "predict", "--model", str(model), "--input", str(pairs), "--output", str(out)]) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == [
        "text",
        "entity",
        "note",
        "sentiment",
        "p_negative",
        "p_neutral",
        "p_positive",
        "found",
    ]
    assert list(pred["found"]) == [True, True, False]  # AAPL is found through the catalogue; Apple is absent

    capsys.readouterr()
    assert cli(["entities", "predict", "--model", str(tmp_path), "--input", str(pairs), "--output", str(out)]) == 2
    assert "error:" in capsys.readouterr().err


def test_gate_keeps_company_labels_once_they_exist():
    from pipeline.classify.release.registry import gate

    active = {"news": {"macro_f1": 0.7}, "sentiment": {"macro_f1": 0.7}, "entity": {"macro_f1": 0.6}}
    ok = {"news": {"macro_f1": 0.7}, "sentiment": {"macro_f1": 0.7}, "entity": {"macro_f1": 0.6}}
    assert gate(ok, active) == []
    assert any("no entity head" in r for r in gate({k: v for k, v in ok.items() if k != "entity"}, active))
    assert any("entity-level macro-F1" in r for r in gate({**ok, "entity": {"macro_f1": 0.3}}, active))
    assert (
        gate({k: v for k, v in ok.items() if k != "entity"}, {k: v for k, v in active.items() if k != "entity"}) == []
    )


def test_the_story_weight_is_the_largest_within_one_standard_error_of_the_best():
    import numpy as np

    from pipeline.entities.train_head import bootstrap_se, one_se_choice

    scores = {0.0: 0.8806, 0.25: 0.8742, 0.5: 0.8741, 1.0: 0.8688, 2.0: 0.8555}
    assert one_se_choice(scores, 0.01) == 0.5  # 0.8688 is further than one SE below the best
    assert one_se_choice(scores, 0.0) == 0.0 and one_se_choice(scores, 0.05) == 2.0
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 1200)
    pred = np.where(rng.random(1200) < 0.8, y, (y + 1) % 3)
    se = bootstrap_se(y, pred)
    assert 0.005 < se < 0.03  # about sqrt(p(1-p)/n) for 1,200 rows at 80 % agreement


def test_the_entity_rule_in_the_metadata_decides_where_the_head_speaks():
    import numpy as np

    from pipeline.entities.sentiment import apply_rule, parse_rule

    head = np.array([[0.8, 0.1, 0.1], [0.4, 0.35, 0.25]])
    story = np.array([[0.1, 0.2, 0.7], [0.1, 0.2, 0.7]])
    assert parse_rule("confident:0.6") == ("confident", 0.6) and parse_rule("head") == ("head", 0.7)
    assert (apply_rule("head", 0.7, head, story) == head).all()
    assert (apply_rule("inherit", 0.7, head, story) == story).all()
    assert (apply_rule("multi", 0.7, head[:1], story[:1]) == story[:1]).all()  # one company: the headline's
    assert (apply_rule("multi", 0.7, head, story) == head).all()
    assert (apply_rule("confident", 0.7, head, story) == np.array([head[0], story[1]])).all()
    with pytest.raises(ValueError, match="unknown entity rule"):
        parse_rule("magic")
