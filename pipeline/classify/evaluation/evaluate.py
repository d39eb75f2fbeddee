"""Held-out evaluation with peers measured in the same run (``python -m pipeline evaluate``).

Held-out sets (``data/sources.yaml``, role ``heldout``; never used in training or selection):

* Twitter Financial News sentiment and topic ``*_valid.csv`` (tweets);
* news headlines from other publishers: FinEntity (Reuters), WSJ economy
  headlines, and SEntFiN's fixed test split by headline.

For each set: macro-F1 with a bootstrap 95 % interval, accuracy, per-class
report and confusion matrix; the three news sets are also pooled. The model's
top-label ECE (15 bins) is reported before and after its temperature on the
tweet set and the pooled news set. Peers (TF-IDF+LR and MiniLM+LR trained on
the model's own training split, VADER, finvader) are scored on the same rows.
Written beside the model as ``report.json``/``report.md``; the summary goes
into the model's metadata, where the promotion gate reads it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from pipeline.classify.datasets import sources
from pipeline.classify.datasets.data import load_task
from pipeline.classify.evaluation import modelcard, peers
from pipeline.classify.model import calibrate as cal
from pipeline.classify.model import modeldir
from pipeline.classify.model.labels import SENTIMENTS, TOPICS
from pipeline.classify.model.predict import Classifier

log = logging.getLogger(__name__)
DEFAULT_PEERS = ("tfidf_lr", "vader", "finvader", "minilm_lr")
BOOTSTRAP = 1000


def task_metrics(y_true: list[str], y_pred: list[str], labels: list[str], ci: bool = False) -> dict:
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

    out = {
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "n": len(y_true),
        "report": classification_report(y_true, y_pred, labels=labels, output_dict=True, zero_division=0),
        "confusion_matrix": {
            "labels": labels,
            "rows_true_cols_pred": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        },
    }
    if ci:
        out["macro_f1_ci95"] = bootstrap_ci(y_true, y_pred, labels)
    return out


def bootstrap_ci(y_true, y_pred, labels, n: int = BOOTSTRAP, seed: int = 0) -> list[float]:
    """Percentile 95 % interval of macro-F1 over ``n`` resamples of the rows (fixed seed: reproducible)."""
    from sklearn.metrics import f1_score

    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    rng = np.random.default_rng(seed)
    stats = [
        f1_score(yt[i], yp[i], labels=labels, average="macro", zero_division=0)
        for i in (rng.integers(0, len(yt), len(yt)) for _ in range(n))
    ]
    return [float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))]


def heldout_sets() -> dict[str, tuple[str, object]]:
    """name -> (task, DataFrame) for every held-out source."""
    return {s.name: (s.task, sources.load(s)) for s in sources.registry().values() if s.role == "heldout"}


def evaluate(
    model_dir: str | Path,
    batch_size: int = 64,
    baselines: bool = True,
    device: str | None = None,
    peer_names: tuple[str, ...] | None = None,
) -> dict:
    """Evaluate a model directory on every held-out set, with ``peer_names`` (default: ``FINSENT_EVAL_PEERS``,
    else all of :data:`DEFAULT_PEERS`) scored on the same rows; writes report, card and metrics."""
    import os

    if peer_names is None:
        env = os.environ.get("FINSENT_EVAL_PEERS", "")
        peer_names = tuple(p.strip() for p in env.split(",") if p.strip()) or DEFAULT_PEERS
    model_dir = Path(model_dir)
    meta = modeldir.read_meta(model_dir)
    tr = meta["training"]
    sets = heldout_sets()
    news = [s.name for s in sources.heldout("sentiment", news=True, pooled=True)]
    clf = Classifier.load(model_dir, device=device)
    report: dict = {
        "version": meta["version"],
        "method": meta["method"],
        "base_model": meta["base_model"],
        "held_out": {name: len(df) for name, (_, df) in sets.items()},
        "news_sets": news,
        "apart_sets": [s.name for s in sources.heldout("sentiment", news=True, pooled=False)],
        "news_topic_sets": [s.name for s in sources.heldout("topic", news=True)],
        "systems": {},
    }
    # -- the model --------------------------------------------------------------------------------
    t0 = time.monotonic()
    preds, raw = {}, {}
    for name, (task, df) in sets.items():
        s_logits, t_logits = clf.logits(df["text"].tolist(), batch_size, progress=True)
        raw[name] = s_logits if task == "sentiment" else t_logits
        temp = clf.temperatures[0 if task == "sentiment" else 1]
        names = SENTIMENTS if task == "sentiment" else TOPICS
        preds[name] = [names[i] for i in cal.softmax(raw[name], temp).argmax(1)]
    n_texts = sum(len(df) for _, df in sets.values())
    report["systems"]["model"] = _score(sets, preds, news)
    report["systems"]["model"]["throughput_texts_per_s"] = round(n_texts / (time.monotonic() - t0), 1)
    report["systems"]["model"]["device"] = str(clf.device)
    report["calibration"] = _calibration(sets, raw, news, clf.temperatures[0])
    # -- peers ------------------------------------------------------------------------------------
    if baselines:
        data = tr.get("data", "default")
        sent = load_task("sentiment", tr["val_fraction"], tr["seed"], tr.get("limit_per_task"), data)
        topic = load_task(
            "topic", tr["val_fraction"], tr["seed"], tr.get("topic_limit") or tr.get("limit_per_task"), data
        )
        for peer in peer_names:
            t1 = time.monotonic()
            peer_preds = _peer_predictions(peer, sets, sent, topic)
            if peer_preds is None:
                report["systems"][peer] = {"skipped": "package not installed"}
                continue
            report["systems"][peer] = _score(sets, peer_preds, news)
            report["systems"][peer]["seconds"] = round(time.monotonic() - t1, 1)
    report["summary"] = summary(report)
    _keep_entity_figures(model_dir, meta, report)
    modeldir.write_report(model_dir, report, markdown(report))
    meta["metrics"] = report["summary"]
    modeldir.write_meta(model_dir, meta)
    modelcard.write(model_dir, meta, report)
    s = report["summary"]
    log.info(
        "held-out: news macro-F1 %.4f; TFNS sentiment macro-F1 %.4f; topic accuracy %.4f",
        s["news"]["macro_f1"],
        s["sentiment"]["macro_f1"],
        s["topic"]["accuracy"],
    )
    return report


def _keep_entity_figures(model_dir: Path, meta: dict, report: dict) -> None:
    """The entity head's figures are written by ``entities train-head``; a re-evaluation carries them over."""
    entity = (meta.get("metrics") or {}).get("entity")
    old = Path(model_dir) / modeldir.REPORT_JSON
    if entity and old.exists():
        report["summary"]["entity"] = entity
        report["entity"] = json.loads(old.read_text()).get("entity")


