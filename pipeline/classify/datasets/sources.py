"""Labeled-data registry (``data/sources.yaml``): which sets train the model and which only judge it.

Each source declares its task, role (``train`` or ``heldout``), file, label
mapping (by name), licence and provenance note. Training picks sources by
name (``train --data tfns_sentiment,sentfin,...``); held-out sources are read
by evaluation only. Two rules keep the held-out sets honest:

* SEntFiN's fixed test split is a committed list of headline ids
  (``data/splits/sentfin_test_ids.txt``): training reads SEntFiN without
  them, evaluation reads only them; the company-level work uses the same split;
* any training row whose normalised text equals a held-out row is dropped
  before training (counted in the model's metadata).

SEntFiN labels entities, not headlines. A headline takes the label its
entities agree on; neutral entities defer to a polar one (``{neutral,
positive}`` is positive: the headline says something good about someone);
a headline with both a positive and a negative entity is a conflict and is
left out of headline-level data (the entity-level work uses it).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import config, safeyaml
from pipeline.classify.model.labels import SENTIMENTS, TFNS_TOPIC, TOPICS
from pipeline.classify.model.text import prepare_text

DATA_ROOT = config.REPO_ROOT / "data"
REGISTRY = DATA_ROOT / "sources.yaml"
TASKS = ("sentiment", "topic")
_DECISION = re.compile(r"""(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\s*:\s*'(positive|negative|neutral)'""")
_NORM = re.compile(r"[^\w]+")


class SourceError(ValueError):
    """The registry or a source file is unusable; the message names the source."""


@dataclass(frozen=True)
class Source:
    name: str
    task: str
    role: str
    path: Path
    labels: dict
    licence: str
    note: Path
    fmt: str = "csv"
    test_ids: Path | None = None
    default: bool = False
    news: bool = False
    pooled: bool = True  # held-out news: counted in the pooled news figure (the expert split is reported apart)
    label_column: str = "label"
    origins: tuple[str, ...] = ()  # keep only rows whose ``origin`` starts with one of these (one file, many sources)

    def sha256(self) -> str:
        h = hashlib.sha256(self.path.read_bytes())
        if self.test_ids:
            h.update(self.test_ids.read_bytes())
        return h.hexdigest()


@dataclass
class SourceStats:
    rows: int = 0
    dropped_conflicts: int = 0
    dropped_heldout_overlap: int = 0
    extra: dict = field(default_factory=dict)


def registry(path: Path = REGISTRY) -> dict[str, Source]:
    """All declared sources, validated (task, role, files, label names)."""
    return dict(_registry(str(path)))


@lru_cache(maxsize=4)
def _registry(path: str) -> tuple[tuple[str, Source], ...]:
    doc = safeyaml.load_file(path)
    out = []
    for name, entry in (doc or {}).get("sources", {}).items():
        where = f"{path}: {name}"
        if entry.get("task") not in TASKS or entry.get("role") not in ("train", "heldout"):
            raise SourceError(f"{where}: task must be sentiment|topic and role train|heldout")
        if entry["labels"] == "tfns_topic":  # the TFNS file's numeric codes
            labels = TFNS_TOPIC
        elif entry["labels"] == "tfns_topic_names":  # the 20 names written out
            labels = {name: name for name in TOPICS}
        else:
            labels = dict(entry["labels"])
        allowed = SENTIMENTS if entry["task"] == "sentiment" else TOPICS
        if set(labels.values()) - set(allowed):
            raise SourceError(
                f"{where}: labels {sorted(set(labels.values()) - set(allowed))} are not {entry['task']} labels"
            )
        src = Source(
            name=name,
            task=entry["task"],
            role=entry["role"],
            path=DATA_ROOT / entry["path"],
            labels=labels,
            licence=str(entry.get("licence", "")),
            note=DATA_ROOT / entry["note"],
            fmt=entry.get("format", "csv"),
            test_ids=DATA_ROOT / entry["test_ids"] if entry.get("test_ids") else None,
            default=bool(entry.get("default", False)),
            news=bool(entry.get("news", False)),
            pooled=bool(entry.get("pooled", True)),
            label_column=str(entry.get("label_column", "label")),
            origins=tuple(str(o) for o in entry.get("origins") or ()),
        )
        for f in (src.path, src.note) + ((src.test_ids,) if src.test_ids else ()):
            if not f.is_file():
                raise SourceError(f"{where}: {f} is missing")
        out.append((name, src))
    return tuple(out)


def pick(names: str | list[str] | None, task: str) -> list[Source]:
    """Training sources for ``task`` named in ``names`` ('default', a comma list, or a list)."""
    reg = registry()
    if names is None or names == "default" or names == ["default"]:
        chosen = [s for s in reg.values() if s.role == "train" and s.default]
    else:
        wanted = names.split(",") if isinstance(names, str) else list(names)
        unknown = [n for n in wanted if n.strip() not in reg]
        if unknown:
            raise SourceError(f"unknown data source(s) {unknown}; declared: {sorted(reg)}")
        chosen = [reg[n.strip()] for n in wanted]
        heldout = [s.name for s in chosen if s.role != "train"]
        if heldout:
            raise SourceError(f"{heldout} are held-out sets: they never train a model")
    return [s for s in chosen if s.task == task]


def heldout(task: str, news: bool | None = None, pooled: bool | None = None) -> list[Source]:
    return [
        s
        for s in registry().values()
        if s.role == "heldout"
        and s.task == task
        and (news is None or s.news == news)
        and (pooled is None or s.pooled == pooled)
    ]


def headline_label(entity_labels: list[str]) -> str | None:
    """SEntFiN entities -> one headline label; None for a positive/negative conflict."""
    polar = set(entity_labels) - {"neutral"}
    if len(polar) > 1:
        return None
    return polar.pop() if polar else "neutral"


def parse_decisions(text: str) -> list[tuple[str, str]]:
    """SEntFiN's ``{entity: label}`` strings (not always valid Python: apostrophes in names)."""
    return [(a or b, lab) for a, b, lab in _DECISION.findall(text)]


def norm(text: str) -> str:
    """Text key for overlap checks: case, punctuation and spacing removed."""
    return _NORM.sub(" ", str(text).casefold()).strip()


def load(src: Source, stats: SourceStats | None = None) -> pd.DataFrame:
    """``id``, ``text``, ``label`` rows of one source (a SEntFiN source honours its test split)."""
    stats = stats if stats is not None else SourceStats()
    if src.fmt == "sentfin":
        df = pd.read_csv(src.path)
        ids = set(int(x) for x in src.test_ids.read_text().split()) if src.test_ids else set()
        keep = df["S No."].isin(ids) if src.role == "heldout" else ~df["S No."].isin(ids)
        df = df[keep]
        labels = [headline_label([lab for _, lab in parse_decisions(d)]) for d in df["Decisions"]]
        out = pd.DataFrame({"id": df["S No."].astype(str).values, "text": df["Title"].values, "label": labels})
        stats.dropped_conflicts = int(out["label"].isna().sum())
        out = out.dropna(subset=["label"])
    else:
        df = pd.read_csv(src.path)
        if src.label_column not in df:
            raise SourceError(f"{src.name}: {src.path.name} has no {src.label_column!r} column")
        rows = np.arange(len(df))  # ids are row numbers in the file: a split file names them
        keep = np.ones(len(df), dtype=bool)
        if src.origins:
            keep &= df["origin"].astype(str).str.startswith(src.origins).to_numpy()
        if src.test_ids:
            test = np.isin(rows, [int(x) for x in src.test_ids.read_text().split()])
            keep &= test if src.role == "heldout" else ~test
        df, rows = df[keep], rows[keep]
        unknown = set(df[src.label_column].unique()) - set(src.labels)
        if unknown:
            raise SourceError(f"{src.name}: labels {sorted(map(str, unknown))} are not in its label map")
        out = pd.DataFrame(
            {
                "id": [f"{src.name}:{i}" for i in rows],
                "text": df["text"].to_numpy(),
                "label": df[src.label_column].map(src.labels).to_numpy(),
            }
        )
    out["text"] = out["text"].astype(str).map(prepare_text)
    out = out[out["text"].str.len() > 0].reset_index(drop=True)
    stats.rows = len(out)
    return out


@lru_cache(maxsize=1)
def heldout_keys() -> frozenset[str]:
    """Normalised texts of every held-out row (both tasks): training never sees them."""
    keys: set[str] = set()
    for src in registry().values():
        if src.role == "heldout":
            keys |= set(load(src)["text"].map(norm))
    return frozenset(keys)


def training_frame(srcs: list[Source]) -> tuple[pd.DataFrame, dict]:
    """Rows of the chosen training sources (with a ``source`` column), held-out overlaps removed; and a manifest."""
    frames, manifest = [], {}
    banned = heldout_keys()
    for src in srcs:
        if src.role != "train":
            raise SourceError(f"{src.name} is a held-out set")
        stats = SourceStats()
        df = load(src, stats)
        overlap = df["text"].map(norm).isin(banned)
        stats.dropped_heldout_overlap = int(overlap.sum())
        df = df[~overlap].assign(source=src.name)
        stats.rows = len(df)
        frames.append(df)
        manifest[src.name] = {
            "rows": stats.rows,
            "sha256": src.sha256(),
            "file": str(src.path.relative_to(DATA_ROOT)),
            "licence": src.licence,
            "dropped_conflicts": stats.dropped_conflicts,
            "dropped_heldout_overlap": stats.dropped_heldout_overlap,
            "labels": df["label"].value_counts().sort_index().to_dict(),
        }
    if not frames:
        return pd.DataFrame(columns=["id", "text", "label", "source"]), manifest
    return pd.concat(frames, ignore_index=True), manifest


def write_sentfin_split(fraction: float = 0.15, seed: int = 20261124) -> Path:
    """Generate the committed SEntFiN test split (run once; re-running gives the same ids)."""
    from sklearn.model_selection import train_test_split

    src = registry()["sentfin"]
    df = pd.read_csv(src.path)
    # stratify on the headline label where there is one; conflicts form their own stratum
    strata = [headline_label([lab for _, lab in parse_decisions(d)]) or "conflict" for d in df["Decisions"]]
    _, test = train_test_split(df["S No."], test_size=fraction, random_state=seed, stratify=strata)
    return _write_ids(src, test)


def write_expert_split(fraction: float = 0.10, seed: int = 20261206) -> Path:
    """Generate the committed test split of the expert-labelled news (run once; re-running gives the same rows).

    Row numbers of ``news_expert.csv``, stratified by origin family (2023 archive, 2023 summaries, 2018-19
    headlines, their summaries, re-annotated sentences) and sentiment, so each leave-one-origin-out fold
    and the held-out figure see every family in proportion.
    """
    from sklearn.model_selection import train_test_split

    src = registry()["expert_test"]
    df = pd.read_csv(src.path)
    strata = df["origin"].astype(str).str.split(":").str[0] + "/" + df["sentiment"].astype(str)
    _, test = train_test_split(np.arange(len(df)), test_size=fraction, random_state=seed, stratify=strata)
    return _write_ids(src, test)


def _write_ids(src: Source, ids) -> Path:
    """A source's committed test split: one id per line, sorted."""
    src.test_ids.parent.mkdir(parents=True, exist_ok=True)
    src.test_ids.write_text("\n".join(str(i) for i in sorted(ids)) + "\n")
    return src.test_ids
