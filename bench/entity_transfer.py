"""Entity sentiment that transfers: leave one source out, against "inherit the headline's label".

    .state/venv/bin/python -m bench.entity_transfer                    # the shipped model (automatic backend)
    .state/venv/bin/python -m bench.entity_transfer --model DIR --limit 200

Sources of (text, company, label) pairs: SEntFiN (Indian headlines, per-entity labels), the SENTiVENT targets
(US company news, per-target labels; proper-name targets only), FinEntity (Reuters sentences) and the expert
companies set (headlines from many publishers, every company named with the sentiment toward it, RUBRIC.md).
For each source left out, every head is fitted on the other three (regularisation and story weight chosen on a 10 %
story-grouped validation split of those) and scored on the one left out. Compared on that table:

* ``inherit``: every company gets its headline's predicted label (no head);
* ``head: SEntFiN only``: today's recipe (trained on SEntFiN alone), when SEntFiN is not the one left out;
* ``head: pooled``: trained on both other sources;
* ``pooled, multi-company only``: the head where the text names several companies, the headline label elsewhere;
* ``pooled, confident only``: the head where its probability is >= 0.7, the headline label elsewhere;
* the same two rules on today's head (``today, ...``).

Macro-F1 over all pairs and over pairs whose text names several companies with different gold labels
("disagreeing"). Features are the entity head's (``pipeline.entities.sentiment.features``), cached under the
state folder per model and data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score
from sklearn.model_selection import GroupShuffleSplit

from pipeline.classify.model.calibrate import softmax
from pipeline.classify.training.headfit import chosen_c, logistic

SOURCES = ("sentfin", "sentivent", "finentity", "expert")
C_GRID = (0.001, 0.01, 0.1)
WEIGHTS = (0.0, 0.5, 1.0, 2.0)
CONFIDENT = 0.7


def sentivent_pairs() -> pd.DataFrame:
    from pipeline.entities import evaluate

    rows = []
    for ex in evaluate.sentivent_targets():
        for g in ex.gold:
            rows.append(("sentivent", ex.text, g.text, g.label, g.start, g.end, ex.id))
    return pd.DataFrame(rows, columns=["split", "text", "entity", "label", "start", "end", "story"])


def expert_pairs() -> pd.DataFrame:
    """The expert companies set: every company a headline names, with the sentiment toward it (RUBRIC.md)."""
    from pipeline.entities import evaluate

    df = pd.read_csv(evaluate.EXPERT_COMPANIES, keep_default_na=False)
    df = df[df["company"] != ""]
    return pd.DataFrame(
        {
            "split": "expert",
            "text": df["text"].values,
            "entity": df["company"].values,
            "label": df["sentiment"].values,
            "start": df["start"].astype(float).astype(int).values,
            "end": df["end"].astype(float).astype(int).values,
            "story": ["expert:" + t for t in df["text"]],
        }
    )


def all_pairs(limit: int | None = None) -> pd.DataFrame:
    from pipeline.entities.train_head import finentity_pairs, sentfin_pairs

    sf = sentfin_pairs().assign(split="sentfin")
    frames = [sf, sentivent_pairs(), finentity_pairs(), expert_pairs()]
    if limit:
        frames = [f[f["story"].isin(f["story"].drop_duplicates().head(limit))] for f in frames]
    out = pd.concat(frames, ignore_index=True)
    return out[out["start"] >= 0].reset_index(drop=True)


def f1(y, p) -> float:
    return round(float(f1_score(y, p, labels=[0, 1, 2], average="macro", zero_division=0)), 4)


def fit_head(z: np.ndarray, story: np.ndarray, y: np.ndarray, groups: np.ndarray):
    """C (the project's one head fitter) and then the story weight chosen on a story-grouped 10 % of the training
    pairs; the head refitted on every pair at that C; returns a predict function."""
    gss = GroupShuffleSplit(n_splits=1, test_size=0.1, random_state=0)
    tr, va = next(gss.split(z, groups=groups))
    c = chosen_c(logistic(z[tr], y[tr], C_GRID, val=(z[va], y[va]), max_iter=2000))
    logit = logistic(z[tr], y[tr], c, max_iter=2000).decision_function(z[va])
    w = max(WEIGHTS, key=lambda w: f1(y[va], (logit + w * story[va]).argmax(1)))
    lr = logistic(z, y, c, max_iter=2000)
    return lambda zz, ss: softmax(lr.decision_function(zz) + w * ss), {"C": c, "story_weight": w}


def shipped_probabilities(model_dir: Path, clf, x: np.ndarray, story: np.ndarray) -> np.ndarray | None:
    """The model's own entity head on every pair (calibrated as at run time), or None without one."""
    import torch

    from pipeline.entities.sentiment import HEAD_FILE, EntityHead

    if not (model_dir / HEAD_FILE).is_file():
        return None
    head = EntityHead.load(model_dir)
    temperature = float((clf.meta.get("entity_head") or {}).get("temperature", 1.0))
    with torch.no_grad():
        logits = head(torch.from_numpy(x).float(), torch.from_numpy(story).float()) / temperature
    return torch.softmax(logits, -1).numpy()


def main(argv: list[str] | None = None) -> dict:
    from bench.classify import active_model_dir
    from bench.peers import cpu_info
    from pipeline import config
    from pipeline.classify.model.predict import Classifier
    from pipeline.entities.sentiment import SENTIMENTS
    from pipeline.entities.train_head import _features, disagreeing

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model directory (default: the active model)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many texts per source (tiny runs)")
    args = ap.parse_args(argv)
    model_dir = args.model or active_model_dir()
    t0 = time.monotonic()
    clf = Classifier.load(Path(model_dir))
    pairs = all_pairs(args.limit)
    digest = hashlib.sha256(pd.util.hash_pandas_object(pairs, index=False).values.tobytes()).hexdigest()[:12]
    cache = config.state_dir() / "runs" / f"entity-transfer-{clf.meta['version']}-{clf.backend}-{digest}.npz"
    x, story = _features(clf, pairs, cache)
    y = pairs["label"].map({s: i for i, s in enumerate(SENTIMENTS)}).to_numpy()
    src = pairs["split"].to_numpy()
    companies = pairs.groupby("story")["entity"].transform("nunique").to_numpy()
    shipped = shipped_probabilities(Path(model_dir), clf, x, story)
    rows = []
    for out in SOURCES:
        test, train = src == out, src != out
        if not test.any() or not train.any():
            continue
        mean, scale = x[train].mean(0), x[train].std(0) + 1e-4
        z = (x - mean) / scale
        dis = disagreeing(pairs[test])
        multi = companies[test] > 1
        story_pred = story[test].argmax(1)
        systems = {"inherit": story_pred}
        if out != "sentfin":
            only = src == "sentfin"
            predict, chosen = fit_head(z[only], story[only], y[only], pairs["story"].to_numpy()[only])
            today = predict(z[test], story[test])
            systems["head: SEntFiN only (today)"] = today.argmax(1)
            systems["today, multi-company only"] = np.where(multi, today.argmax(1), story_pred)
            systems["today, confident only"] = np.where(today.max(1) >= CONFIDENT, today.argmax(1), story_pred)
        if shipped is not None and out != "sentfin":  # the head as shipped (trained on SEntFiN), never refitted
            sp = shipped[test]
            systems["shipped head"] = sp.argmax(1)
            systems["shipped, multi-company only"] = np.where(multi, sp.argmax(1), story_pred)
            systems["shipped, confident only"] = np.where(sp.max(1) >= CONFIDENT, sp.argmax(1), story_pred)
        predict, chosen = fit_head(z[train], story[train], y[train], pairs["story"].to_numpy()[train])
        prob = predict(z[test], story[test])
        pooled = prob.argmax(1)
        systems["head: pooled"] = pooled
        systems["pooled, multi-company only"] = np.where(multi, pooled, story_pred)
        systems["pooled, confident only"] = np.where(prob.max(1) >= CONFIDENT, pooled, story_pred)
        yt = y[test]
        for name, pred in systems.items():
            rows.append(
                {
                    "left out": out,
                    "system": name,
                    "pairs": int(test.sum()),
                    "macro_f1": f1(yt, pred),
                    "multi_company_pairs": int(multi.sum()),
                    "multi_company_f1": f1(yt[multi], pred[multi]) if multi.any() else None,
                    "disagreeing_pairs": int(dis.sum()),
                    "disagreeing_f1": f1(yt[dis], pred[dis]) if dis.any() else None,
                    "chosen": chosen if name.startswith("head: pooled") else None,
                }
            )
    table = pd.DataFrame(rows)
    means = table.groupby("system", sort=False)[["macro_f1", "multi_company_f1", "disagreeing_f1"]].mean().round(4)
    report = {
        "cpu": cpu_info(),
        "model": clf.meta["version"],
        "backend": clf.backend,
        "pairs": {s: int((src == s).sum()) for s in SOURCES},
        "rows": rows,
        "mean_over_left_out": means.reset_index().to_dict("records"),
        "seconds": round(time.monotonic() - t0, 1),
    }
    pd.set_option("display.width", 200)
    print(table.drop(columns=["chosen"]).to_string(index=False))
    print("\nmean over the sources left out:")
    print(means.to_string())
    print(json.dumps({k: report[k] for k in ("cpu", "model", "backend", "pairs", "seconds")}))
    return report


if __name__ == "__main__":
    main()
