"""Leave one source out: which recipe, data mix and weighting transfer to news the model never saw.

For each news source in ``LEAVE_OUT`` a classifier is trained on every other training source (TFNS always
among them) and scored on the left-out one; its macro-F1 there is the figure that counts. Recipes are
compared by the **mean and the worst** of those figures, never by in-source validation. FinEntity, WSJ
and SEntFiN's test split stay held out of everything (a model trained on all sources is scored on them,
for the report only).

The search runs on frozen base-model features (``bench.transfer_features``: one pass, cached), where a
fold costs seconds on two CPU cores:

* ``mean``: logistic regression on mean-pooled final hidden states (the shipped model's head reads those);
* ``prompt``: the same on the last token of an instruction prompt;
* ``words``: the language model's own head scoring three label words in that prompt, zero-shot, and
  ``words+``: the label words as a prior with a learned, L2-penalised correction (prompt-style training
  through the LM head rather than a separate linear head).

Each recipe is tried with weighting schemes (none, class-balanced, source-balanced, both), data mixes
(today's sources; every source; without TFNS; TFNS with its "stated direction" neutrals relabelled by the
convention rule) and, at inference, the EM re-estimate of class priors (Saerens et al., 2002) from the
left-out source's own unlabeled texts. Peers are trained the same way (same folds, same rows): TF-IDF+LR,
MiniLM+LR; finvader needs no training.

With ``--model DIR`` the features are a trained model's and only the sources it never saw are left out;
``--model DIR --blend`` ranks blends of that model's own head with refitted heads (``train --method blend``)
by left-out mean and marks which clear the promotion gate against the shipped model's recorded figures.

    .state/venv/bin/python -m bench.transfer [--json .state/bench/transfer.json] [--quick]
    .state/venv/bin/python -m bench.transfer --model .state/models/<stage-2> --blend
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from bench import convention, priors
from bench.softmax_fit import fit_softmax, polar_offset
from pipeline.classify.datasets import sources
from pipeline.classify.datasets.data import row_weights as weights
from pipeline.classify.model.calibrate import softmax
from pipeline.classify.model.labels import SENTIMENTS

log = logging.getLogger("bench.transfer")

LEAVE_OUT = ["sentfin", "sentivent", "sentifm", "cryptolin", "ecosent", "us_econ", "forex"]
TODAY = ["tfns_sentiment", "sentfin", "ecosent"]  # the shipped model's training sources
REPORT = ["finentity", "wsj", "sentfin_test"]  # held out of everything
GATE_TFNS = "tfns_sentiment_valid"  # the promotion gate's other set (with the three above, pooled)


@dataclass(frozen=True)
class Recipe:
    name: str
    features: str = "mean"  # mean | last | words (zero-shot) | words+ (label-word prior + correction)
    mix: str = "all"  # today | all | no_tfns | relabel
    class_w: bool = True
    source_w: float = 0.0  # 0 rows as they come, 0.5 a source weighs sqrt(rows), 1 every source the same
    l2: float = 1e-3
    polar_only: tuple[str, ...] = ()  # sources whose neutral is not a judgement: trained on direction only
    source_bias: bool = False  # each training source its own class intercepts (its label mix), dropped at inference


def corpus() -> pd.DataFrame:
    """Every labeled sentiment row: ``text``, ``label``, ``source``, ``role`` (held-out overlaps removed)."""
    reg = sources.registry()
    train_names = [n for n, s in reg.items() if s.task == "sentiment" and s.role == "train"]
    frame, _ = sources.training_frame([reg[n] for n in train_names])
    frame["role"] = "train"
    held = [sources.load(reg[n]).assign(source=n, role="heldout") for n in [*REPORT, GATE_TFNS]]
    return pd.concat([frame, *held], ignore_index=True)


def macro_f1(y_true, y_pred) -> float:
    return float(f1_score(y_true, y_pred, average="macro", labels=[0, 1, 2]))


def all_texts() -> list[str]:
    """Every sentiment text the registry declares (training and held-out), sorted: the feature cache's key."""
    reg = sources.registry()
    return sorted({t for s in reg.values() if s.task == "sentiment" for t in sources.load(s)["text"]})


