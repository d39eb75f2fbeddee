"""Company mentions found by reading the headline, not only by looking names up: a small tagger on the
classifier's own hidden states.

The catalogue linker (``link``) is precise but only knows the names it holds; about half the companies that
headlines from many publishers name (private companies, start-ups, subsidiaries, brands, former names) are not
there. The tagger labels each word of a headline B / I / O ("begins", "inside", "outside" a company name) from:

* the hidden state of the word's last token at layer ``LAYER`` of the active model's backbone, and that of the
  next word (a left-to-right model only knows what follows a word one word later: "Apple" in "Apple pie" and
  "Apple shares" differ only there);
* nine shape facts: capitalised, all capitals, first word, has a digit, inside a catalogue form, inside a
  catalogue form an entity owns, inside a mention the linker's rules accepted, and whether the words either
  side are capitalised.

A two-layer perceptron (``MentionHead``) reads them. It is fitted on the expert-labelled companies set's
training split (``data/labeled/news/expert/companies_expert.csv``, every headline whose text hash is not in
the held-out fifth, see ``heldout``) by ``python -m pipeline entities train-detector`` and stored beside the
model as ``mention_head.safetensors``: it belongs to that model's backbone and is refitted with it.

``Finder`` joins the two: every mention the rules accept, then each detected span they did not cover, linked
to the catalogue when a name, alias or ticker of one entity equals it, otherwise kept as an **unlinked company
name** (``entity_id`` empty, and only when the tagger is at least ``UNLINKED_THRESHOLD`` sure) so a surge on a
company the catalogue lacks is still counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pipeline.classify.model.runtime import length_sorted_batches
from pipeline.entities.link import ACRONYMS, Linker, Mention, _fold

log = logging.getLogger(__name__)
HEAD_FILE = "mention_head.safetensors"
LAYER = 16  # of 30: chosen leaving one publisher family out (docs/companies.md#the-mention-detector)
HIDDEN = 256
MEMBERS = 5  # perceptrons averaged (docs/companies.md#companies-the-catalogue-lacks-the-mention-tagger)
THRESHOLD = 0.5  # P(not outside) a word needs to be part of a mention
# ... and a name no catalogue entry confirms needs this much: leaving a publisher family out, the tagger's
# unconfirmed spans under 0.7 were right 24-62 % of the time (docs/companies.md)
UNLINKED_THRESHOLD = 0.7
SHAPES = (
    "capitalised",
    "all_caps",
    "first_word",
    "has_digit",
    "catalogue_form",
    "catalogue_entity",
    "rule_mention",
    "prev_capitalised",
    "next_capitalised",
)
OUTSIDE, BEGIN, INSIDE = 0, 1, 2
_WORD = re.compile(r"[^\W_](?:[\w&.'’\-]*[^\W_])?|&")
_POSSESSIVE = ("'s", "’s")
HELDOUT_FIFTH = 0  # sha1(text) % 5 == this: the held-out fifth of the expert companies set


def heldout(text: str) -> bool:
    """The fixed held-out fifth of the expert companies set (by text, so a headline is never on both sides)."""
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16) % 5 == HELDOUT_FIFTH


def words(text: str) -> list[tuple[int, int]]:
    """Word spans of ``text``; a possessive ``'s`` is left out ("Tesco's" -> "Tesco", as the rubric writes it)."""
    out = []
    for m in _WORD.finditer(text):
        a, b = m.span()
        if b - a > 2 and text[a:b].endswith(_POSSESSIVE):
            b -= 2
        out.append((a, b))
    return out


def shape_features(text: str, spans: Sequence[tuple[int, int]], linker: Linker, rules: Sequence[Mention]) -> np.ndarray:
    """(words, len(SHAPES)) of 0/1: what the catalogue, its rules' ``mentions`` of the text and the text's
    capitals say of each word."""
    raw_hits = [(s, e, bool(forms)) for s, e, forms in linker.scan(_fold(text))]
    rules = [(m.start, m.end) for m in rules]
    caps = [text[a : a + 1].isupper() for a, _ in spans]
    rows = []
    for i, (a, b) in enumerate(spans):
        w = text[a:b]
        rows.append(
            (
                caps[i],
                w.isupper() and len(w) > 1,
                i == 0,
                any(c.isdigit() for c in w),
                any(s < b and a < e for s, e, _ in raw_hits),
                any(s < b and a < e and owned for s, e, owned in raw_hits),
                any(s < b and a < e for s, e in rules),
                i > 0 and caps[i - 1],
                i + 1 < len(spans) and caps[i + 1],
            )
        )
    return np.asarray(rows, dtype=np.float32).reshape(len(spans), len(SHAPES))


