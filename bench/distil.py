"""Distil the expert-labelled news into the model's heads: which data mix, measured leaving sources out.

The expert set (``data/labeled/news/expert``: 31,775 news texts labelled under one written convention) is
registered as three sentiment sources by origin family (``expert_2023``, ``expert_2018_19``,
``expert_sentences``) and one topic source, with a fixed test split that nothing here trains on. On the
frozen features of a trained model (default: the shipped one) every recipe refits the linear heads, and is
judged on what it did not train on:

* **sentiment, leave one source out**: for each news source in ``LEAVE_OUT`` (the three expert families and
  the older news sets under their own annotators' labels) a head is fitted without it (and without any text it
  shares) and scored there; recipes are ranked by the mean and the worst of those macro-F1s;
* **held out** (a head fitted on the whole mix): the expert test split, FinEntity, WSJ, SEntFiN's test split and
  TFNS valid (tweets, another convention: the gate lets news gains cost at most 0.02 there);
* **topic**: a head fitted on TFNS topics alone against TFNS plus the expert topics, scored on TFNS valid and
  the expert test split, and leaving each expert family out.

    .state/venv/bin/python -m bench.distil [--model DIR] [--json FILE] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from pipeline.classify.datasets import sources
from pipeline.classify.datasets.data import row_weights
from pipeline.classify.model.labels import SENTIMENTS, TOPICS
from pipeline.classify.training.features import L2
from pipeline.classify.training.headfit import LinearHead, blend, c_for_l2, fit_linear

log = logging.getLogger("bench.distil")

EXPERT = ["expert_2023", "expert_2018_19", "expert_sentences"]
OLD_NEWS = ["sentfin", "ecosent", "forex", "sentivent", "sentifm", "cryptolin", "us_econ"]
LEAVE_OUT = EXPERT + ["sentfin", "sentivent", "cryptolin", "ecosent", "us_econ"]
HELD = ["expert_test", "finentity", "wsj", "sentfin_test", "tfns_sentiment_valid"]
REANNOTATED = {"sentivent": "expert_sentences", "sentifm": "expert_sentences"}  # same texts, other labels


@dataclass(frozen=True)
class Mix:
    name: str
    sources: tuple[str, ...]
    source_w: float = 0.5  # 0: rows as they come; 0.5: a source weighs sqrt(rows); 1: every source alike
    own_blend: float = 1.0  # weight of the refit against the model's own head (1: the refit alone)


MIXES = [
    Mix("old mix (every older source; stage 5's refit)", ("tfns_sentiment", *OLD_NEWS)),
    Mix("expert only", tuple(EXPERT)),
    Mix("expert + TFNS", (*EXPERT, "tfns_sentiment")),
    Mix("expert + every older source", (*EXPERT, "tfns_sentiment", *OLD_NEWS)),
    Mix(
        "expert + older, SENTiVENT/SentiFM by their re-annotation only",
        (*EXPERT, "tfns_sentiment", *[s for s in OLD_NEWS if s not in REANNOTATED]),
    ),
    Mix(
        "expert + older (re-annotated), rows as they come",
        (*EXPERT, "tfns_sentiment", *[s for s in OLD_NEWS if s not in REANNOTATED]),
        source_w=0.0,
    ),
    Mix("expert + TFNS, rows as they come", (*EXPERT, "tfns_sentiment"), source_w=0.0),
    Mix("expert + TFNS, sources alike", (*EXPERT, "tfns_sentiment"), source_w=1.0),
    *[
        Mix(f"{name}, blended {a} with the own head", srcs, own_blend=a)
        for name, srcs in (
            ("expert + TFNS", (*EXPERT, "tfns_sentiment")),
            ("expert + every older source", (*EXPERT, "tfns_sentiment", *OLD_NEWS)),
        )
        for a in (0.3, 0.4, 0.5, 0.6, 0.7)
    ],
]
POOLED = ["finentity", "wsj", "sentfin_test"]  # the promotion gate's pooled news figure


def macro_f1(y, p) -> float:
    return float(f1_score(y, p, average="macro", labels=list(range(len(set(y) | set(p))))))


def sentiment_corpus() -> pd.DataFrame:
    reg = sources.registry()
    train = [n for n, s in reg.items() if s.task == "sentiment" and s.role == "train"]
    frame, _ = sources.training_frame([reg[n] for n in train])
    held = [sources.load(reg[n]).assign(source=n) for n in HELD]
    df = pd.concat([frame.assign(role="train"), *[h.assign(role="heldout") for h in held]], ignore_index=True)
    df["key"] = df["text"].map(sources.norm)
    return df


def topic_corpus() -> pd.DataFrame:
    reg = sources.registry()
    names = ["tfns_topic", "expert_topic"]
    frame, _ = sources.training_frame([reg[n] for n in names])
    held = [sources.load(reg[n]).assign(source=n) for n in ("tfns_topic_valid", "expert_topic_test")]
    df = pd.concat([frame.assign(role="train"), *[h.assign(role="heldout") for h in held]], ignore_index=True)
    origin = pd.read_csv(reg["expert_topic"].path, usecols=["origin"])["origin"].astype(str)
    family = {
        f"expert_topic:{i}": ("expert_2023" if o.startswith(("archive2023", "summaries2023")) else "expert_2018_19")
        if not o.startswith(("sentivent", "sentifm"))
        else "expert_sentences"
        for i, o in enumerate(origin)
    }
    df["family"] = df["id"].map(family).fillna(df["source"])
    return df


def topic_only_texts(sentiment_texts: set[str]) -> list[str]:
    """Topic texts that are not sentiment texts too (the expert texts are both): their features are computed once."""
    reg = sources.registry()
    return sorted({t for s in reg.values() if s.task == "topic" for t in sources.load(s)["text"]} - sentiment_texts)


def train_rows(df: pd.DataFrame, mix: Mix, left_out: str | None) -> pd.DataFrame:
    tr = df[(df["role"] == "train") & df["source"].isin(mix.sources)]
    if left_out is not None:
        banned = set(df.loc[df["source"] == left_out, "key"])
        tr = tr[(tr["source"] != left_out) & ~tr["key"].isin(banned)]
        if left_out in REANNOTATED:  # the same sentences under the expert's labels would leak the texts
            tr = tr[tr["source"] != REANNOTATED[left_out]]
    return tr


def fit(x: np.ndarray, tr: pd.DataFrame, names: list[str], source_w: float, class_w: bool = True) -> LinearHead:
    y = tr["label"].map(names.index).to_numpy()
    w = row_weights(tr, class_w=class_w, source_w=source_w)
    xs = x[tr.index.to_numpy()]
    return fit_linear(xs, y, range(len(names)), c_for_l2(L2, len(xs)), sample_weight=w)[0]  # as blend ships it


def run_mix(mix: Mix, x: np.ndarray, df: pd.DataFrame, own: LinearHead, leave_out: list[str]) -> dict:
    def head(tr):
        refit = fit(x, tr, SENTIMENTS, mix.source_w)
        return refit if mix.own_blend >= 1 else blend(own, refit, mix.own_blend)

    out = {"mix": mix.name, "sources": list(mix.sources), "source_w": mix.source_w, "loo": {}, "held": {}}
    for src in leave_out:
        tr = train_rows(df, mix, src)
        rows = df.index[df["source"] == src].to_numpy()
        y = df.loc[rows, "label"].map(SENTIMENTS.index).to_numpy()
        out["loo"][src] = macro_f1(y, head(tr)(x[rows]).argmax(1))
    held_scores(out, head(train_rows(df, mix, None)), x, df)
    v = list(out["loo"].values())
    out["loo_mean"], out["loo_worst"] = float(np.mean(v)), float(np.min(v))
    return out


def held_scores(out: dict, h: LinearHead, x: np.ndarray, df: pd.DataFrame) -> None:
    """Macro-F1 on every held-out set, and on the gate's pooled news sets together."""
    for src in HELD:
        rows = df.index[df["source"] == src].to_numpy()
        y = df.loc[rows, "label"].map(SENTIMENTS.index).to_numpy()
        out["held"][src] = macro_f1(y, h(x[rows]).argmax(1))
    rows = df.index[df["source"].isin(POOLED)].to_numpy()
    y = df.loc[rows, "label"].map(SENTIMENTS.index).to_numpy()
    out["held"]["news pooled"] = macro_f1(y, h(x[rows]).argmax(1))