def train_rows(df: pd.DataFrame, mix: str, left_out: str | None, polar_only: tuple[str, ...] = ()) -> pd.DataFrame:
    """The training rows of a fold: the mix's sources minus the left-out one and any text it shares."""
    tr = df[df["role"] == "train"]
    if mix == "today":
        tr = tr[tr["source"].isin(TODAY)]
    elif mix == "no_tfns":
        tr = tr[tr["source"] != "tfns_sentiment"]
    elif mix.startswith("no_"):  # no_<source>: the ablation of one training source
        tr = tr[tr["source"] != mix[3:]]
    if left_out is not None:
        banned = set(df.loc[df["source"] == left_out, "key"])
        tr = tr[(tr["source"] != left_out) & ~tr["key"].isin(banned)]
    if polar_only:
        tr = tr[~(tr["source"].isin(polar_only) & (tr["label"] == "neutral"))]
    if mix == "relabel":
        tr = tr.copy()
        is_tfns = tr["source"] == "tfns_sentiment"
        new, _ = convention.relabel_neutral(tr.loc[is_tfns, "text"].tolist(), tr.loc[is_tfns, "label"].tolist())
        tr.loc[is_tfns, "label"] = new
    return tr


POLAR_SELECTED = ("sentivent", "sentifm")  # sentences chosen for holding a polar expression: 5-8 % neutral


def polar_mask(tr: pd.DataFrame, polar_only: tuple[str, ...], offset: np.ndarray | None) -> np.ndarray:
    """A logit offset that takes neutral out of the softmax for rows of ``polar_only`` sources (their neutral rows
    are dropped by ``train_rows``): those rows teach which way news points, not whether it is news."""
    off = polar_offset(tr["source"], polar_only)
    return off if offset is None else off + offset


def scorer(recipe: Recipe, feats: dict, df: pd.DataFrame, tr: pd.DataFrame):
    """Train ``recipe`` on ``tr``; returns (logits for rows by index, training prior)."""
    y = tr["label"].map(SENTIMENTS.index).to_numpy()
    w = weights(tr, recipe.class_w, recipe.source_w)
    prior = np.bincount(y, weights=w, minlength=3) / w.sum()
    words = feats["words"][df["fi"].to_numpy()] if "words" in feats else None
    if recipe.features == "words":
        # zero-shot: no training; its "training prior" is uniform by construction
        return lambda rows: words[rows], np.full(3, 1 / 3)
    key = "last" if recipe.features in ("last", "words+") else "mean"
    x_all = feats[key][df["fi"].to_numpy()]
    tri = tr.index.to_numpy()
    off = words[tri] if recipe.features == "words+" else None
    if recipe.polar_only:
        off = polar_mask(tr, recipe.polar_only, off)
    groups = pd.factorize(tr["source"])[0] if recipe.source_bias else None
    f = fit_softmax(x_all[tri], y, w, recipe.l2, offset=off, groups=groups)
    if recipe.features == "words+":
        return lambda rows: f(x_all[rows], words[rows]), prior
    return lambda rows: f(x_all[rows]), prior


def evaluate(recipe: Recipe, feats: dict, df: pd.DataFrame, leave_out: list[str]) -> dict:
    out = {"recipe": recipe.__dict__, "loo": {}, "loo_em": {}, "report": {}}
    for src in leave_out:
        tr = train_rows(df, recipe.mix, src, recipe.polar_only)
        predict, prior = scorer(recipe, feats, df, tr)
        rows = df.index[df["source"] == src].to_numpy()
        y = df.loc[rows, "label"].map(SENTIMENTS.index).to_numpy()
        p = softmax(predict(rows))
        out["loo"][src] = macro_f1(y, p.argmax(1))
        est = priors.em_prior(p, prior)
        out["loo_em"][src] = macro_f1(y, priors.adjust(p, prior, est).argmax(1))
    predict, prior = scorer(recipe, feats, df, train_rows(df, recipe.mix, None, recipe.polar_only))
    for src in REPORT:
        rows = df.index[df["source"] == src].to_numpy()
        y = df.loc[rows, "label"].map(SENTIMENTS.index).to_numpy()
        out["report"][src] = macro_f1(y, predict(rows).argmax(1))
    for k in ("loo", "loo_em"):
        v = list(out[k].values())
        out[k + "_mean"], out[k + "_worst"] = float(np.mean(v)), float(np.min(v))
    return out