def word_features(hidden: np.ndarray, offsets: Sequence[tuple[int, int]], spans, shapes: np.ndarray) -> np.ndarray:
    """(words, 2 * dim + shapes): each word's last-token state, the next word's, and the shape facts. A word the
    tokenizer truncated away gets zeros (and so is almost surely tagged outside)."""
    dim = hidden.shape[1]
    last = np.zeros((len(spans), dim), np.float32)
    for i, (a, b) in enumerate(spans):
        idx = [k for k, (x, y) in enumerate(offsets) if y > a and x < b]
        if idx:
            last[i] = hidden[idx[-1]]
    nxt = np.vstack([last[1:], np.zeros((1, dim), np.float32)])[: len(spans)]
    return np.hstack([last, nxt, 3.0 * shapes])


def bio(spans: Sequence[tuple[int, int]], gold: Sequence[tuple[int, int]]) -> np.ndarray:
    """Word labels from gold character spans: BEGIN on a gold span's first word, INSIDE on the rest."""
    out = np.zeros(len(spans), np.int64)
    for s, e in gold:
        inside = [i for i, (a, b) in enumerate(spans) if a < e and s < b]
        for k, i in enumerate(inside):
            out[i] = BEGIN if k == 0 else INSIDE
    return out


def decode(spans: Sequence[tuple[int, int]], labels: Sequence[int], probs: Sequence[float]) -> list[tuple]:
    """(start, end, confidence) of each run of BEGIN/INSIDE words; a stray INSIDE opens a mention."""
    out: list[list] = []
    open_ = False
    for (a, b), lab, p in zip(spans, labels, probs):
        if lab == BEGIN or (lab == INSIDE and not open_):
            out.append([a, b, p])
            open_ = True
        elif lab == INSIDE:
            out[-1][1] = b
            out[-1][2] = min(out[-1][2], p)
        else:
            open_ = False
    return [tuple(x) for x in out]


class MentionHead(torch.nn.Module):
    """Standardise, then the mean of ``members`` small perceptrons (one hidden layer each, fitted from different
    seeds: a single one's precision swings by several points from seed to seed); three classes (OUTSIDE, BEGIN,
    INSIDE). ``forward`` gives probabilities."""

    def __init__(self, n_in: int, hidden: int = HIDDEN, members: int = MEMBERS) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("scale", torch.ones(n_in))
        self.members = torch.nn.ModuleList(
            torch.nn.Sequential(
                torch.nn.Linear(n_in, hidden), torch.nn.GELU(), torch.nn.Dropout(0.2), torch.nn.Linear(hidden, 3)
            )
            for _ in range(members)
        )

    def logits(self, x: torch.Tensor, member: int) -> torch.Tensor:
        return self.members[member]((x - self.mean) / self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.softmax(self.logits(x, k), -1) for k in range(len(self.members))]).mean(0)


@torch.inference_mode()
def hidden_states(clf, texts: Sequence[str], layer: int = LAYER, batch_size: int = 32, progress: bool = False):
    """Yield (text index, (tokens, dim) float32 states at ``layer``, token offsets) for every text."""
    enc = clf.tokenizer(
        list(texts), truncation=True, max_length=clf.max_length, add_special_tokens=False, return_offsets_mapping=True
    )
    t0, done = time.monotonic(), 0
    for b, (idx, batch, mask) in enumerate(
        length_sorted_batches(enc["input_ids"], batch_size, clf.tokenizer.pad_token_id)
    ):
        batch, mask = batch.to(clf.device), mask.to(clf.device)
        with torch.autocast(clf.device.type, dtype=clf.autocast_dtype, enabled=clf.autocast_dtype is not None):
            out = clf.model.backbone(input_ids=batch, attention_mask=mask, output_hidden_states=True)
        hidden = out.hidden_states[layer].float().cpu().numpy()
        for row, i in enumerate(idx):
            n = int(mask[row].sum())
            yield i, hidden[row, :n], enc["offset_mapping"][i][:n]
        done += len(idx)
        if progress and (b % 20 == 0 or done == len(texts)):
            log.info("mention features %d/%d texts (%.0f/s)", done, len(texts), done / max(time.monotonic() - t0, 1e-9))


