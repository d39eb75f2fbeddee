"""The expert-labelled news: registered by origin family, a fixed test split no training reads, its figures in
evaluation and the gate, and the distillation table's folds."""

from __future__ import annotations

import pandas as pd

from pipeline.classify.datasets import sources
from pipeline.classify.release import registry


def test_the_expert_set_is_registered_by_origin_with_a_fixed_test_split_training_never_reads():
    reg = sources.registry()
    fams = {n: sources.load(reg[n]) for n in ("expert_2023", "expert_2018_19", "expert_sentences")}
    test = sources.load(reg["expert_test"])
    topic_test = sources.load(reg["expert_topic_test"])
    raw = pd.read_csv(reg["expert_test"].path)
    ids = [int(x) for x in reg["expert_test"].test_ids.read_text().split()]
    assert 0.09 < len(ids) / len(raw) < 0.11 and len(set(ids)) == len(ids)
    assert len(test) == len(topic_test) == len(ids)
    # the families partition the training rows; no test row is in any of them
    train_ids = [set(df["id"].str.split(":").str[1].astype(int)) for df in fams.values()]
    assert sum(map(len, train_ids)) + len(ids) == len(raw)
    assert all(not (s & set(ids)) for s in train_ids)
    assert all(a.isdisjoint(b) for i, a in enumerate(train_ids) for b in train_ids[i + 1 :])
    # every family is in the test split in proportion (stratified by origin family and sentiment)
    family = raw.loc[ids, "origin"].str.split(":").str[0].value_counts(normalize=True)
    overall = raw["origin"].str.split(":").str[0].value_counts(normalize=True)
    assert (family - overall).abs().max() < 0.01
    assert set(topic_test["label"]) <= set(sources.TOPICS) and topic_test["label"].nunique() == 20
    # the test split's texts are held out: a training source holding the same text drops it
    frame, manifest = sources.training_frame([reg["sentivent"], reg["expert_sentences"]])
    keys = set(test["text"].map(sources.norm))
    assert not frame["text"].map(sources.norm).isin(keys).any()
    assert manifest["sentivent"]["dropped_heldout_overlap"] > 0  # re-annotated sentences in the test split


def test_the_expert_split_is_reported_apart_from_the_pooled_news_figure():
    pooled = [s.name for s in sources.heldout("sentiment", news=True, pooled=True)]
    apart = [s.name for s in sources.heldout("sentiment", news=True, pooled=False)]
    assert "expert_test" in apart and "expert_test" not in pooled
    assert {"finentity", "wsj", "sentfin_test"} <= set(pooled)
    assert [s.name for s in sources.heldout("topic", news=False)][0] == "tfns_topic_valid"


def test_the_gate_reads_the_expert_split_and_lets_a_news_gain_cost_two_points_on_tweets():
    active = {
        "news": {"macro_f1": 0.60},
        "sentiment": {"macro_f1": 0.78},
        "expert": {"macro_f1": 0.65, "topic_accuracy": 0.55},
        "entity": {"macro_f1": 0.6},
    }
    gains = {
        "news": {"macro_f1": 0.63},
        "sentiment": {"macro_f1": 0.765},
        "expert": {"macro_f1": 0.80, "topic_accuracy": 0.75},
    }
    assert registry.gate(gains, active, active_entity_rule="inherit") == []
    worse_tweets = {**gains, "sentiment": {"macro_f1": 0.75}}
    assert any("TFNS" in r and "0.02" in r for r in registry.gate(worse_tweets, active, active_entity_rule="inherit"))
    no_gain = {**gains, "news": {"macro_f1": 0.60}, "expert": {"macro_f1": 0.65, "topic_accuracy": 0.75}}
    assert any("TFNS" in r and "0.01" in r for r in registry.gate(no_gain, active, active_entity_rule="inherit"))
    worse_topic = {**gains, "expert": {"macro_f1": 0.80, "topic_accuracy": 0.50}}
    assert any("topic accuracy" in r for r in registry.gate(worse_topic, active, active_entity_rule="inherit"))
    no_expert = {k: v for k, v in gains.items() if k != "expert"}
    assert any("expert" in r for r in registry.gate(no_expert, active, active_entity_rule="inherit"))
    # company figures are asked for only while the active rule uses the entity head
    assert any("entity head" in r for r in registry.gate(gains, active, active_entity_rule="head"))


def test_distil_folds_never_train_on_the_left_out_family_or_its_reannotated_texts():
    from bench import distil

    df = pd.DataFrame(
        {
            "text": ["a", "b", "c", "d", "e"],
            "key": ["a", "b", "c", "d", "e"],
            "label": ["positive"] * 5,
            "source": ["expert_2023", "expert_sentences", "sentivent", "tfns_sentiment", "expert_test"],
            "role": ["train"] * 4 + ["heldout"],
        }
    )
    mix = distil.Mix("all", ("expert_2023", "expert_sentences", "sentivent", "tfns_sentiment"))
    assert set(distil.train_rows(df, mix, "sentivent")["source"]) == {"expert_2023", "tfns_sentiment"}
    assert set(distil.train_rows(df, mix, "expert_2023")["source"]) == {
        "expert_sentences",
        "sentivent",
        "tfns_sentiment",
    }
    assert "expert_test" not in set(distil.train_rows(df, mix, None)["source"])


def test_bench_distil_runs_on_a_tiny_model(tiny_models, capsys, tmp_path):
    import json

    from bench import distil

    out = tmp_path / "distil.json"
    distil.main(["--quick", "--model", str(tiny_models[0]), "--json", str(out)])
    printed = capsys.readouterr().out
    assert "| expert only |" in printed and "topic head" in printed
    res = json.loads(out.read_text())
    assert [r["mix"] for r in res["sentiment"]][:2] == ["the model's own head (no refit)", "expert only"]
    assert all(0 <= r["loo_mean"] <= 1 for r in res["sentiment"])
