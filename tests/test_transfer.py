"""Transfer tools: the label-convention rule, the EM prior re-estimate, the leave-one-source-out folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench import convention, priors
from pipeline.classify.datasets import sources


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


def test_blend_is_one_linear_head():
    """Blending two heads' logits (then lowering neutral) is the blended head's logits: inference costs the same."""
    from pipeline.classify.model.labels import SENTIMENTS
    from pipeline.classify.training.headfit import LinearHead, blend

    rng = np.random.default_rng(1)
    own = LinearHead(rng.normal(size=(3, 8)), rng.normal(size=3))
    refit = LinearHead(rng.normal(size=(3, 8)), rng.normal(size=3))
    x = rng.normal(size=(20, 8))
    mixed = blend(own, refit, 0.35, neutral_offset=0.25)
    want = 0.65 * own(x) + 0.35 * refit(x)
    want[:, SENTIMENTS.index("neutral")] -= 0.25
    assert np.allclose(mixed(x), want)
    assert np.allclose(blend(own, refit, 0.0)(x), own(x)) and np.allclose(blend(own, refit, 1.0)(x), refit(x))
    assert np.allclose(own.bias, LinearHead(own.weight, own.bias).bias)  # the inputs are not changed in place


def test_the_experiments_softmax_on_raw_features_and_per_source_intercepts():
    """The experiments' head works on raw (unstandardised) features, and per-source intercepts absorb a source's label mix."""
    from bench.softmax_fit import fit_softmax

    rng = np.random.default_rng(2)
    n = 3000
    y = rng.integers(0, 3, size=n)
    x = np.eye(3)[y] * 3.0 + rng.normal(size=(n, 3))
    x = x * 50.0 + 1000.0  # far from standardised: the fold-back must hold
    head = fit_softmax(x, y, np.ones(n))
    assert (head(x).argmax(1) == y).mean() > 0.9
    # two sources with the same text-to-label relation, but one labels class 2 four times as often and has a
    # style of its own (a fourth feature): without per-source intercepts the style learns "class 2"
    ya, yb = rng.integers(0, 3, size=n), rng.choice(3, size=n, p=[0.1, 0.1, 0.8])
    ys = np.concatenate([ya, yb])
    style = np.concatenate([np.zeros(n), np.ones(n)]) + rng.normal(scale=0.1, size=2 * n)
    xs = np.column_stack([np.eye(3)[ys] * 2.0 + rng.normal(size=(2 * n, 3)), style]) * 50.0 + 1000.0
    groups = np.concatenate([np.zeros(n, int), np.ones(n, int)])

    def lean(h):  # how much the style feature pushes towards class 2
        ws = h.weight[:, 3]
        return ws[2] - ws[:2].mean()

    plain, split = fit_softmax(xs, ys, np.ones(2 * n)), fit_softmax(xs, ys, np.ones(2 * n), groups=groups)
    assert lean(plain) > 0 and lean(split) < 0.6 * lean(plain)
    assert (split(xs[:n]).argmax(1) == ya).mean() > 0.8


def test_blend_choice_ranks_by_left_out_mean_and_marks_the_gate():
    from bench.transfer import GATE_TFNS, blend_choice

    def point(a, mean, news, tfns):
        return {
            "alpha": a,
            "neutral_offset": 0.0,
            "loo_mean": mean,
            "loo_worst": mean - 0.05,
            "news_pooled": news,
            "report": {GATE_TFNS: tfns},
        }

    grid = [point(0.0, 0.44, 0.79, 0.80), point(0.6, 0.53, 0.70, 0.74), point(0.3, 0.49, 0.777, 0.796)]
    ranked = blend_choice(grid, {"news": 0.783, "sentiment": 0.795}, tolerance=0.01, margin=0.002)
    assert [g["alpha"] for g in ranked] == [0.6, 0.3, 0.0]
    assert [g["gate"] for g in ranked] == [False, True, True]
    assert next(g for g in ranked if g["gate"])["alpha"] == 0.3


def test_blend_stage_blends_the_parent_head_with_a_refit(tiny_models, tmp_path):
    """train --method blend: the sentiment head is (1 - a) * parent + a * refit, then neutral lowered; the topic
    head is refitted; a replayable stage."""
    from pipeline.classify.model import modeldir
    from pipeline.classify.model.labels import SENTIMENTS
    from pipeline.classify.training.train import train_from, training_stages

    parent = tiny_models[1]
    pmeta = modeldir.read_meta(parent)
    common = dict(
        method="blend",
        init_model=str(parent),
        max_length=pmeta["max_length"],
        limit_per_task=120,
        data="tfns_sentiment,tfns_topic,sentfin,sentivent",
        source_weighting="sqrt",
    )
    full = train_from(dict(**common, head_blend=1.0, output_root=str(tmp_path / "a")))
    half = train_from(dict(**common, head_blend=0.4, neutral_offset=0.25, output_root=str(tmp_path / "b")))
    p, _ = modeldir.load(parent)
    r, _ = modeldir.load(full)
    h, meta = modeldir.load(half)
    w = lambda m: m.sentiment_head.weight.detach().double().numpy()  # noqa: E731
    b = lambda m: m.sentiment_head.bias.detach().double().numpy()  # noqa: E731
    assert not np.allclose(w(r), w(p), atol=1e-3)  # the refit learnt something of its own
    assert np.allclose(w(h), 0.6 * w(p) + 0.4 * w(r), atol=1e-4)
    want_b = 0.6 * b(p) + 0.4 * b(r)
    want_b[SENTIMENTS.index("neutral")] -= 0.25
    assert np.allclose(b(h), want_b, atol=1e-4)
    # the topic head is refitted on --data's topic rows (the same refit whatever the sentiment blend)
    assert not np.allclose(p.topic_head.weight.detach().numpy(), h.topic_head.weight.detach().numpy(), atol=1e-4)
    assert np.allclose(r.topic_head.weight.detach().numpy(), h.topic_head.weight.detach().numpy(), atol=1e-5)
    assert meta["training_details"]["topic_refit_sources"] == ["tfns_topic"]
    stages = training_stages(meta)
    assert stages[:-1] == training_stages(pmeta) and stages[-1]["method"] == "blend"
    assert stages[-1]["head_blend"] == 0.4 and meta["training_details"]["refit_sources"] == [
        "sentfin",
        "sentivent",
        "tfns_sentiment",
    ]
    with pytest.raises(ValueError, match="head_blend"):
        train_from(dict(method="heads", head_blend=0.5))
    with pytest.raises(ValueError, match="blend needs"):
        train_from(common)  # no weight given
    with pytest.raises(ValueError, match="neutral_offset is an option of the blend method"):
        train_from(dict(method="heads", neutral_offset=0.1))
    with pytest.raises(ValueError, match="max_length"):
        train_from(dict(common, head_blend=0.5, max_length=999))


def test_rule_effect_sets_the_stated_direction_only_over_neutral_predictions():
    from bench.transfer import rule_effect, rule_over

    neg, neu, pos = 0, 1, 2
    pred, rule = np.array([neu, neu, pos, neg, neu]), np.array([pos, -1, neg, pos, neg])
    assert rule_over(pred, rule).tolist() == [pos, neu, pos, neg, neg]
    assert rule_over(pred, rule, neutral_only=False).tolist() == [pos, neu, neg, pos, neg]

    texts = [
        "Operating profit fell to EUR 20.0 mn from EUR 74.0 mn",  # rule: negative; annotators agree
        "Net sales rose to EUR 5 mn from EUR 4 mn",  # rule: positive; annotators say neutral
        "The company will hold its AGM on 5 May",  # no rule
        "Shares jump 12% after results",  # rule: positive, model already positive
    ]
    df = pd.DataFrame({"text": texts, "label": ["negative", "neutral", "neutral", "positive"]})
    z = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    idx = np.arange(4)
    logits = {"src": (idx, z), "news pooled": (idx, z), "TFNS": (idx, z)}
    logits |= {s: (idx, z) for s in ("finentity", "wsj", "sentfin_test")}
    out = {o["set"]: o for o in rule_effect(logits, df, ["src"])}
    src = out["src"]
    assert (src["matches"], src["fires_on_neutral"], src["annotators_agree"]) == (3, 2, 1)
    assert src["before"] == pytest.approx((0 + 0.8 + 1) / 3)  # nothing called negative; neutral over-predicted
    assert src["after"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert out["left-out mean"]["after"] == src["after"]


def test_row_weights_set_each_rows_share_of_the_loss(tiny_base):
    """The fine-tune's source weighting: a row's loss counts by its weight, class weights on top."""
    import torch
    from transformers import AutoModel

    from pipeline.classify.model.architecture import DualHeadClassifier

    torch.manual_seed(0)
    model = DualHeadClassifier(AutoModel.from_pretrained(tiny_base), 3, 4).eval()
    ids, mask = torch.randint(3, 60, (4, 6)), torch.ones(4, 6, dtype=torch.long)
    task, labels = torch.tensor([0, 0, 0, 1]), torch.tensor([2, 0, 1, 3])
    plain = model(ids, mask, task, labels)
    per_row = [
        float(model(ids[i : i + 1], mask[i : i + 1], task[i : i + 1], labels[i : i + 1])["loss"]) for i in range(4)
    ]
    assert float(model(ids, mask, task, labels, row_weight=torch.ones(4))["loss"]) == pytest.approx(
        float(plain["loss"])
    )
    weighted = model(ids, mask, task, labels, row_weight=torch.tensor([2.0, 0.0, 1.0, 1.0]))["loss"]
    assert float(weighted) == pytest.approx((2 * per_row[0] + per_row[2] + per_row[3]) / 4, rel=1e-5)


def test_finetune_weighs_sources_as_the_table_chose_and_records_it(tiny_base, tmp_path, caplog):
    import logging

    from pipeline.classify.model import modeldir
    from pipeline.classify.training.train import train_from, training_stages

    common = dict(base_model=str(tiny_base), method="finetune", train_layers=0, limit_per_task=64, epochs=1)
    common |= dict(batch_size=16, eval_steps=2, learning_rate=1e-3, data="tfns_sentiment,tfns_topic,sentfin,sentivent")
    with caplog.at_level(logging.INFO, logger="pipeline.classify.training.finetune"):
        out = train_from(dict(common, source_weighting="sqrt", output_root=str(tmp_path)))
    lines = [r.getMessage().split() for r in caplog.records if r.getMessage().startswith("source ")]
    shares = {w[1].rstrip(":"): float(w[2]) for w in lines}  # "source NAME: P % of the sentiment loss"
    assert set(shares) == {"sentfin", "sentivent", "tfns_sentiment"} and sum(shares.values()) == pytest.approx(
        100, 0.01
    )
    assert max(shares.values()) - min(shares.values()) > 0.5  # sources weigh by sqrt(rows), not all the same
    meta = modeldir.read_meta(out)
    stage = training_stages(meta)[-1]
    assert stage["source_weighting"] == "sqrt" and stage["num_train_epochs"] == 1  # the trainer's options too
    assert meta["training_details"]["steps"] >= 1
    with pytest.raises(ValueError, match="source_weighting"):
        train_from(dict(method="heads", source_weighting="sqrt"))
    # experiments removed from the product: a recorded stage that used one is refused, never replayed as another
    for removed in (dict(source_intercepts=True), dict(polar_only="sentivent"), dict(lora_r=8), dict(method="top")):
        with pytest.raises(ValueError, match="removed from the product"):
            train_from(dict(common, **removed))


def test_a_blend_stage_replays_to_the_same_labels(tiny_models, tmp_path, capsys):
    """bench.replay_stage: a model's last stage read back from its metadata, trained again, labels as it does."""
    from bench.replay_stage import main
    from pipeline.classify.model import modeldir
    from pipeline.classify.training.train import train_from

    parent = tiny_models[1]
    common = dict(method="blend", init_model=str(parent), head_blend=0.5, neutral_offset=0.1, limit_per_task=96)
    model = train_from(dict(common, max_length=modeldir.read_meta(parent)["max_length"], output_root=str(tmp_path)))
    out = main(["--model", str(model), "--limit", "60", "--out", str(tmp_path / "again")])
    assert out["stage"] == "blend" and out["texts"] == 60 and out["replayed"] != str(model)
    assert out["sentiment_agreement"] == 1.0 and out["topic_agreement"] == 1.0
    assert out["max_sentiment_prob_diff"] < 1e-3 and '"sentiment_agreement"' in capsys.readouterr().out