def features(
    clf,
    texts: Sequence[str],
    linker: Linker,
    rules: Sequence[Sequence[Mention]],
    layer: int = LAYER,
    progress: bool = False,
):
    """Per text: its word spans and (words, features); ``rules`` are the linker's mentions of each text."""
    out: list = [None] * len(texts)
    for i, hidden, offsets in hidden_states(clf, texts, layer, progress=progress):
        spans = words(texts[i])
        out[i] = (spans, word_features(hidden, offsets, spans, shape_features(texts[i], spans, linker, rules[i])))
    return out


def load_classifier(model_dir: str | Path, device: str | None = None):
    """The model with its torch backbone (the tagger reads its hidden states: never an ONNX-only backend), in
    bf16 where the machine has it."""
    from pipeline.classify.model.predict import Classifier
    from pipeline.classify.model.runtime import cpu_bf16_ok

    bf16 = torch.cuda.is_available() or cpu_bf16_ok()
    return Classifier.load(model_dir, device=device, precision="bf16" if bf16 else "fp32")


@dataclass
class MentionDetector:
    """A loaded tagger and the classifier whose backbone feeds it."""

    clf: object  # pipeline.classify.model.predict.Classifier
    head: MentionHead
    meta: dict

    @classmethod
    def load(cls, model_dir: str | Path, clf=None, device: str | None = None) -> MentionDetector:
        """Raises FileNotFoundError when the model has no tagger (``entities train-detector`` fits one)."""
        path = Path(model_dir) / HEAD_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{model_dir} has no {HEAD_FILE}: fit one with `entities train-detector`")
        tensors = {k: v.float() for k, v in load_file(str(path)).items()}
        meta = json.loads((path.with_suffix(".json")).read_text(encoding="utf-8"))
        head = MentionHead(tensors["mean"].numel(), int(meta.get("hidden", HIDDEN)), int(meta.get("members", 1)))
        head.load_state_dict(tensors)
        return cls(clf or load_classifier(model_dir, device), head.eval(), meta)

    @property
    def tag(self) -> str:
        """Names this tagger in a story's link fingerprint: a new tagger re-links past stories."""
        return str(self.meta.get("sha256", ""))[:12]

    @torch.inference_mode()
    def spans(self, texts: Sequence[str], linker: Linker, rules: Sequence[Sequence[Mention]]) -> list[list[tuple]]:
        """Per text, the (start, end, confidence) of each detected company name (``rules``: the linker's
        mentions of each text, one of the tagger's inputs)."""
        threshold = float(self.meta.get("threshold", THRESHOLD))
        out: list[list[tuple]] = []
        for item in features(self.clf, texts, linker, rules, int(self.meta.get("layer", LAYER))):
            spans, x = item
            if not spans:
                out.append([])
                continue
            p = self.head(torch.from_numpy(x)).numpy()
            labels = np.where(p[:, OUTSIDE] > 1 - threshold, OUTSIDE, np.where(p[:, BEGIN] >= p[:, INSIDE], 1, 2))
            out.append(decode(spans, labels, (1 - p[:, OUTSIDE]).tolist()))
        return out


def layer_for(clf) -> int:
    """LAYER, or the backbone's last layer when it has fewer (a small test model)."""
    return min(LAYER, int(clf.model.backbone.config.num_hidden_layers))


def _worth_keeping(span: str) -> bool:
    """A detected span must look like a name: two letters or more, a capital or a digit, not a bare acronym of
    news ("AI"); "K" (an initial) and "2270-2350" (a price range) are not."""
    letters = sum(c.isalpha() for c in span)
    return letters >= 2 and any(c.isupper() or c.isdigit() for c in span) and span.upper() not in ACRONYMS