def peer_rows(df: pd.DataFrame, leave_out: list[str], mix: str, source_w: float) -> list[dict]:
    """TF-IDF+LR and MiniLM+LR on the same folds and rows (class-balanced; source weights as the recipe)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from pipeline.classify.evaluation.peers import MiniLM, finvader_labels
    from pipeline.classify.training.headfit import logistic

    results = []
    t0 = time.monotonic()
    emb = MiniLM().embed(df["text"].tolist())
    log.info("MiniLM: %d texts embedded in %.0f s", len(df), time.monotonic() - t0)

    def tfidf(tr, rows):
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
        xt = vec.fit_transform(tr["text"])
        clf = logistic(xt, tr["label"].to_numpy(), 3.0, sample_weight=weights(tr, True, source_w))
        return clf.predict(vec.transform(df.loc[rows, "text"]))

    def minilm(tr, rows):
        clf = logistic(emb[tr.index.to_numpy()], tr["label"].to_numpy(), 1.0, sample_weight=weights(tr, True, source_w))
        return clf.predict(emb[rows])

    for name, fn in (("TF-IDF+LR", tfidf), ("MiniLM+LR", minilm)):
        res = {"recipe": {"name": f"peer: {name}", "mix": mix, "source_w": source_w}, "loo": {}, "report": {}}
        for src in leave_out:
            rows = df.index[df["source"] == src].to_numpy()
            res["loo"][src] = float(
                f1_score(df.loc[rows, "label"], fn(train_rows(df, mix, src), rows), average="macro")
            )
        full = train_rows(df, mix, None)
        for src in REPORT:
            rows = df.index[df["source"] == src].to_numpy()
            res["report"][src] = float(f1_score(df.loc[rows, "label"], fn(full, rows), average="macro"))
        results.append(res)
    fv = finvader_labels(df["text"].tolist())
    if fv is not None:
        df = df.assign(fv=fv)
        res = {"recipe": {"name": "peer: finvader (no training)"}, "loo": {}, "report": {}}
        for src in leave_out:
            g = df[df["source"] == src]
            res["loo"][src] = float(f1_score(g["label"], g["fv"], average="macro"))
        for src in REPORT:
            g = df[df["source"] == src]
            res["report"][src] = float(f1_score(g["label"], g["fv"], average="macro"))
        results.append(res)
    for res in results:
        v = list(res["loo"].values())
        res["loo_mean"], res["loo_worst"] = float(np.mean(v)), float(np.min(v))
    return results


RECIPES = [
    Recipe("today's mix, class-balanced (today's weighting)", mix="today"),
    Recipe("all sources, no weights", class_w=False),
    Recipe("all sources, class-balanced"),
    Recipe("all sources, source-balanced", class_w=False, source_w=1.0),
    Recipe("all sources, class-balanced, sources by sqrt(rows)", source_w=0.5),
    Recipe("all sources, class- and source-balanced", source_w=1.0),
    Recipe("all sources without TFNS, class- and source-balanced", mix="no_tfns", source_w=1.0),
    Recipe("all, TFNS stated-direction neutrals relabelled, class+source", mix="relabel", source_w=1.0),
    Recipe("all, class+source, stronger L2", source_w=1.0, l2=1e-2),
    Recipe("all, class+source, weaker L2", source_w=1.0, l2=1e-4),
    Recipe("all, sqrt sources, SENTiVENT+SentiFM direction only", source_w=0.5, polar_only=POLAR_SELECTED),
    Recipe("all, class+source, SENTiVENT+SentiFM direction only", source_w=1.0, polar_only=POLAR_SELECTED),
    Recipe("all, class+source, per-source intercepts", source_w=1.0, source_bias=True),
    Recipe("all, sqrt sources, per-source intercepts", source_w=0.5, source_bias=True),
    Recipe("all, class-balanced, per-source intercepts", source_bias=True),
    Recipe(
        "all, class-balanced, intercepts, SENTiVENT+SentiFM direction only", source_bias=True, polar_only=POLAR_SELECTED
    ),
    Recipe(
        "all, sqrt sources, intercepts, SENTiVENT+SentiFM direction only",
        source_w=0.5,
        source_bias=True,
        polar_only=POLAR_SELECTED,
    ),
    Recipe("prompt, last token, class+source", features="last", source_w=1.0),
    Recipe("label words, zero-shot", features="words"),
    Recipe("label words + learned correction, class+source", features="words+", source_w=1.0),
]


def own_head(feats: dict, df: pd.DataFrame, leave_out: list[str]) -> dict:
    """The trained model's own sentiment head on the left-out sources (no refit), with the EM variant."""
    out = {"recipe": {"name": "the model as trained (its own head)"}, "loo": {}, "loo_em": {}, "report": {}}
    logits = feats["own"][df["fi"].to_numpy()]
    for src in leave_out + REPORT:
        rows = df.index[df["source"] == src].to_numpy()
        y = df.loc[rows, "label"].map(SENTIMENTS.index).to_numpy()
        p = softmax(logits[rows])
        if src in REPORT:
            out["report"][src] = macro_f1(y, p.argmax(1))
            continue
        out["loo"][src] = macro_f1(y, p.argmax(1))
        uniform = np.full(3, 1 / 3)  # the shipped head was trained class-weighted: about uniform
        out["loo_em"][src] = macro_f1(y, priors.adjust(p, uniform, priors.em_prior(p, uniform)).argmax(1))
    for k in ("loo", "loo_em"):
        v = list(out[k].values())
        out[k + "_mean"], out[k + "_worst"] = float(np.mean(v)), float(np.min(v))
    return out