def _score(sets: dict, preds: dict, news: list[str]) -> dict:
    out: dict = {"sets": {}}
    for name, (task, df) in sets.items():
        if name not in preds:
            continue
        out["sets"][name] = task_metrics(
            df["label"].tolist(),
            list(preds[name]),
            SENTIMENTS if task == "sentiment" else TOPICS,
            ci=task == "sentiment",
        )
    if all(n in preds for n in news):
        y = [lab for n in news for lab in sets[n][1]["label"]]
        p = [lab for n in news for lab in preds[n]]
        out["news_pooled"] = task_metrics(y, p, SENTIMENTS, ci=True)
    return out


def _calibration(sets: dict, raw: dict, news: list[str], temperature: float) -> dict:
    out = {"bins": 15, "sentiment_temperature": temperature}
    groups = {"tfns_sentiment_valid": ["tfns_sentiment_valid"], "news_pooled": news}
    for label, names in groups.items():
        logits = np.concatenate([raw[n] for n in names])
        y = np.array([SENTIMENTS.index(v) for n in names for v in sets[n][1]["label"]])
        out[label] = {
            "ece_before": cal.ece(cal.softmax(logits), y),
            "ece_after": cal.ece(cal.softmax(logits, temperature), y),
        }
    return out


def _peer_predictions(peer: str, sets: dict, sent, topic) -> dict | None:
    texts = {name: df["text"].tolist() for name, (_, df) in sets.items()}
    task_of = {name: task for name, (task, _) in sets.items()}
    if peer in ("vader", "finvader"):
        fn = peers.vader_labels if peer == "vader" else peers.finvader_labels
        out = {n: fn(t) for n, t in texts.items() if task_of[n] == "sentiment"}
        return None if any(v is None for v in out.values()) else out
    make = peers.tfidf_lr if peer == "tfidf_lr" else peers.minilm_lr
    fitted = {}
    for task, td, metric in (("sentiment", sent, "macro_f1"), ("topic", topic, "accuracy")):
        fitted[task] = make(
            td.train["text"].tolist(),
            td.train["label"].tolist(),
            td.val["text"].tolist(),
            td.val["label"].tolist(),
            metric,
        )
        if fitted[task] is None:
            return None
    return {n: list(fitted[task_of[n]].predict(t)) for n, t in texts.items()}


def summary(report: dict) -> dict:
    """What the registry and the gate read: TFNS sentiment and topic, pooled news, per news set, ECE."""
    m = report["systems"]["model"]
    keys = ("macro_f1", "accuracy", "weighted_f1", "n")
    return {
        "sentiment": {k: m["sets"]["tfns_sentiment_valid"][k] for k in keys},
        "topic": {k: m["sets"]["tfns_topic_valid"][k] for k in keys},
        "news": {
            **{k: m["news_pooled"][k] for k in keys},
            "ci95": m["news_pooled"]["macro_f1_ci95"],
            "sets": {
                n: {
                    "macro_f1": m["sets"][n]["macro_f1"],
                    "accuracy": m["sets"][n]["accuracy"],
                    "ci95": m["sets"][n]["macro_f1_ci95"],
                    "n": m["sets"][n]["n"],
                }
                for n in report["news_sets"]
            },
        },
        "ece": {k: v for k, v in report["calibration"].items() if isinstance(v, dict)},
        **expert_summary(report),
    }


