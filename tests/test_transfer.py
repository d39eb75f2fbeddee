"""Transfer tools: the label-convention rule, the EM prior re-estimate, the leave-one-source-out folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.classify import convention, priors, sources


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Operating profit fell to EUR 20 million from 74 million", "negative"),
        ("Net profit rose to 8.6 million from 2.8 million", "positive"),
        ("Q3 net loss narrows to $5m", "positive"),
        ("Unemployment rises to 5.2%", "negative"),
        ("Shares jump 12% after results", "positive"),
        ("Apple unveils iPhone 15", None),  # no measure moving
        ("Profit rose sharply", None),  # no figure: left to the annotators
        ("Profit rose 5% but sales fell 3%", None),  # two directions decide nothing
    ],
)
def test_stated_direction(text, want):
    assert convention.stated_direction(text) == want


def test_relabel_touches_only_neutral_rows():
    texts = ["Net profit rose to 8.6 million from 2.8 million", "Sales fell 10% in May", "Funko opens new store"]
    new, changed = convention.relabel_neutral(texts, ["neutral", "positive", "neutral"])
    assert new == ["positive", "positive", "neutral"] and changed == 1


def test_the_rule_agrees_with_news_annotators():
    """On SEntFiN's training part (news headlines, annotated polar when a result moves) the rule agrees >= 90 %."""
    df = sources.load(sources.registry()["sentfin"])
    found = df["text"].map(convention.stated_direction)
    hit = found.notna()
    assert hit.sum() > 300
    assert (df.loc[hit, "label"] == found[hit]).mean() >= 0.9


def test_em_recovers_a_shifted_prior():
    rng = np.random.default_rng(0)
    # a calibrated 3-class model trained under a uniform prior, applied to a stream that is 70 % class 0
    n = 6000
    y = rng.choice(3, size=n, p=[0.7, 0.2, 0.1])
    means = np.eye(3) * 2.0
    x = means[y] + rng.normal(size=(n, 3))
    logits = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1)  # Bayes posteriors under a uniform prior
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    est = priors.em_prior(p, np.full(3, 1 / 3))
    assert np.allclose(est, [0.7, 0.2, 0.1], atol=0.03)
    adjusted = priors.adjust(p, np.full(3, 1 / 3), est)
    assert (adjusted.argmax(1) == y).mean() > (p.argmax(1) == y).mean()
    assert np.allclose(np.log(est) - np.log(1 / 3), priors.logit_shift(np.full(3, 1 / 3), est))


def test_em_keeps_every_class_possible():
    p = np.tile([[0.98, 0.01, 0.01]], (50, 1))
    est = priors.em_prior(p, np.full(3, 1 / 3))
    assert est.min() >= 0.02 - 1e-9 and abs(est.sum() - 1) < 1e-9


def test_a_fold_never_trains_on_its_left_out_source_or_its_texts():
    from bench.transfer import train_rows, weights

    df = pd.DataFrame(
        {
            "text": ["a", "b", "c", "d", "b"],
            "label": ["positive", "negative", "neutral", "positive", "negative"],
            "source": ["tfns_sentiment", "tfns_sentiment", "sentfin", "sentivent", "sentivent"],
            "role": ["train"] * 5,
        }
    )
    df["key"] = df["text"].map(sources.norm)
    tr = train_rows(df, "all", "sentivent")
    assert set(tr["source"]) == {"tfns_sentiment", "sentfin"}
    assert "b" not in set(tr["text"])  # shared with the left-out source: dropped from training
    w = weights(df, class_w=False, source_w=True)
    assert np.isclose(w[df["source"] == "sentfin"].sum(), w[df["source"] == "tfns_sentiment"].sum())


def test_top_recipe_trains_with_the_transfer_options(tiny_base, tmp_path):
    """Source weighting, direction-only sources, per-source intercepts and last-epoch selection, end to end."""
    from pipeline.classify import modeldir
    from pipeline.classify.train import TrainArguments, train

    out = train(
        TrainArguments(
            base_model=str(tiny_base),
            method="top",
            train_layers=1,
            epochs=2,
            limit_per_task=200,
            data="tfns_sentiment,tfns_topic,sentfin,sentivent,sentifm",
            source_weighting="sqrt",
            polar_only="sentivent,sentifm",
            source_intercepts=True,
            select="last",
            output_root=str(tmp_path),
        )
    )
    meta = modeldir.read_meta(out)
    assert meta["training"]["polar_only"] == "sentivent,sentifm" and meta["training"]["select"] == "last"
    assert meta["training_data"]["sources"]["sentivent"]["trained_on"].startswith("direction only")
    history = meta["training_details"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    with pytest.raises(ValueError, match="options of the top recipe"):
        train(TrainArguments(base_model=str(tiny_base), method="heads", polar_only="sentivent"))


def test_adjust_lowers_the_neutral_logit_and_is_recorded_as_a_stage(tiny_models, tmp_path):
    """The logit adjustment: the parent's weights, its neutral bias lowered by the offset, replayable by make model."""
    import torch

    from pipeline.classify import modeldir
    from pipeline.classify.labels import SENTIMENTS
    from pipeline.classify.predict import Classifier
    from pipeline.classify.train import TrainArguments, train, training_stages

    parent = tiny_models[1]
    pmeta = modeldir.read_meta(parent)
    args = dict(method="adjust", init_model=str(parent), max_length=pmeta["max_length"], limit_per_task=96)
    out = train(TrainArguments(**args, neutral_offset=0.75, output_root=str(tmp_path)))
    before, _ = modeldir.load(parent)
    after, meta = modeldir.load(out)
    neutral = SENTIMENTS.index("neutral")
    shift = (before.sentiment_head.bias - after.sentiment_head.bias).detach()
    expected = torch.zeros(3)
    expected[neutral] = 0.75
    assert torch.allclose(shift, expected, atol=1e-6)
    assert torch.equal(before.sentiment_head.weight, after.sentiment_head.weight)
    stages = training_stages(meta)
    assert stages[:-1] == training_stages(pmeta) and stages[-1]["method"] == "adjust"
    assert stages[-1]["neutral_offset"] == 0.75 and meta["parent_version"] == pmeta["version"]
    texts = ["Shares of Acme rose 3% after results", "The meeting is on Tuesday", "Bank cuts jobs"] * 4
    a, b = Classifier.load(parent).logits(texts)[0], Classifier.load(out).logits(texts)[0]
    assert np.allclose(a[:, neutral] - b[:, neutral], 0.75, atol=0.02)  # bf16 autocast where the CPU has it
    with pytest.raises(ValueError, match="adjust"):
        train(TrainArguments(method="adjust", neutral_offset=0.5))  # no init model
    with pytest.raises(ValueError, match="max_length"):
        train(TrainArguments(method="adjust", init_model=str(parent), max_length=999, neutral_offset=0.5))