def ablation(recipe: Recipe, feats: dict, df: pd.DataFrame, leave_out: list[str]) -> list[dict]:
    """Each training source dropped in turn: the mean left-out macro-F1 over the *other* folds, against keeping it.

    This decides per source (keep, drop, down-weight) by measurement: a source that lowers transfer to the
    sources it is not part of costs more than it brings.
    """
    from dataclasses import replace

    base = evaluate(recipe, feats, df, leave_out)
    out = []
    for src in sorted(df.loc[df["role"] == "train", "source"].unique()):
        others = [s for s in leave_out if s != src]
        without = evaluate(replace(recipe, mix=f"no_{src}"), feats, df, others)
        keep = float(np.mean([base["loo"][s] for s in others]))
        out.append({"source": src, "with": keep, "without": without["loo_mean"], "report_without": without["report"]})
    return out


BLEND_RECIPES = [  # refits of the table above (RECIPES) blended with a trained model's own head
    r
    for r in RECIPES
    if r.name
    in (
        "all sources, class-balanced",
        "all sources, class-balanced, sources by sqrt(rows)",
        "all, sqrt sources, per-source intercepts",
        "all, class-balanced, per-source intercepts",
        "all, sqrt sources, intercepts, SENTiVENT+SentiFM direction only",
    )
]
BLEND_ALPHAS = [round(0.05 * i, 2) for i in range(13)]  # 0 .. 0.6: the weight of the refitted head
BLEND_OFFSETS = [round(0.125 * i, 3) for i in range(9)]  # 0 .. 1: the neutral logit lowered after blending
CACHE_MARGIN = 0.002  # these figures (cached features) against the shipped model's evaluation: 0.784 vs 0.783


