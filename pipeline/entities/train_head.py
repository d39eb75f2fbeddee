"""Fit and judge the entity head (``python -m pipeline entities train-head --model DIR``).

Data: SEntFiN's per-entity labels only, outside the committed test split
(``data/splits/sentfin_test_ids.txt``, the same headline split the story
classifier uses); 10 % of those headlines (seeded) choose the regularisation
and the temperature. Judged on SEntFiN's test split and on FinEntity (never
trained on) against the baseline "every entity inherits the story's predicted
label", overall and on stories whose entities disagree.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score
from sklearn.model_selection import GroupShuffleSplit

from pipeline import config
from pipeline.classify.datasets.sources import parse_decisions, registry
from pipeline.classify.model import modeldir
from pipeline.classify.model.calibrate import fit_temperature
from pipeline.classify.model.predict import Classifier
from pipeline.classify.training.headfit import chosen_c, logistic
from pipeline.entities import evaluate as link_eval
from pipeline.entities.sentiment import FEATURES, SENTIMENTS, EntityHead, features, locate

log = logging.getLogger(__name__)
C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
STORY_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)
VALID_FRACTION, SEED = 0.1, 20261124


def sentfin_pairs() -> pd.DataFrame:
    """One row per (headline, entity): split, text, entity, label, start, end, story (headline id)."""
    src = registry()["sentfin"]
    test = {int(x) for x in src.test_ids.read_text().split()}
    df = pd.read_csv(src.path)
    rows = []
    for sid, title, decisions in zip(df["S No."], df["Title"], df["Decisions"]):
        for ent, lab in parse_decisions(decisions):
            s, e = locate(title, ent)
            rows.append(("test" if sid in test else "train", str(title), ent, lab, s, e, f"sentfin:{sid}"))
    out = pd.DataFrame(rows, columns=["split", "text", "entity", "label", "start", "end", "story"])
    train = out[out["split"] == "train"]
    gss = GroupShuffleSplit(n_splits=1, test_size=VALID_FRACTION, random_state=SEED)
    _, val_idx = next(gss.split(train, groups=train["story"]))
    out.loc[train.index[val_idx], "split"] = "valid"
    return out


def finentity_pairs() -> pd.DataFrame:
    rows = []
    for ex in link_eval.finentity():
        for g in ex.gold:
            end = g.start + len(g.text)
            rows.append(("finentity", ex.text, g.text, g.label, g.start, end, ex.id))
    return pd.DataFrame(rows, columns=["split", "text", "entity", "label", "start", "end", "story"])


def _features(clf: Classifier, pairs: pd.DataFrame, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pair features, story-level sentiment logits per pair), cached per model and data."""
    if cache.exists():
        z = np.load(cache)
        return z["x"], z["story_logits"]
    stories = pairs.groupby("story", sort=False)
    texts, spans, members = [], [], []
    for _, g in stories:
        texts.append(g["text"].iloc[0])
        spans.append(list(zip(g["start"].astype(int), g["end"].astype(int))))
        members.append(g.index.to_numpy())
    feats, story_logits = features(clf, texts, spans, progress=True)
    x = np.zeros((len(pairs), feats[0].shape[1]), np.float32)
    story = np.zeros((len(pairs), len(SENTIMENTS)), np.float32)
    pos = {ix: i for i, ix in enumerate(pairs.index)}
    for f, logit, idx in zip(feats, story_logits, members):
        for row, ix in zip(f, idx):
            x[pos[ix]] = row
            story[pos[ix]] = logit
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, x=x, story_logits=story)
    return x, story


def disagreeing(pairs: pd.DataFrame) -> np.ndarray:
    """Pairs on stories whose gold entity labels are not all the same."""
    n_labels = pairs.groupby("story")["label"].transform("nunique")
    return (n_labels > 1).to_numpy()


def _f1(y: np.ndarray, p: np.ndarray) -> float:
    return round(float(f1_score(y, p, labels=[0, 1, 2], average="macro", zero_division=0)), 4)


def judge(y: np.ndarray, head_pred: np.ndarray, story_pred: np.ndarray, mask: np.ndarray) -> dict:
    return {
        "pairs": int(len(y)),
        "entity_head_macro_f1": _f1(y, head_pred),
        "story_label_baseline_macro_f1": _f1(y, story_pred),
        "disagreeing_pairs": int(mask.sum()),
        "disagreeing_entity_head_macro_f1": _f1(y[mask], head_pred[mask]) if mask.any() else None,
        "disagreeing_baseline_macro_f1": _f1(y[mask], story_pred[mask]) if mask.any() else None,
    }


