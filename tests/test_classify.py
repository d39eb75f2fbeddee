"""Classifier: base model loading, training (both recipes), evaluation, registry, inference, scoring."""

import json
import os
import re
import subprocess
import sys
import threading

import pandas as pd
import pytest
import torch

from pipeline import config, db
from pipeline.classify.model import modeldir
from pipeline.classify.model.labels import SENTIMENTS, TOPICS
from pipeline.classify.model.predict import Classifier
from pipeline.classify.release import registry
from pipeline.classify.score import NoActiveModel, score_pending
from tests.helpers import query, seed_articles


def test_real_smollm2_loads_from_the_package_and_answers(smollm2_dir):
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tok.pad_token == "<|im_end|>" and tok.padding_side == "right"
    lm = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    assert sum(p.numel() for p in lm.parameters()) == pytest.approx(134.5e6, rel=0.01)
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.inference_mode():
        out = lm.generate(**ids, max_new_tokens=4, do_sample=False)
    assert "Paris" in tok.decode(out[0][ids["input_ids"].shape[1] :])
    backbone = AutoModel.from_pretrained(smollm2_dir)
    from pipeline.classify.model.architecture import DualHeadClassifier

    model = DualHeadClassifier(backbone, 3, 20).eval()
    enc = tok(["Stocks slump", "Fed holds rates steady as inflation cools"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        out = model(enc["input_ids"], enc["attention_mask"])
    assert out["sentiment_logits"].shape == (2, 3) and out["topic_logits"].shape == (2, 20)


def test_model_directories_carry_everything_the_registry_needs(tiny_models, tiny_base):
    for model_dir, method in zip(tiny_models, ("heads", "finetune")):
        meta = modeldir.read_meta(model_dir)
        assert meta["method"] == method
        assert meta["labels"] == {"sentiment": SENTIMENTS, "topic": TOPICS}
        assert meta["base_model"] == str(tiny_base)
        assert len(meta["training_data"]["sha256"]) == 64
        assert meta["training"]["seed"] == 42
        assert (model_dir / "backbone" / "model.safetensors").is_file()
        assert (model_dir / "heads.safetensors").is_file() and (model_dir / "tokenizer" / "tokenizer.json").is_file()
        report = json.loads((model_dir / "report.json").read_text())
        assert set(report["systems"]) == {"model", "tfidf_lr", "vader", "finvader"}
        sets = report["systems"]["model"]["sets"]
        assert {k: v["n"] for k, v in sets.items()} == {
            "tfns_sentiment_valid": 2388,
            "tfns_topic_valid": 4117,
            "finentity": 841,
            "wsj": 166,
            "sentfin_test": 1590,
            "expert_test": 3178,
            "expert_topic_test": 3178,
        }
        assert report["summary"]["expert"]["n"] == 3178 and 0 <= report["summary"]["expert"]["topic_accuracy"] <= 1
        s = sets["tfns_sentiment_valid"]
        assert len(s["confusion_matrix"]["rows_true_cols_pred"]) == 3
        assert sum(map(sum, s["confusion_matrix"]["rows_true_cols_pred"])) == 2388
        assert set(s["report"]) >= set(SENTIMENTS)
        pooled = report["systems"]["model"]["news_pooled"]
        assert pooled["n"] == 841 + 166 + 1590
        lo, hi = pooled["macro_f1_ci95"]
        assert lo <= pooled["macro_f1"] <= hi and hi - lo > 0
        for name in ("finentity", "wsj", "sentfin_test"):
            assert sets[name]["macro_f1_ci95"][0] <= sets[name]["macro_f1"] <= sets[name]["macro_f1_ci95"][1]
        # the baselines are real: TF-IDF+LR learns far more than chance even from 96-120 rows per task
        assert report["systems"]["tfidf_lr"]["sets"]["tfns_topic_valid"]["accuracy"] > 0.25
        assert 0.2 < report["systems"]["vader"]["sets"]["tfns_sentiment_valid"]["macro_f1"] < 0.9
        assert 0.2 < report["systems"]["finvader"]["news_pooled"]["macro_f1"] < 0.9
        cal = report["calibration"]
        assert set(cal) >= {"tfns_sentiment_valid", "news_pooled"} and cal["sentiment_temperature"] > 0
        md = (model_dir / "report.md").read_text()
        assert "| tfidf_lr |" in md and "## Model on `tfns_topic_valid`" in md and "ECE before" in md
        assert "| Fed \\| Central Banks |" in md  # a "|" inside a topic name must not split its row
        for block in md.split("\n\n"):
            rows = [line for line in block.splitlines() if line.startswith("|")]
            widths = {len(re.split(r"(?<!\\)\|", row)) for row in rows}
            assert len(widths) <= 1, rows
        assert meta["metrics"]["news"]["macro_f1"] == pooled["macro_f1"]
        assert meta["metrics"]["sentiment"]["macro_f1"] == s["macro_f1"]


def test_finetune_learns_beyond_its_initialisation(tiny_models):
    meta = modeldir.read_meta(tiny_models[1])
    details = meta["training_details"]
    assert details["steps"] >= 10 and details["trainable_params"] > 1_000_000
    assert "eval_score" in details["val"]


def test_warm_start_continues_from_a_trained_model(tiny_models, tmp_path):
    """CPU fine-tuning runs in stages: a new version starts from the parent's backbone and heads."""
    from pipeline.classify.training.train import train_from

    parent_dir = tiny_models[1]
    parent, parent_meta = modeldir.load(parent_dir)
    child_dir = train_from(
        dict(
            init_model=str(parent_dir),
            method="finetune",
            train_layers=0,
            limit_per_task=32,
            epochs=1,
            batch_size=16,
            eval_steps=2,
            learning_rate=1e-3,
            output_root=str(tmp_path),
        )
    )
    child, meta = modeldir.load(child_dir)
    assert meta["parent_version"] == parent_meta["version"] and meta["base_model"] == parent_meta["base_model"]
    assert meta["training"]["init_model"] == str(parent_dir)
    # the child starts from the parent's weights, not from the base model: same shapes, nearby values, not equal
    p, c = parent.sentiment_head.weight, child.sentiment_head.weight
    assert p.shape == c.shape and not torch.equal(p, c)
    assert (p - c).abs().mean() < p.abs().mean()


def test_predictions_are_probabilities_with_named_labels(tiny_models):
    clf = Classifier.load(tiny_models[0], device="cpu")
    texts = ["Shares plunge after profit warning", "", "Dividend raised 10%", "x" * 5000]
    preds = clf.predict(texts, batch_size=2).rows()
    assert len(preds) == 4
    for p in preds:
        assert p["sentiment"] in SENTIMENTS and p["topic"] in TOPICS
        assert p["p_negative"] + p["p_neutral"] + p["p_positive"] == pytest.approx(1.0, abs=1e-4)
        assert 0 < p["topic_confidence"] <= 1
    # order-independent: sorting by length inside predict must not shuffle outputs
    again = clf.predict(list(reversed(texts)), batch_size=3).rows()
    assert [p["sentiment"] for p in again] == [p["sentiment"] for p in reversed(preds)]


def test_predict_cli_adds_the_columns(tiny_models, tmp_path):
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": [1, 2, 3], "text": ["Oil jumps 5% on OPEC cut", "Bank fined $2bn", None]}).to_csv(
        src, index=False
    )
    out = tmp_path / "out.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "predict",
            "--model",
            str(tiny_models[0]),
            "--input",
            str(src),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=config.REPO_ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    df = pd.read_csv(out)
    assert list(df.columns) == [
        "id",
        "text",
        "sentiment",
        "p_negative",
        "p_neutral",
        "p_positive",
        "topic",
        "topic_confidence",
    ]
    assert len(df) == 3 and df["sentiment"].isin(SENTIMENTS).all()


def test_gate_compares_news_and_tweets_separately():
    active = {"news": {"macro_f1": 0.80}, "sentiment": {"macro_f1": 0.83}, "topic": {"accuracy": 0.88}}
    assert registry.gate({"news": {"macro_f1": 0.795}, "sentiment": {"macro_f1": 0.825}}, active) == []
    worse_news = registry.gate({"news": {"macro_f1": 0.78}, "sentiment": {"macro_f1": 0.90}}, active)
    assert len(worse_news) == 1 and "news" in worse_news[0]
    worse_tweets = registry.gate({"news": {"macro_f1": 0.80}, "sentiment": {"macro_f1": 0.81}}, active)
    assert len(worse_tweets) == 1 and "TFNS" in worse_tweets[0]
    # a candidate that gains on news may give up to 0.02 on tweets (another convention), not more
    assert registry.gate({"news": {"macro_f1": 0.90}, "sentiment": {"macro_f1": 0.811}}, active) == []
    assert "TFNS" in registry.gate({"news": {"macro_f1": 0.90}, "sentiment": {"macro_f1": 0.80}}, active)[0]
    assert "no pooled news" in registry.gate({"sentiment": {"macro_f1": 0.9}}, active)[0]


def _with_metrics(src, dst, change) -> str:
    import shutil

    shutil.copytree(src, dst)
    meta = modeldir.read_meta(dst)
    meta["version"] += "-" + dst.name
    change(meta["metrics"])
    modeldir.write_meta(dst, meta)
    return dst


def test_promotion_gate_refuses_a_model_that_loses_on_news(db_url, tiny_models, tmp_path):
    heads = tiny_models[0]
    base = modeldir.read_meta(heads)["metrics"]

    def lose_news(m):
        m["news"]["macro_f1"] = base["news"]["macro_f1"] - 0.05

    def lose_topic_only(m):
        m["topic"]["accuracy"] = base["topic"]["accuracy"] - 0.2

    conn = db.connect(db_url)
    try:
        v_active = registry.register(conn, heads)
        assert registry.promote(conn, v_active)["promoted"]
        v_news = registry.register(conn, _with_metrics(heads, tmp_path / "news", lose_news))
        with pytest.raises(registry.PromotionRefused, match="news-headline sentiment macro-F1"):
            registry.promote(conn, v_news)
        assert registry.active(conn)["version"] == v_active
        v_topic = registry.register(conn, _with_metrics(heads, tmp_path / "topic", lose_topic_only))
        assert registry.promote(conn, v_topic)["promoted"]  # the gate judges news and tweet sentiment
        forced = registry.promote(conn, v_news, force=True)
        assert forced["promoted"] and forced["forced"] and forced["previous"] == v_topic
        assert query(db_url, "SELECT count(*) FROM models WHERE is_active")[0][0] == 1
    finally:
        conn.close()


def test_gate_evaluates_an_active_model_without_news_figures(db_url, tiny_models, tmp_path):
    heads = tiny_models[0]

    def tweets_only(m):
        del m["news"]

    old = _with_metrics(heads, tmp_path / "old", tweets_only)
    conn = db.connect(db_url)
    try:
        v_old = registry.register(conn, old)
        registry.promote(conn, v_old, force=True)
        assert "news" not in query(db_url, "SELECT metrics FROM models WHERE version = %s", (v_old,))[0][0]
        v_new = registry.register(conn, heads)
        registry.promote(conn, v_new)  # equal figures: promoted, after the active one was evaluated on news
        metrics = query(db_url, "SELECT metrics FROM models WHERE version = %s", (v_old,))[0][0]
        assert metrics["news"]["n"] == 841 + 166 + 1590
        assert registry.active(conn)["version"] == v_new
    finally:
        conn.close()


def test_classify_is_a_work_queue(db_url, tiny_models):
    ids = seed_articles(db_url, [f"Company {i} shares fall after results" for i in range(50)])
    with pytest.raises(NoActiveModel):
        score_pending(db_url)
    conn = db.connect(db_url)
    version = registry.register(conn, tiny_models[0])
    registry.promote(conn, version)
    conn.close()

    # a run cut short (crash, limit) leaves the rest for the next run
    first = score_pending(db_url, max_articles=20, chunk_size=8)
    assert (first["scored"], first["remaining"]) == (20, 30)
    second = score_pending(db_url)
    assert (second["scored"], second["remaining"]) == (30, 0)
    assert score_pending(db_url)["scored"] == 0
    rows = query(
        db_url, "SELECT count(*), count(DISTINCT article_id), min(model_version), max(model_version) FROM scores"
    )
    assert rows == [(50, 50, version, version)]

    # two workers at once never score a story twice
    more = seed_articles(db_url, [f"Regulator probes lender {i}" for i in range(60)])
    clf = Classifier.load(tiny_models[0], device="cpu")
    results = []
    workers = [
        threading.Thread(target=lambda: results.append(score_pending(db_url, chunk_size=10, classifier=clf)))
        for _ in range(2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sum(r["scored"] for r in results) == 60
    assert query(db_url, "SELECT count(*), count(DISTINCT article_id) FROM scores") == [(110, 110)]
    assert set(ids + more) == {r[0] for r in query(db_url, "SELECT article_id FROM scores")}


def test_train_cli_trains_evaluates_registers_and_promotes(db_url, tiny_base, tmp_path):
    env = {**os.environ, "DATABASE_URL": db_url}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "train",
            "--base-model",
            str(tiny_base),
            "--method",
            "heads",
            "--limit_per_task",
            "60",
            "--output_root",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=config.REPO_ROOT,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["promotion"]["promoted"] is True and out["promotion"]["previous"] is None
    assert 0 <= out["held_out"]["sentiment"]["macro_f1"] <= 1
    assert query(db_url, "SELECT version, is_active, method FROM models") == [(out["version"], True, "heads")]
    listed = subprocess.run(
        [sys.executable, "-m", "pipeline", "models", "list"],
        capture_output=True,
        text=True,
        cwd=config.REPO_ROOT,
        env=env,
        timeout=300,
    )
    assert json.loads(listed.stdout)[0]["active"] is True