def fold_heads(r: Recipe, feats: dict, df: pd.DataFrame, leave_out: list[str]) -> dict:
    """The recipe's head refitted without each left-out source in turn, and (key ``None``) on every source:
    each a function of row indices to logits (``scorer``)."""
    return {src: scorer(r, feats, df, train_rows(df, r.mix, src, r.polar_only))[0] for src in [*leave_out, None]}


def pick_logits(feats: dict, df: pd.DataFrame, leave_out: list[str], pick: dict) -> dict:
    """The chosen blend's sentiment logits per set: each left-out source through its fold's refit (unseen), the
    held-out sets (``news pooled``: the three pooled, ``TFNS``) and the in-source training sets through the refit
    on every source. Values are (row indices, logits)."""
    r = next(x for x in BLEND_RECIPES if x.name == pick["recipe"])
    own = feats["own"][df["fi"].to_numpy()]
    fold = fold_heads(r, feats, df, leave_out)
    sets = {s: (df.index[df["source"] == s].to_numpy(), s) for s in leave_out}
    sets["news pooled"] = (np.concatenate([df.index[df["source"] == s].to_numpy() for s in REPORT]), None)
    for s in [*REPORT, GATE_TFNS]:
        sets[s] = (df.index[df["source"] == s].to_numpy(), None)
    out = {}
    for name, (idx, src) in sets.items():
        z = (1 - pick["alpha"]) * own[idx] + pick["alpha"] * fold[src](idx)
        z[:, SENTIMENTS.index("neutral")] -= pick["neutral_offset"]
        out["TFNS" if name == GATE_TFNS else name] = (idx, z)
    return out


def blend_calibration(logits: dict, df: pd.DataFrame, leave_out: list[str], temps=(1.0, 1.3, 1.6, 1.9, 2.2)):
    """Expected calibration error of the chosen blend (``pick_logits``) by temperature: on each left-out source,
    pooled news, TFNS.

    The shipped temperature is fitted on the training sources' validation split; this says what that choice
    does to the confidence users see on sources the model never saw.
    """
    from pipeline.classify.model import calibrate as cal

    y = df["label"].map(SENTIMENTS.index).to_numpy()
    out = []
    for t in temps:
        row = {"temperature": t}
        for name in [*leave_out, "news pooled", "TFNS"]:
            idx, z = logits[name]
            row[name] = cal.ece(cal.softmax(z, t), y[idx])
        row["left-out mean"] = float(np.mean([row[s] for s in leave_out]))
        out.append(row)
    return out


def rule_over(pred: np.ndarray, rule: np.ndarray, neutral_only: bool = True) -> np.ndarray:
    """``pred`` with the convention rule's direction (``rule``: a class index, or -1 where it decides nothing) set
    where the model said neutral (or, ``neutral_only=False``, wherever the rule decides)."""
    where = rule >= 0
    if neutral_only:
        where &= pred == SENTIMENTS.index("neutral")
    return np.where(where, rule, pred)


def rule_effect(logits: dict, df: pd.DataFrame, leave_out: list[str]) -> list[dict]:
    """What ``convention.stated_direction`` set over the chosen blend's neutral predictions would do, per set: how
    often it fires there, how often the annotators agree with it, macro-F1 before and after (and overriding every
    match), and the left-out mean."""
    y = df["label"].map(SENTIMENTS.index).to_numpy()
    cls = {"negative": SENTIMENTS.index("negative"), "positive": SENTIMENTS.index("positive")}
    rule = np.array([cls.get(convention.stated_direction(t), -1) for t in df["text"]])
    out = []
    for name in [*leave_out, *REPORT, "news pooled", "TFNS"]:
        idx, z = logits[name]
        pred, r, gold = z.argmax(1), rule[idx], y[idx]
        fired = (r >= 0) & (pred == SENTIMENTS.index("neutral"))
        out.append(
            {
                "set": name,
                "rows": len(idx),
                "matches": int((r >= 0).sum()),
                "fires_on_neutral": int(fired.sum()),
                "annotators_agree": int((gold[fired] == r[fired]).sum()),
                "before": macro_f1(gold, pred),
                "after": macro_f1(gold, rule_over(pred, r)),
                "after_every_match": macro_f1(gold, rule_over(pred, r, neutral_only=False)),
            }
        )
    lo = [o for o in out if o["set"] in leave_out]
    out.append(
        {
            "set": "left-out mean",
            **{k: float(np.mean([o[k] for o in lo])) for k in ("before", "after", "after_every_match")},
        }
    )
    return out


