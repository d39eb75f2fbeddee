"""Task data for training: sources picked from the registry, validation splits per source, hashing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class TaskData:
    train: pd.DataFrame  # text, label (names)
    val: pd.DataFrame  # carved from the training file, for model selection
    test: pd.DataFrame  # the held-out *_valid.csv file: reporting only
    manifest: dict = field(default_factory=dict)  # source -> rows, sha256, licence, drops


def split(df: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified split, deterministic for a seed."""
    from sklearn.model_selection import train_test_split

    tr, va = train_test_split(df, test_size=val_fraction, random_state=seed, stratify=df["label"])
    return tr.reset_index(drop=True), va.reset_index(drop=True)


def split_by_source(df: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified validation part from each source separately, so every source is represented in selection."""
    parts = [split(g.reset_index(drop=True), val_fraction, seed) for _, g in df.groupby("source", sort=True)]
    return (pd.concat([p[0] for p in parts], ignore_index=True), pd.concat([p[1] for p in parts], ignore_index=True))


def load_task(
    task: str, val_fraction: float = 0.1, seed: int = 42, limit: int | None = None, data: str | None = "default"
) -> TaskData:
    """``task`` is ``sentiment`` or ``topic``; ``data`` names training sources (``data/sources.yaml``).

    Validation is carved from the training sources; ``test`` is the task's Twitter held-out file (the news
    held-out sets are read by evaluation through :mod:`pipeline.classify.datasets.sources`). ``limit`` subsamples
    training rows (stratified). The manifest (sources, rows, sha256) is in ``TaskData.manifest``.
    """
    from pipeline.classify.datasets import sources

    full, manifest = sources.training_frame(sources.pick(data, task))
    if full.empty:
        raise sources.SourceError(f"no training source for the {task} task in {data!r}")
    test = sources.load(next(s for s in sources.heldout(task, news=False)))
    train, val = split_by_source(full, val_fraction, seed)
    if limit and limit < len(train):
        train = split(train, 1 - limit / len(train), seed)[0]
    return TaskData(train, val, test, manifest)


SOURCE_POWER = {"none": 0.0, "sqrt": 0.5, "equal": 1.0}  # --source_weighting -> row_weights' source_w


def row_weights(df: pd.DataFrame, class_w: bool, source_w: float) -> np.ndarray:
    """Per-row loss weights (mean 1): a source of n rows weighs n**(1 - source_w) in all (1 = every source the
    same total, 0.5 = in proportion to sqrt(n), 0 = by its rows), then every class the same total (``class_w``).

    Source weighting keeps the largest source (9,500 tweets) from setting the convention for the news
    sources beside it; ``bench.transfer`` measures it leaving one source out.
    """
    w = np.ones(len(df))
    if source_w and "source" in df:
        w = w / df["source"].map(df["source"].value_counts()).to_numpy().astype(float) ** float(source_w)
    if class_w:
        w = w / pd.Series(w).groupby(df["label"].to_numpy()).transform("sum").to_numpy()
    return w / w.mean()


def data_hash(manifests: list[dict] | None = None) -> str:
    """sha256 over the training sources' files (held-out files excluded), recorded with each model."""
    h = hashlib.sha256()
    for manifest in manifests or []:
        for name in sorted(manifest):
            h.update(name.encode())
            h.update(manifest[name]["sha256"].encode())
    return h.hexdigest()