def train_head(model_dir: str | Path, device: str | None = None) -> dict:
    """Fit the head, write it beside the model, record metrics in its metadata and report; returns the metrics."""
    model_dir = Path(model_dir)
    clf = Classifier.load(model_dir, device=device, precision="fp32")
    pairs = pd.concat([sentfin_pairs(), finentity_pairs()], ignore_index=True)
    digest = hashlib.sha256(pd.util.hash_pandas_object(pairs, index=False).values.tobytes()).hexdigest()[:12]
    cache = config.state_dir() / "runs" / f"entity-features-v2-{clf.meta['version']}-{digest}.npz"
    x, story_logits = _features(clf, pairs, cache)
    story_pred = story_logits.argmax(1)
    y = pairs["label"].map({s: i for i, s in enumerate(SENTIMENTS)}).to_numpy()
    part = pairs["split"].to_numpy()
    tr, va = part == "train", part == "valid"
    mean, scale = x[tr].mean(0), x[tr].std(0) + 1e-4
    z = (x - mean) / scale
    lr = logistic(z[tr], y[tr], C_GRID, val=(z[va], y[va]))  # the project's one head fitter; C on validation
    scores = {c: round(float(v), 4) for c, v in zip(C_GRID, np.ravel(lr.scores_))}
    best_c = chosen_c(lr)
    head = EntityHead(x.shape[1])
    with torch.no_grad():
        head.mean.copy_(torch.from_numpy(mean))
        head.scale.copy_(torch.from_numpy(scale))
        head.linear.weight.copy_(torch.from_numpy(lr.coef_).float())
        head.linear.bias.copy_(torch.from_numpy(lr.intercept_).float())
    xt, st = torch.from_numpy(x), torch.from_numpy(story_logits)
    weights = {}
    for w in STORY_WEIGHTS:  # how much the story's own label counts, chosen on validation
        head.story_weight.fill_(w)
        with torch.no_grad():
            weights[w] = _f1(y[va], head(xt[va], st[va]).argmax(-1).numpy())
        log.info("entity head story weight %g: validation macro-F1 %.4f", w, weights[w])
    top_w = max(weights, key=lambda w: (weights[w], -w))
    with torch.no_grad():
        head.story_weight.fill_(top_w)
        se = bootstrap_se(y[va], head(xt[va], st[va]).argmax(-1).numpy())
    best_w = one_se_choice(weights, se)
    log.info("entity head story weight %g (best %g at %.4f, bootstrap SE %.4f)", best_w, top_w, weights[top_w], se)
    head.story_weight.fill_(best_w)
    with torch.no_grad():
        combined = head(xt, st).numpy()
    temperature = fit_temperature(combined[va], y[va])
    pred = combined.argmax(-1)
    metrics = {"validation_macro_f1": weights[best_w]}
    for name in ("valid", "test", "finentity"):
        m = part == name
        metrics[{"valid": "sentfin_valid", "test": "sentfin_test", "finentity": "finentity"}[name]] = judge(
            y[m], pred[m], story_pred[m], disagreeing(pairs[m])
        )
    head.save(model_dir)
    meta = modeldir.read_meta(model_dir)
    meta["entity_head"] = {
        "file": "entity_head.safetensors",
        "features": list(FEATURES),
        "trained_on": "SEntFiN per-entity labels outside data/splits/sentfin_test_ids.txt",
        "train_pairs": int(tr.sum()),
        "valid_pairs": int(va.sum()),
        "C": best_c,
        "c_grid_validation_macro_f1": {str(k): v for k, v in scores.items()},
        "story_weight": best_w,
        "story_weight_validation_macro_f1": {str(k): v for k, v in weights.items()},
        "story_weight_rule": f"largest weight within one bootstrap SE ({se:.4f}) of the best validation macro-F1",
        "temperature": round(float(temperature), 4),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if meta.get("metrics"):
        meta["metrics"]["entity"] = gate_summary(metrics)
    modeldir.write_meta(model_dir, meta)
    _append_report(model_dir, metrics)
    log.info("entity head written to %s: %s", model_dir, json.dumps(gate_summary(metrics)))
    return metrics


def bootstrap_se(y: np.ndarray, pred: np.ndarray, resamples: int = 200, seed: int = 0) -> float:
    """Standard error of macro-F1 over bootstrap resamples of the rows."""
    rng = np.random.default_rng(seed)
    n = len(y)
    vals = [_f1(y[idx], pred[idx]) for idx in (rng.integers(0, n, n) for _ in range(resamples))]
    return float(np.std(vals, ddof=1))


def one_se_choice(scores: dict[float, float], se: float) -> float:
    """The largest story weight whose validation macro-F1 is within one standard error of the best (pure).

    The validation pairs all come from one publisher family (SEntFiN), so differences inside the noise say
    little; a larger weight leans on the story label, which carries over to other publishers.
    """
    best = max(scores.values())
    return max(w for w, f1 in scores.items() if f1 >= best - se)


def gate_summary(metrics: dict) -> dict:
    """The gate's view: entity-level macro-F1 on the two held-out sets, and the baseline's."""
    t, f = metrics["sentfin_test"], metrics["finentity"]
    return {
        "macro_f1": round((t["entity_head_macro_f1"] + f["entity_head_macro_f1"]) / 2, 4),
        "baseline_macro_f1": round((t["story_label_baseline_macro_f1"] + f["story_label_baseline_macro_f1"]) / 2, 4),
        "sentfin_test": t["entity_head_macro_f1"],
        "finentity": f["entity_head_macro_f1"],
        "disagreeing_sentfin_test": t["disagreeing_entity_head_macro_f1"],
        "disagreeing_finentity": f["disagreeing_entity_head_macro_f1"],
    }


def _append_report(model_dir: Path, metrics: dict) -> None:
    from pipeline.classify.evaluation.evaluate import markdown

    report_json = model_dir / modeldir.REPORT_JSON
    report = json.loads(report_json.read_text()) if report_json.exists() else {}
    report["entity"] = metrics
    report_json.write_text(json.dumps(report, indent=2))
    if report.get("news_sets") is not None:
        from pipeline.classify.evaluation import modelcard

        (model_dir / modeldir.REPORT_MD).write_text(markdown(report))
        modelcard.write(model_dir, modeldir.read_meta(model_dir), report)