class Finder:
    """The rules' mentions, then the tagger's spans the rules did not cover (linked by exact form, else kept
    unlinked). Without a tagger it is the rules alone."""

    def __init__(self, linker: Linker, detector: MentionDetector | None = None) -> None:
        from pipeline.entities.build import short_name
        from pipeline.entities.link import rank_key

        self.linker, self.detector = linker, detector
        self.catalogue = linker.catalogue
        self.unlinked_threshold = float(
            (detector.meta if detector else {}).get("unlinked_threshold", UNLINKED_THRESHOLD)
        )
        # a detected name equal to an entity's name without its legal form ("Twitter" for "Twitter, Inc."), even
        # where the catalogue keeps that form out of the rules (a common word): the tagger has read it as a company
        shorts: dict[str, list[str]] = {}
        for e in self.catalogue.entities.values():
            shorts.setdefault(_fold(short_name(e.name)), []).append(e.id)
        self.short_names = {k: min(v, key=lambda i: rank_key(self.catalogue, i)) for k, v in shorts.items()}

    @property
    def tag(self) -> str:
        return f"detector:{self.detector.tag}" if self.detector else ""

    def find_many(self, texts: Sequence[str]) -> list[list[Mention]]:
        rules = [self.linker.link(t) for t in texts]
        if self.detector is None:
            return rules
        out = []
        for text, found, detected in zip(texts, rules, self.detector.spans(texts, self.linker, rules)):
            extra = []
            for a, b, p in detected:
                span = text[a:b]
                if any(m.start < b and a < m.end for m in found) or not _worth_keeping(span):
                    continue
                eid = self.exact(span)
                if not eid and p < self.unlinked_threshold:
                    continue
                extra.append(Mention(eid, a, b, span, "detected", round(float(p), 3)))
            out.append(sorted(found + extra, key=lambda m: m.start))
        return out

    def exact(self, span: str) -> str:
        """The entity a detected span names exactly (name, alias or ticker, "The" dropped); "" if none."""
        bare = re.sub(r"(?i)^the\s+", "", span)
        for form in dict.fromkeys((span, bare, re.sub(r"(?:'s|’s|(?<=\w{3})s)$", "", bare))):
            forms = self.linker.lookup(form)
            if forms:
                return forms[0].entity_id
            if _fold(form) in self.short_names:
                return self.short_names[_fold(form)]
        return ""


def fit(
    clf,
    texts: Sequence[str],
    gold: Sequence[Sequence[tuple[int, int]]],
    linker: Linker,
    epochs: int = 6,
    seed: int = 0,
    progress: bool = True,
) -> MentionHead:
    """Fit the tagger on (text, gold spans) with AdamW over shuffled words; the backbone stays frozen."""
    feats = features(clf, texts, linker, [linker.link(t) for t in texts], layer_for(clf), progress=progress)
    xs = [f[1] for f in feats if f[0]]
    ys = [bio(f[0], g) for f, g in zip(feats, gold) if f[0]]
    x = torch.from_numpy(np.vstack(xs))
    y = torch.from_numpy(np.concatenate(ys))
    head = MentionHead(x.shape[1])
    head.mean.copy_(x.mean(0))
    head.scale.copy_(x.std(0) + 1e-4)
    head.train()
    for k in range(len(head.members)):
        torch.manual_seed(seed + k)
        opt = torch.optim.AdamW(head.members[k].parameters(), lr=1e-3, weight_decay=0.05)
        for _ in range(epochs):
            perm = torch.randperm(len(y))
            total = 0.0
            for i in range(0, len(perm), 512):
                idx = perm[i : i + 512]
                loss = torch.nn.functional.cross_entropy(head.logits(x[idx], k), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
        log.info(
            "mention tagger member %d/%d: loss %.4f over %d words", k + 1, len(head.members), total / len(y), len(y)
        )
    return head.eval()


def save(head: MentionHead, model_dir: str | Path, meta: dict) -> Path:
    """Write the tagger and its metadata (with the tensors' sha256) beside the model."""
    path = Path(model_dir) / HEAD_FILE
    save_file({k: v.half().contiguous() for k, v in head.state_dict().items()}, str(path))  # half: 3 MB
    meta = {**meta, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path
