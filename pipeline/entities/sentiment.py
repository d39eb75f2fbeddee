"""Entity-targeted sentiment: one forward pass per story labels every company it names.

The story's final hidden states are already computed for its own label. For
each entity, four pooled vectors are read from them: the entity's own tokens,
its *clause* (from the entity up to the next entity mention or the end: in a
left-to-right model those positions have read the entity and what is said of
it), the clause's last token, and the whole story. A linear head on the four
(standardised) labels the pair. It is trained on SEntFiN's per-entity labels
only (the committed headline split; ``python -m pipeline entities train-head``)
and stored beside the model as ``entity_head.safetensors``.

A pair whose entity does not occur in the text is still scored (``found``
false): its entity and clause vectors fall back to the whole story's.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pipeline.classify.model.modeldir import ModelDirError
from pipeline.classify.model.predict import Classifier
from pipeline.classify.model.runtime import length_sorted_batches

log = logging.getLogger(__name__)
HEAD_FILE = "entity_head.safetensors"
SENTIMENTS = ("negative", "neutral", "positive")
FEATURES = ("entity_tokens", "clause_mean", "clause_last", "story_mean")


class NoEntityHead(ModelDirError):
    """The model directory has no entity head (train one with ``entities train-head``)."""


@dataclass(frozen=True)
class Pair:
    """One (text, entity) question: where the entity is, if it is there at all."""

    text: str
    start: int = -1  # character offsets of the mention in ``text``; -1 = not found
    end: int = -1

    @property
    def found(self) -> bool:
        return self.start >= 0


def locate(text: str, entity: str) -> tuple[int, int]:
    """First whole-word, case-insensitive occurrence of ``entity`` in ``text`` (cashtag allowed); (-1, -1) if none."""
    ent = entity.strip().lstrip("$")
    if not ent:
        return -1, -1
    m = re.search(r"(?<![0-9A-Za-z])\$?" + re.escape(ent) + r"(?![0-9A-Za-z])", text, re.IGNORECASE)
    return (m.start(), m.end()) if m else (-1, -1)


class EntityHead(torch.nn.Module):
    """Standardise, one linear layer, then a product of experts with the story's own sentiment head.

    ``story_weight`` (chosen on validation) says how much the story's label
    counts: the entity head alone reads who the clause is about, the story
    head was trained on far more (and more varied) news; their log-probabilities
    are added.
    """

    def __init__(self, dim: int, n_classes: int = 3) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("story_weight", torch.zeros(()))
        self.linear = torch.nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor, story_logits: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.log_softmax(self.linear((x - self.mean) / self.scale), -1)
        if story_logits is not None:
            out = out + self.story_weight * torch.log_softmax(story_logits, -1)
        return out

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / HEAD_FILE
        save_file({k: v.detach().float().contiguous() for k, v in self.state_dict().items()}, str(path))
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> EntityHead:
        path = Path(model_dir) / HEAD_FILE
        if not path.is_file():
            raise NoEntityHead(f"{model_dir} has no {HEAD_FILE}: run `python -m pipeline entities train-head`")
        state = load_file(str(path))
        head = cls(state["mean"].shape[0], state["linear.weight"].shape[0])
        head.load_state_dict(state, strict=True)
        return head.eval()


def _token_range(offsets: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    idx = [i for i, (a, b) in enumerate(offsets) if b > start and a < end]
    return (idx[0], idx[-1] + 1) if idx else None


def pair_features(hidden: torch.Tensor, offsets, spans: list[tuple[int, int]]) -> torch.Tensor:
    """Features of each span of one text; ``hidden`` is (tokens, dim) of that text, unpadded."""
    n = hidden.shape[0]
    story = hidden.mean(0)
    ranges = [_token_range(offsets, s, e) if s >= 0 else None for s, e in spans]
    starts = sorted({r[0] for r in ranges if r})
    rows = []
    for r in ranges:
        if r is None:
            rows.append(torch.cat([story, story, hidden[n - 1], story]))
            continue
        nxt = next((s for s in starts if s > r[0]), n)
        clause_end = max(nxt, r[1])
        rows.append(
            torch.cat([hidden[r[0] : r[1]].mean(0), hidden[r[0] : clause_end].mean(0), hidden[clause_end - 1], story])
        )
    return torch.stack(rows) if rows else hidden.new_zeros((0, 4 * hidden.shape[1]))


@torch.inference_mode()
def features(
    clf: Classifier,
    texts: Sequence[str],
    spans: Sequence[list[tuple[int, int]]],
    batch_size: int = 32,
    progress: bool = False,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per text: (pairs, 4*dim) features of its spans; and the story-level sentiment logits from the same pass."""
    enc = clf.tokenizer(
        list(texts), truncation=True, max_length=clf.max_length, add_special_tokens=False, return_offsets_mapping=True
    )
    out: list[np.ndarray] = [np.zeros((0, 0), np.float32)] * len(texts)
    story_logits = np.zeros((len(texts), len(SENTIMENTS)), np.float32)
    t0, done = time.monotonic(), 0
    model = clf.model
    for b, (idx, batch, mask) in enumerate(
        length_sorted_batches(enc["input_ids"], batch_size, clf.tokenizer.pad_token_id)
    ):
        batch, mask = batch.to(clf.device), mask.to(clf.device)
        if clf.autocast_dtype is not None:
            with torch.autocast(clf.device.type, dtype=clf.autocast_dtype):
                hidden = model.backbone(input_ids=batch, attention_mask=mask).last_hidden_state
        else:
            hidden = model.backbone(input_ids=batch, attention_mask=mask).last_hidden_state
        hidden = hidden.float()
        story_logits[idx] = model.sentiment_head(model.pool(hidden, mask)).cpu().numpy()
        for row, i in enumerate(idx):
            n = int(mask[row].sum())
            out[i] = pair_features(hidden[row, :n], enc["offset_mapping"][i][:n], spans[i]).cpu().numpy()
        done += len(idx)
        if progress and (b % 20 == 0 or done == len(texts)):
            rate = done / max(time.monotonic() - t0, 1e-9)
            log.info("entity features %d/%d texts (%.0f/s)", done, len(texts), rate)
    return out, story_logits


