"""Held-out evaluation with baselines measured in the same run (``python -m pipeline evaluate``).

Reports, for both tasks on the held-out ``*_valid.csv`` sets: per-class
classification report, macro-F1, accuracy and confusion matrix, for the
model, a TF-IDF + logistic regression trained on the same training split,
and (sentiment) the VADER lexicon. Written beside the model as
``report.json`` and ``report.md``; the summary is copied into the model's
metadata for the registry.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipeline.classify import modeldir
from pipeline.classify.data import load_task
from pipeline.classify.labels import SENTIMENTS, TOPICS
from pipeline.classify.predict import Classifier

log = logging.getLogger(__name__)


def task_metrics(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

    return {
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


def tfidf_lr(train_texts: list[str], train_labels: list[str], val_texts: list[str], val_labels: list[str], metric: str):
    """TF-IDF + logistic regression; C chosen on the same validation split the model used."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline

    best = None
    for c in (1.0, 3.0, 10.0):
        pipe = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
            LogisticRegression(C=c, max_iter=3000, class_weight="balanced"),
        )
        pipe.fit(train_texts, train_labels)
        pred = pipe.predict(val_texts)
        score = (
            f1_score(val_labels, pred, average="macro") if metric == "macro_f1" else accuracy_score(val_labels, pred)
        )
        if best is None or score > best[0]:
            best = (score, pipe)
    return best[1]


def vader_labels(texts: list[str]) -> list[str]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    sia = SentimentIntensityAnalyzer()
    out = []
    for t in texts:
        c = sia.polarity_scores(t)["compound"]
        out.append("positive" if c >= 0.05 else "negative" if c <= -0.05 else "neutral")
    return out


def evaluate(model_dir: str | Path, batch_size: int = 64, baselines: bool = True, device: str | None = None) -> dict:
    model_dir = Path(model_dir)
    meta = modeldir.read_meta(model_dir)
    tr = meta["training"]
    sent = load_task("sentiment", tr["val_fraction"], tr["seed"], tr.get("limit_per_task"))
    topic = load_task("topic", tr["val_fraction"], tr["seed"], tr.get("limit_per_task"))
    clf = Classifier.load(model_dir, device=device)
    report: dict = {
        "version": meta["version"],
        "method": meta["method"],
        "base_model": meta["base_model"],
        "held_out": {"sentiment": "sent_valid.csv", "topic": "topic_valid.csv"},
        "systems": {},
    }
    t0 = time.monotonic()
    s_pred = clf.predict(sent.test["text"].tolist(), batch_size, progress=True)
    t_pred = clf.predict(topic.test["text"].tolist(), batch_size, progress=True)
    elapsed = time.monotonic() - t0
    n = len(sent.test) + len(topic.test)
    report["systems"]["model"] = {
        "sentiment": task_metrics(sent.test["label"].tolist(), s_pred.sentiment, SENTIMENTS),
        "topic": task_metrics(topic.test["label"].tolist(), t_pred.topic, TOPICS),
        "throughput_texts_per_s": round(n / elapsed, 1),
        "device": str(clf.device),
    }
    if baselines:
        t1 = time.monotonic()
        s_lr = tfidf_lr(
            sent.train["text"].tolist(),
            sent.train["label"].tolist(),
            sent.val["text"].tolist(),
            sent.val["label"].tolist(),
            "macro_f1",
        )
        t_lr = tfidf_lr(
            topic.train["text"].tolist(),
            topic.train["label"].tolist(),
            topic.val["text"].tolist(),
            topic.val["label"].tolist(),
            "accuracy",
        )
        report["systems"]["tfidf_lr"] = {
            "sentiment": task_metrics(sent.test["label"].tolist(), list(s_lr.predict(sent.test["text"])), SENTIMENTS),
            "topic": task_metrics(topic.test["label"].tolist(), list(t_lr.predict(topic.test["text"])), TOPICS),
            "fit_seconds": round(time.monotonic() - t1, 1),
        }
        report["systems"]["vader"] = {
            "sentiment": task_metrics(
                sent.test["label"].tolist(), vader_labels(sent.test["text"].tolist()), SENTIMENTS
            ),
        }
    summary = {
        "sentiment": {
            k: report["systems"]["model"]["sentiment"][k] for k in ("macro_f1", "accuracy", "weighted_f1", "n")
        },
        "topic": {k: report["systems"]["model"]["topic"][k] for k in ("macro_f1", "accuracy", "weighted_f1", "n")},
    }
    report["summary"] = summary
    modeldir.write_report(model_dir, report, markdown(report))
    meta["metrics"] = summary
    modeldir.write_meta(model_dir, meta)
    log.info(
        "held-out: sentiment macro-F1 %.4f acc %.4f; topic acc %.4f macro-F1 %.4f",
        summary["sentiment"]["macro_f1"],
        summary["sentiment"]["accuracy"],
        summary["topic"]["accuracy"],
        summary["topic"]["macro_f1"],
    )
    return report


def markdown(report: dict) -> str:
    lines = [
        f"# Evaluation of {report['version']}",
        "",
        f"Method: `{report['method']}`; base model: {report['base_model']}.",
        "Held-out sets: `sent_valid.csv` (sentiment), `topic_valid.csv` (topic); never used in training.",
        "",
        "| system | sentiment macro-F1 | sentiment accuracy | topic accuracy | topic macro-F1 |",
        "|---|---|---|---|---|",
    ]
    for name, sysm in report["systems"].items():
        s, t = sysm.get("sentiment"), sysm.get("topic")
        lines.append(
            f"| {name} | {s['macro_f1']:.4f} | {s['accuracy']:.4f} | {t['accuracy']:.4f} | {t['macro_f1']:.4f} |"
            if t
            else f"| {name} | {s['macro_f1']:.4f} | {s['accuracy']:.4f} | - | - |"
        )
    model = report["systems"]["model"]
    for task in ("sentiment", "topic"):
        m = model[task]
        lines += [
            "",
            f"## Model, {task}: per-class report",
            "",
            "| class | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        for label in m["confusion_matrix"]["labels"]:
            r = m["report"][label]
            cell = label.replace("|", "\\|")  # topic names such as "Fed | Central Banks" would split the row
            lines.append(
                f"| {cell} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1-score']:.3f} | {int(r['support'])} |"
            )
        lines += ["", f"Confusion matrix ({task}; rows = true, columns = predicted, order as above):", "", "```"]
        lines += [" ".join(f"{v:5d}" for v in row) for row in m["confusion_matrix"]["rows_true_cols_pred"]]
        lines += ["```"]
    lines += [
        "",
        f"Model throughput during evaluation: {model['throughput_texts_per_s']} texts/s on {model['device']}.",
    ]
    return "\n".join(lines) + "\n"