def own_row(x: np.ndarray, df: pd.DataFrame, own: LinearHead, leave_out: list[str]) -> dict:
    out = {"mix": "the model's own head (no refit)", "loo": {}, "held": {}}
    for src in leave_out:
        rows = df.index[df["source"] == src].to_numpy()
        y = df.loc[rows, "label"].map(SENTIMENTS.index).to_numpy()
        out["loo"][src] = macro_f1(y, own(x[rows]).argmax(1))
    held_scores(out, own, x, df)
    v = list(out["loo"].values())
    out["loo_mean"], out["loo_worst"] = float(np.mean(v)), float(np.min(v))
    return out


def topic_table(x: np.ndarray, df: pd.DataFrame, own: LinearHead) -> list[dict]:
    """Topic heads: TFNS alone vs TFNS + expert topics, and each expert family left out."""
    rows_out = []
    held = {n: df.index[df["source"] == n].to_numpy() for n in ("tfns_topic_valid", "expert_topic_test")}

    def score(h) -> dict:
        out = {}
        for n, rows in held.items():
            y = df.loc[rows, "label"].map(TOPICS.index).to_numpy()
            out[n] = float(accuracy_score(y, h(x[rows]).argmax(1)))
        return out

    rows_out.append({"recipe": "the model's own topic head", **score(own)})
    train = df[df["role"] == "train"]
    for name, srcs in (("TFNS topics alone", ["tfns_topic"]), ("TFNS + expert topics", ["tfns_topic", "expert_topic"])):
        for sw in (0.0, 0.5):
            h = fit(x, train[train["source"].isin(srcs)], TOPICS, source_w=sw, class_w=False)
            rows_out.append({"recipe": f"{name}, source weight {sw}", **score(h)})
    loo = {}
    for fam in EXPERT:
        if not (train["family"] == fam).any():
            continue
        tr = train[train["family"] != fam]
        h = fit(x, tr, TOPICS, source_w=0.5, class_w=False)
        rows = train.index[train["family"] == fam].to_numpy()
        y = df.loc[rows, "label"].map(TOPICS.index).to_numpy()
        loo[fam] = float(accuracy_score(y, h(x[rows]).argmax(1)))
        y_own = own(x[rows]).argmax(1)
        loo[f"{fam} (own head)"] = float(accuracy_score(y, y_own))
    rows_out.append({"recipe": "TFNS + expert topics, one expert family left out (accuracy there)", **loo})
    return rows_out