def expert_summary(report: dict) -> dict:
    """The expert-labelled news split (reported apart from the pooled news figure): sentiment and topic on news."""
    m = report["systems"]["model"]["sets"]
    sent = [n for n in report.get("apart_sets", []) if n in m]
    topic = [n for n in report.get("news_topic_sets", []) if n in m]
    if not sent:
        return {}
    out = {
        "macro_f1": m[sent[0]]["macro_f1"],
        "accuracy": m[sent[0]]["accuracy"],
        "ci95": m[sent[0]]["macro_f1_ci95"],
        "n": m[sent[0]]["n"],
        "set": sent[0],
    }
    if topic:
        out.update(
            topic_accuracy=m[topic[0]]["accuracy"], topic_macro_f1=m[topic[0]]["macro_f1"], topic_n=m[topic[0]]["n"]
        )
    return {"expert": out}


def _cell(label: str) -> str:
    return label.replace("|", "\\|")  # topic names such as "Fed | Central Banks" would split the row


def entity_markdown(entity: dict) -> list[str]:
    """The entity head's section of the report (figures from ``entities train-head``)."""
    lines = [
        "",
        "## Entity-targeted sentiment (entity head)",
        "",
        "Entity-level macro-F1; the baseline gives every entity its story's predicted label. *Disagreeing*: pairs",
        "on stories whose entities carry different gold labels.",
        "",
        "| set | pairs | entity head | story-label baseline | disagreeing pairs | entity head | baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("sentfin_valid", "sentfin_test", "finentity"):
        m = entity[name]
        lines.append(
            f"| {name} | {m['pairs']} | {m['entity_head_macro_f1']:.3f} | {m['story_label_baseline_macro_f1']:.3f} | "
            f"{m['disagreeing_pairs']} | {m['disagreeing_entity_head_macro_f1']:.3f} | "
            f"{m['disagreeing_baseline_macro_f1']:.3f} |"
        )
    return lines


def markdown(report: dict) -> str:
    news = report["news_sets"]
    cols = ["tfns_sentiment_valid", *news, *report.get("apart_sets", [])]
    news_topic = report.get("news_topic_sets", [])
    lines = [
        f"# Evaluation of {report['version']}",
        "",
        f"Method: `{report['method']}`; base model: {report['base_model']}.",
        "Held-out sets (never used in training or model selection): "
        + ", ".join(f"`{k}` ({v})" for k, v in report["held_out"].items())
        + ".",
        "",
        "## Sentiment macro-F1 (95 % bootstrap interval) and topic accuracy",
        "",
        "| system | news pooled | "
        + " | ".join(cols)
        + " | topic accuracy |"
        + "".join(f" {n} accuracy |" for n in news_topic),
        "|---|" + "---|" * (len(cols) + 2 + len(news_topic)),
    ]
    for name, sysm in report["systems"].items():
        if "skipped" in sysm:
            lines.append(f"| {name} | skipped: {sysm['skipped']} |" + " |" * (len(cols) + 1))
            continue
        sets = sysm["sets"]
        pooled = sysm.get("news_pooled")

        def f1(m):
            return f"{m['macro_f1']:.3f} [{m['macro_f1_ci95'][0]:.3f}, {m['macro_f1_ci95'][1]:.3f}]" if m else "-"

        accs = [sets.get(t) for t in ("tfns_topic_valid", *news_topic)]
        lines.append(
            f"| {name} | {f1(pooled)} | "
            + " | ".join(f1(sets.get(c)) for c in cols)
            + " | "
            + " | ".join(f"{a['accuracy']:.3f}" if a else "-" for a in accs)
            + " |"
        )
    c = report["calibration"]
    lines += [
        "",
        f"## Calibration (top-label ECE, {c['bins']} bins; sentiment temperature {c['sentiment_temperature']:.3f})",
        "",
        *modelcard.ece_table(c),
    ]
    model = report["systems"]["model"]
    blocks = [(n, model["sets"][n]) for n in model["sets"]] + [("news_pooled", model["news_pooled"])]
    for name, m in blocks:
        lines += [
            "",
            f"## Model on `{name}`: per-class report (accuracy {m['accuracy']:.4f})",
            "",
            "| class | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        for label in m["confusion_matrix"]["labels"]:
            r = m["report"][label]
            lines.append(
                f"| {_cell(label)} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1-score']:.3f} | {int(r['support'])} |"
            )
        lines += ["", "Confusion matrix (rows = true, columns = predicted, order as above):", "", "```"]
        lines += [" ".join(f"{v:5d}" for v in row) for row in m["confusion_matrix"]["rows_true_cols_pred"]]
        lines += ["```"]
    lines += [
        "",
        f"Model throughput during evaluation: {model['throughput_texts_per_s']} texts/s on {model['device']}.",
    ]
    if report.get("entity"):
        lines += entity_markdown(report["entity"])
    return "\n".join(lines) + "\n"
