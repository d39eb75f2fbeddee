"""Training and held-out data: loading, text preparation, splits, hashing."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline import config
from pipeline.classify.labels import TFNS_SENTIMENT, TFNS_TOPIC

DATA_DIR = config.REPO_ROOT / "data" / "labeled"
SENT_DIR = DATA_DIR / "twitter_financial_news_sentiment"
TOPIC_DIR = DATA_DIR / "twitter_financial_news_topic"

_URL = re.compile(r"https?://\S+")
_WS = re.compile(r"\s+")


def prepare_text(title: str, summary: str | None = None, max_chars: int = 600) -> str:
    """What the model reads: the title first (it survives truncation), then the summary.

    Links are dropped (tweets end in t.co links, headlines carry none).
    """
    text = _URL.sub(" ", title or "")
    if summary:
        extra = _URL.sub(" ", summary)
        if extra.strip() and extra.strip().lower() not in text.lower():
            text = f"{text.rstrip(' .')}. {extra}"
    return _WS.sub(" ", text).strip()[:max_chars]


def _load(path: Path, names: dict[int, str]) -> pd.DataFrame:
    df = pd.read_csv(path)
    unknown = set(df["label"].unique()) - set(names)
    if unknown:
        raise ValueError(f"{path}: labels {sorted(unknown)} not in the label map")
    return pd.DataFrame({"text": df["text"].map(prepare_text), "label": df["label"].map(names)})


@dataclass
class TaskData:
    train: pd.DataFrame  # text, label (names)
    val: pd.DataFrame  # carved from the training file, for model selection
    test: pd.DataFrame  # the held-out *_valid.csv file: reporting only


def split(df: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified split, deterministic for a seed."""
    from sklearn.model_selection import train_test_split

    tr, va = train_test_split(df, test_size=val_fraction, random_state=seed, stratify=df["label"])
    return tr.reset_index(drop=True), va.reset_index(drop=True)


def load_task(task: str, val_fraction: float = 0.1, seed: int = 42, limit: int | None = None) -> TaskData:
    """``task`` is ``sentiment`` or ``topic``; ``limit`` subsamples training rows (stratified)."""
    d, names, prefix = (SENT_DIR, TFNS_SENTIMENT, "sent") if task == "sentiment" else (TOPIC_DIR, TFNS_TOPIC, "topic")
    full = _load(d / f"{prefix}_train.csv", names)
    test = _load(d / f"{prefix}_valid.csv", names)
    train, val = split(full, val_fraction, seed)
    if limit and limit < len(train):
        train = split(train, 1 - limit / len(train), seed)[0]
    return TaskData(train, val, test)


def data_hash() -> str:
    """sha256 over the training files (held-out files excluded), recorded with each model."""
    h = hashlib.sha256()
    for path in (SENT_DIR / "sent_train.csv", TOPIC_DIR / "topic_train.csv"):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()