def blend_grid(feats: dict, df: pd.DataFrame, leave_out: list[str], recipes=BLEND_RECIPES) -> list[dict]:
    """The trained model's own head blended with a head refitted on every source, by weight and neutral offset.

    Per fold the refit leaves its source out, exactly as the table above; the own head never saw the folds.
    Both heads read the same features, so each blend is one linear head (``headfit.blend``): what
    ``train --method blend`` ships. The held-out columns (and the pooled news and TFNS figures the promotion
    gate reads) use the refit on every source.
    """
    own = feats["own"][df["fi"].to_numpy()]
    y = df["label"].map(SENTIMENTS.index).to_numpy()
    rows = {s: df.index[df["source"] == s].to_numpy() for s in [*leave_out, *REPORT, GATE_TFNS]}
    news = np.concatenate([rows[s] for s in REPORT])
    out = []
    for r in recipes:
        t1 = time.monotonic()
        fold = fold_heads(r, feats, df, leave_out)
        for a in BLEND_ALPHAS:
            for d in BLEND_OFFSETS:

                def pred(idx, refit, a=a, d=d):
                    z = (1 - a) * own[idx] + a * refit(idx)
                    z[:, SENTIMENTS.index("neutral")] -= d
                    return z.argmax(1)

                loo = {s: macro_f1(y[rows[s]], pred(rows[s], fold[s])) for s in leave_out}
                rep = {s: macro_f1(y[rows[s]], pred(rows[s], fold[None])) for s in [*REPORT, GATE_TFNS]}
                out.append(
                    {
                        "recipe": r.name,
                        "alpha": a,
                        "neutral_offset": d,
                        "loo": loo,
                        "loo_mean": float(np.mean(list(loo.values()))),
                        "loo_worst": float(min(loo.values())),
                        "report": rep,
                        "news_pooled": macro_f1(y[news], pred(news, fold[None])),
                    }
                )
        log.info(
            "blend grid %s: %d points (%.0f s)", r.name, len(BLEND_ALPHAS) * len(BLEND_OFFSETS), time.monotonic() - t1
        )
    return out


def blend_choice(grid: list[dict], active: dict, tolerance: float, margin: float = CACHE_MARGIN) -> list[dict]:
    """The grid by left-out mean (worst, then the smaller change, breaking ties), each marked whether it clears the
    promotion gate against ``active`` (its recorded news and TFNS macro-F1) with ``margin`` to spare."""
    ranked = sorted(grid, key=lambda g: (-round(g["loo_mean"], 4), -g["loo_worst"], g["alpha"], g["neutral_offset"]))
    for g in ranked:
        g["gate"] = (
            g["news_pooled"] >= active["news"] - tolerance + margin
            and g["report"][GATE_TFNS] >= active["sentiment"] - tolerance + margin
        )
    return ranked


