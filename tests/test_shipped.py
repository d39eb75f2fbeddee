"""The shipped model: a compact delta over the base, checked against the base it was made for."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from pipeline import db
from pipeline.classify import modeldir, registry, shipped
from pipeline.classify.predict import Classifier


@pytest.fixture(scope="module")
def tiny_top(tiny_base, tmp_path_factory):
    """A tiny model trained with the 'top' recipe: the top block of the 2-block tiny base."""
    from pipeline.classify.evaluate import evaluate
    from pipeline.classify.train import TrainArguments, train

    root = tmp_path_factory.mktemp("top")
    d = train(
        TrainArguments(
            base_model=str(tiny_base),
            method="top",
            train_layers=1,
            limit_per_task=96,
            epochs=1,
            batch_size=16,
            learning_rate=1e-3,
            output_root=str(root),
        )
    )
    evaluate(d, peer_names=("tfidf_lr",))
    return d


def test_top_recipe_trains_only_the_top_blocks_and_calibrates(tiny_top, tiny_base):
    meta = modeldir.read_meta(tiny_top)
    assert meta["method"] == "top" and meta["training_details"]["trained_layers"] == 1
    assert meta["calibration"]["sentiment_temperature"] > 0 and "sentiment_val_ece_after" in meta["calibration"]
    assert set(meta["training_data"]["sources"]) == {"tfns_sentiment", "sentfin", "ecosent", "tfns_topic"}
    from transformers import AutoModel

    base = AutoModel.from_pretrained(tiny_base).state_dict()
    trained, _ = modeldir.load(tiny_top)
    changed = {k for k, v in trained.backbone.state_dict().items() if not torch.equal(v, base[k])}
    assert changed and all(k.startswith(("layers.1.", "norm.")) for k in changed), changed


def test_export_and_materialize_round_trip(tiny_top, tiny_base, tmp_path):
    out = shipped.export(tiny_top, tmp_path / "ship", base=str(tiny_base))
    meta = modeldir.read_meta(out)
    info = meta["shipped"]
    assert info["top_blocks"] == 1 and (out / shipped.DELTA_FILE).stat().st_size == info["delta_bytes"]
    assert meta["version"] == modeldir.read_meta(tiny_top)["version"] + "-delta" and meta["metrics"] is None
    assert not (out / "backbone").exists()  # only the delta ships
    rebuilt = shipped.materialize(out, tmp_path / "models", base=str(tiny_base))
    assert modeldir.read_meta(rebuilt)["version"] == meta["version"]
    texts = ["Shares slump after profit warning", "Company raises dividend", "Fed holds rates", "Oil rallies"] * 8
    a, b = Classifier.load(tiny_top).predict(texts), Classifier.load(rebuilt).predict(texts)
    assert np.abs(a.probs - b.probs).max() < 0.02  # fp16 storage of the blocks
    assert shipped.materialize(out, tmp_path / "models", base=str(tiny_base)) == rebuilt  # once per version


def test_a_different_base_or_damaged_delta_is_refused(tiny_top, tiny_base, tmp_path):
    from safetensors.torch import load_file, save_file

    out = shipped.export(tiny_top, tmp_path / "ship", base=str(tiny_base))
    other = tmp_path / "other-base"  # the same base with one weight nudged, edited in its file
    shutil.copytree(tiny_base, other)
    weights = other / "model.safetensors"
    tensors = load_file(str(weights))
    key = next(k for k in tensors if k.endswith("layers.0.mlp.up_proj.weight"))
    tensors[key] = tensors[key] + 0.01
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(shipped.ShippedModelError, match="not the ones this model was made for"):
        shipped.materialize(out, tmp_path / "m1", base=str(other))
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    data = (damaged / shipped.DELTA_FILE).read_bytes()
    (damaged / shipped.DELTA_FILE).write_bytes(data[:-10] + b"0123456789")
    with pytest.raises(shipped.ShippedModelError, match="damaged"):
        shipped.materialize(damaged, tmp_path / "m2", base=str(tiny_base))
    with pytest.raises(shipped.ShippedModelError, match="only 'top' models"):
        shipped.export(_heads_copy(tiny_top, tmp_path), tmp_path / "x", base=str(tiny_base))


def _heads_copy(src, tmp_path):
    d = tmp_path / "as-heads"
    shutil.copytree(src, d)
    meta = modeldir.read_meta(d)
    meta["method"] = "heads"
    modeldir.write_meta(d, meta)
    return d


def test_installing_the_shipped_model_registers_its_committed_report(
    tiny_top, tiny_base, tmp_path, db_url, monkeypatch
):
    from pipeline.classify import lifecycle

    monkeypatch.setenv("FINSENT_BASE_MODEL", str(tiny_base))
    monkeypatch.setenv("FINSENT_HOME", str(tmp_path / "state"))
    out = shipped.ship(tiny_top, tmp_path / "ship", base=str(tiny_base))  # export, rebuild, evaluate the rebuild
    assert (out / "report.md").is_file() and (out / "MODEL_CARD.md").is_file()
    assert modeldir.read_meta(out)["metrics"]["news"]["n"] == 841 + 166 + 1590
    monkeypatch.setattr(shipped, "SHIPPED_DIR", out)
    shutil.rmtree(tmp_path / "state" / "models")  # a fresh install: rebuilt from the delta, report reused
    result = lifecycle.install_shipped()
    assert result["promotion"]["promoted"]
    conn = db.connect(db_url)
    try:
        active = registry.active(conn)
    finally:
        conn.close()
    assert active["version"] == modeldir.read_meta(out)["version"]
    assert active["metrics"] == modeldir.read_meta(out)["metrics"]


def test_top_recipe_resumes_after_an_interruption(tiny_base, tmp_path, caplog):
    """An interrupted run restarted with the same work folder reuses the cache and continues after its last epoch."""
    import logging

    from pipeline.classify.data import load_task
    from pipeline.classify.model import DualHeadClassifier
    from pipeline.classify.top import train_top
    from pipeline.classify.train import TrainArguments, class_weights, load_backbone

    def run(epochs: int) -> dict:
        args = TrainArguments(
            base_model=str(tiny_base),
            method="top",
            train_layers=1,
            limit_per_task=64,
            epochs=epochs,
            batch_size=16,
            learning_rate=1e-3,
        )
        sent = load_task("sentiment", 0.1, 42, 64)
        topic = load_task("topic", 0.1, 42, 64)
        backbone, tok, _ = load_backbone(args)
        torch.manual_seed(0)
        model = DualHeadClassifier(backbone, 3, 20)
        return train_top(model, tok, sent, topic, args, class_weights, work_dir=tmp_path)

    first = run(1)  # "interrupted" after its first epoch: the checkpoint and cache stay
    assert (tmp_path / "checkpoint.pt").exists() and len(list(tmp_path.glob("cache-*.pt"))) == 4
    with caplog.at_level(logging.INFO, logger="pipeline.classify.top"):
        second = run(2)
    assert "resuming from" in caplog.text and "cached cache-sentiment-train" in caplog.text
    assert second["history"][0] == first["history"][0] and len(second["history"]) == 2


@pytest.mark.slow
def test_the_committed_model_applies_to_the_packaged_base_and_reads_news(smollm2_dir, tmp_path):
    """The delta in data/model fits the real packaged SmolLM2 (hash checked) and labels clear headlines."""
    meta = modeldir.read_meta(shipped.SHIPPED_DIR)
    assert (shipped.SHIPPED_DIR / shipped.DELTA_FILE).stat().st_size <= shipped.MAX_BYTES
    assert meta["metrics"]["news"]["macro_f1"] > 0 and (shipped.SHIPPED_DIR / "MODEL_CARD.md").is_file()
    model_dir = shipped.materialize(shipped.SHIPPED_DIR, tmp_path / "models")
    clf = Classifier.load(model_dir)
    preds = clf.predict(
        [
            "Shares plunge 20% after the company slashes its profit forecast and cuts jobs",
            "Company beats earnings estimates, raises full-year guidance; stock jumps to a record",
            "Board to meet on Tuesday to consider the quarterly results",
        ]
    )
    assert preds.sentiment == ["negative", "positive", "neutral"], preds.rows()
    assert np.allclose(preds.probs.sum(1), 1.0, atol=1e-5)