def markdown(results: list[dict], topics: list[dict], leave_out: list[str]) -> str:
    lines = [
        "| recipe | mean | worst | " + " | ".join(leave_out) + " | " + " | ".join(HELD) + " | news pooled |",
        "|---|" + "---|" * (len(leave_out) + len(HELD) + 3),
    ]
    for r in results:
        lines.append(
            f"| {r['mix']} | {r['loo_mean']:.3f} | {r['loo_worst']:.3f} | "
            + " | ".join(f"{r['loo'][s]:.3f}" for s in leave_out)
            + " | "
            + " | ".join(f"{r['held'][s]:.3f}" for s in [*HELD, "news pooled"])
            + " |"
        )
    lines += ["", "| topic head | accuracy |", "|---|---|"]
    for t in topics:
        lines.append(f"| {t['recipe']} | " + ", ".join(f"{k} {v:.3f}" for k, v in t.items() if k != "recipe") + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from bench import transfer_features
    from bench.peers import cpu_info
    from pipeline.classify.model import modeldir
    from pipeline.classify.release import shipped

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a trained finsent model folder (default: the shipped model)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true", help="400 rows a source, two mixes (the test's mode)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.monotonic()
    model_dir = args.model or str(shipped.materialize())
    model, _ = modeldir.load(model_dir)
    own_s, own_t = LinearHead.of(model.sentiment_head), LinearHead.of(model.topic_head)
    del model
    sent, topic = sentiment_corpus(), topic_corpus()
    mixes, leave_out = MIXES, LEAVE_OUT
    if args.quick:
        sent = sent.groupby("source").head(400).reset_index(drop=True)
        topic = topic.groupby(["source", "family"]).head(300).reset_index(drop=True)
        mixes, leave_out = MIXES[1:3], EXPERT[:2]
        texts_s = sorted(set(sent["text"]))
        texts_t = sorted(set(topic["text"]) - set(texts_s))
    else:
        from bench.transfer import all_texts

        texts_s = all_texts()
        texts_t = topic_only_texts(set(texts_s))
    fs = transfer_features.compute(texts_s, model_dir=model_dir)["mean"]
    ft = transfer_features.compute(texts_t, model_dir=model_dir)["mean"]
    index = {t: ("s", i) for i, t in enumerate(texts_s)} | {t: ("t", i) for i, t in enumerate(texts_t)}

    def feats(texts: pd.Series) -> np.ndarray:
        return np.stack([fs[i] if k == "s" else ft[i] for k, i in texts.map(index)])

    xs, xt = feats(sent["text"]), feats(topic["text"])
    log.info("features ready: %d sentiment rows, %d topic rows (%.0f s)", len(sent), len(topic), time.monotonic() - t0)
    results = [own_row(xs, sent, own_s, leave_out)]
    for mix in mixes:
        t1 = time.monotonic()
        results.append(run_mix(mix, xs, sent, own_s, leave_out))
        log.info(
            "%s: left-out mean %.3f worst %.3f (%.0f s)",
            mix.name,
            results[-1]["loo_mean"],
            results[-1]["loo_worst"],
            time.monotonic() - t1,
        )
    topics = topic_table(xt, topic, own_t)
    print(f"\nModel {modeldir.read_meta(model_dir)['version']}; CPU: {cpu_info()}\n")
    print(markdown(results, topics, leave_out))
    print(f"\n{time.monotonic() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": model_dir, "sentiment": results, "topic": topics}, fh, indent=1)


if __name__ == "__main__":
    main()