RULES = ("head", "inherit", "confident", "multi")


def parse_rule(text: str) -> tuple[str, float]:
    """``head`` | ``inherit`` | ``multi`` | ``confident:P`` (the rule in the model's entity_head metadata)."""
    name, _, value = str(text).partition(":")
    if name not in RULES:
        raise ValueError(f"unknown entity rule {text!r} (one of {', '.join(RULES)}; confident takes :P)")
    return name, float(value or 0.7)


def apply_rule(rule: str, threshold: float, head: np.ndarray, inherited: np.ndarray) -> np.ndarray:
    """Per pair of one text: the head's probabilities, or the headline's where the rule says so (pure).

    ``inherit``: always the headline's; ``multi``: the head only when the text names several companies;
    ``confident``: the head only where its top probability reaches ``threshold``.
    """
    if rule == "inherit" or (rule == "multi" and len(head) < 2):
        return inherited
    if rule == "confident":
        keep = head.max(1, keepdims=True) >= threshold
        return np.where(keep, head, inherited)
    return head


class EntityScorer:
    """A classifier with its entity head: ``score`` labels (text, span) pairs, one forward pass per text."""

    def __init__(self, clf: Classifier, head: EntityHead) -> None:
        self.clf, self.head = clf, head.to("cpu")
        info = clf.meta.get("entity_head") or {}
        self.temperature = float(info.get("temperature", 1.0))
        self.rule, self.threshold = parse_rule(info.get("rule", "head"))

    @classmethod
    def load(cls, model_dir: str | Path, device: str | None = None, clf: Classifier | None = None) -> EntityScorer:
        head = EntityHead.load(model_dir)
        return cls(clf or Classifier.load(model_dir, device=device), head)

    @torch.inference_mode()
    def probabilities(self, feats: np.ndarray, story_logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of the pairs of one text (``story_logits``: that text's story logits)."""
        if len(feats) == 0:
            return np.zeros((0, len(SENTIMENTS)), np.float32)
        story = torch.from_numpy(np.asarray(story_logits, np.float32)).expand(len(feats), -1)
        logits = self.head(torch.from_numpy(feats).float(), story) / self.temperature
        head = torch.softmax(logits, -1).numpy()
        inherited = torch.softmax(story / self.clf.temperatures[0], -1).numpy()
        return apply_rule(self.rule, self.threshold, head, inherited)

    def score(self, pairs: Sequence[Pair], batch_size: int = 32) -> list[dict]:
        """Label each pair; pairs on the same text share one forward pass."""
        by_text: dict[str, list[int]] = {}
        for i, p in enumerate(pairs):
            by_text.setdefault(p.text, []).append(i)
        texts = list(by_text)
        spans = [[(pairs[i].start, pairs[i].end) for i in by_text[t]] for t in texts]
        feats, story_logits = features(self.clf, texts, spans, batch_size)
        out: list[dict] = [{}] * len(pairs)
        for t, f, sl in zip(texts, feats, story_logits):
            probs = self.probabilities(f, sl)
            for i, p in zip(by_text[t], probs):
                out[i] = {
                    "sentiment": SENTIMENTS[int(p.argmax())],
                    "p_negative": float(p[0]),
                    "p_neutral": float(p[1]),
                    "p_positive": float(p[2]),
                    "found": pairs[i].found,
                }
        return out