def blend_table(ranked: list[dict], leave_out: list[str], n: int = 12) -> str:
    """The model as trained, the five best blends, then the best ``n`` of the rest that clear the gate."""
    cols = [*leave_out, "**mean**", "worst", *REPORT, "news pooled", "TFNS", "clears gate"]
    lines = ["| recipe | α | δ | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 3)]
    own = next(g for g in ranked if g["alpha"] == 0 and g["neutral_offset"] == 0)  # the model as trained
    shown = [own] + ranked[:5] + [g for g in ranked[5:] if g["gate"]][:n]
    for g in shown:
        cells = [f"{g['loo'][s]:.3f}" for s in leave_out] + [f"**{g['loo_mean']:.3f}**", f"{g['loo_worst']:.3f}"]
        cells += [f"{g['report'][s]:.3f}" for s in REPORT] + [
            f"{g['news_pooled']:.3f}",
            f"{g['report'][GATE_TFNS]:.3f}",
        ]
        cells.append("yes" if g["gate"] else "no")
        name = "the model as trained (its own head)" if g is own else g["recipe"]
        lines.append(f"| {name} | {g['alpha']:.2f} | {g['neutral_offset']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def blend_report(args, feats: dict, df: pd.DataFrame, leave_out: list[str]) -> None:
    """``--blend``: the ranked grid, the first blend that clears the gate, its calibration by temperature."""
    from bench.peers import cpu_info
    from pipeline.classify.model import modeldir
    from pipeline.classify.release.registry import GATE_TOLERANCE

    recorded = modeldir.read_meta(args.gate_against)["metrics"]
    active = {"news": recorded["news"]["macro_f1"], "sentiment": recorded["sentiment"]["macro_f1"]}
    ranked = blend_choice(blend_grid(feats, df, leave_out), active, GATE_TOLERANCE)
    pick = next((g for g in ranked if g["gate"]), None)
    print(f"machine: {json.dumps(cpu_info())}")
    print(
        f"gate against {args.gate_against}: news {active['news']:.4f}, TFNS {active['sentiment']:.4f}, "
        f"tolerance {GATE_TOLERANCE}, margin {CACHE_MARGIN}"
    )
    print(f"\nblends of {Path(args.model).name}'s own head by left-out mean (its own head; the best five; the best")
    print("that clear the gate):\n")
    print(blend_table(ranked, leave_out))
    calibration, rules = [], []
    if pick:
        print(
            f"\nchosen (first that clears the gate): {pick['recipe']}, alpha {pick['alpha']}, "
            f"neutral_offset {pick['neutral_offset']}: left-out mean {pick['loo_mean']:.3f} "
            f"(worst {pick['loo_worst']:.3f}), news pooled {pick['news_pooled']:.3f}"
        )
        logits = pick_logits(feats, df, leave_out, pick)
        calibration = blend_calibration(logits, df, leave_out)
        cols = [k for k in calibration[0] if k != "temperature"]
        print("\nits expected calibration error (15 bins) by temperature:\n")
        print("| T | " + " | ".join(cols) + " |\n|" + "---|" * (len(cols) + 1))
        for row in calibration:
            print(f"| {row['temperature']} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
        rules = rule_effect(logits, df, leave_out)
        print("\nthe convention rule (stated_direction) over its neutral predictions:\n")
        print(
            "| set | rows | rule matches | fires on a neutral prediction | annotators agree | before | after | every match |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for o in rules:
            counts = [str(o.get(k, "")) for k in ("rows", "matches", "fires_on_neutral", "annotators_agree")]
            f1s = [f"{o[k]:.3f}" for k in ("before", "after", "after_every_match")]
            print(f"| {o['set']} | " + " | ".join(counts + f1s) + " |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"blend": ranked, "active": active, "calibration": calibration, "rule": rules}, indent=1)
        )


def table(results: list[dict], leave_out: list[str], em: bool) -> str:
    head = "| recipe | " + " | ".join(leave_out) + " | **mean** | worst | " + " | ".join(REPORT) + " |"
    lines = [head, "|" + "---|" * (len(leave_out) + 3 + len(REPORT))]
    for r in results:
        key = "loo_em" if em and "loo_em" in r else "loo"
        cells = [f"{r[key][s]:.3f}" for s in leave_out]
        rep = [f"{r['report'][s]:.3f}" for s in REPORT]
        lines.append(
            f"| {r['recipe']['name']} | " + " | ".join(cells) + f" | **{r[key + '_mean']:.3f}** | "
            f"{r[key + '_worst']:.3f} | " + " | ".join(rep) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from bench import transfer_features
    from bench.peers import cpu_info

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None, help="write every figure here")
    ap.add_argument("--quick", action="store_true", help="two folds, three recipes, no peers (the test's mode)")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--base", default=None, help="base model for the features (default: the packaged SmolLM2)")
    ap.add_argument(
        "--model",
        default=None,
        help="features of this trained finsent model instead; only the sources it never trained on are left out, "
        "and its own head is a row",
    )
    ap.add_argument(
        "--blend",
        action="store_true",
        help="with --model: its own head blended with refitted heads (train --method blend), ranked leaving sources "
        "out, each marked whether it clears the promotion gate against --gate-against",
    )
    ap.add_argument("--gate-against", default="data/model", help="the model whose recorded figures the gate keeps")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.monotonic()
    df = corpus()
    df["key"] = df["text"].map(sources.norm)
    leave_out, recipes = LEAVE_OUT, RECIPES
    if args.quick:
        leave_out = ["ecosent", "sentifm"]
        recipes = [
            r for r in RECIPES if r.features == "words" or r.mix == "today" or r.name.endswith("source-balanced")
        ]
        df = df[df["source"].isin(leave_out + ["tfns_sentiment", *REPORT])]
        df = df.groupby("source", group_keys=False).apply(lambda g: g.head(600)).reset_index(drop=True)
    # one feature cache for every labeled sentiment text of the registry (the quick mode: its own rows only)
    texts = sorted(set(df["text"])) if args.quick else all_texts()
    feats = transfer_features.compute(texts, base=args.base, model_dir=args.model)
    if args.model:  # a fine-tuned backbone: only sources it never saw can be left out, and only mean features
        from pipeline.classify.model import modeldir

        seen = set(modeldir.read_meta(args.model)["training_data"]["sources"])
        leave_out = [s for s in leave_out if s not in seen]
        recipes = [r for r in recipes if r.features == "mean"]
        log.info("features of %s; it trained on %s; left out: %s", args.model, sorted(seen), leave_out)
    index = {t: i for i, t in enumerate(texts)}
    df["fi"] = df["text"].map(index)
    log.info("%d rows, %d sources, features ready in %.0f s", len(df), df["source"].nunique(), time.monotonic() - t0)
    if args.blend:
        if not args.model:
            raise SystemExit("--blend needs --model (the trained model whose head is blended)")
        blend_report(args, feats, df, leave_out)
        print(f"\n{time.monotonic() - t0:.0f} s")
        return
    results = [own_head(feats, df, leave_out)] if args.model else []
    for r in recipes:
        t1 = time.monotonic()
        results.append(evaluate(r, feats, df, leave_out))
        log.info(
            "%s: LOO mean %.3f worst %.3f (%.0f s)",
            r.name,
            results[-1]["loo_mean"],
            results[-1]["loo_worst"],
            time.monotonic() - t1,
        )
    peers = [] if (args.quick or args.no_peers or args.model) else peer_rows(df, leave_out, "all", 1.0)
    best = max(results, key=lambda r: r["loo_mean"])
    abl = [] if (args.quick or args.model) else ablation(Recipe(**best["recipe"]), feats, df, leave_out)
    rows = df[df["role"] == "train"]["source"].value_counts().to_dict()
    print(f"machine: {json.dumps(cpu_info())}")
    print(f"training rows per source: {rows}")
    what = f"features of {Path(args.model).name}" if args.model else "frozen base-model features"
    print(f"\nleave-one-source-out macro-F1 ({what}), no prior adjustment:\n")
    print(table(results + peers, leave_out, em=False))
    print("\nthe same recipes with the EM prior re-estimate on each left-out source's unlabeled texts:\n")
    print(table(results, leave_out, em=True))
    if abl:
        print(
            f"\neach training source dropped in turn ({best['recipe']['name']}): mean left-out macro-F1 over the other folds\n"
        )
        print("| source dropped | kept | dropped | change |\n|---|---|---|---|")
        for a in abl:
            print(f"| {a['source']} | {a['with']:.3f} | {a['without']:.3f} | {a['without'] - a['with']:+.3f} |")
    print(f"\n{time.monotonic() - t0:.0f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"results": results, "peers": peers, "ablation": abl, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
