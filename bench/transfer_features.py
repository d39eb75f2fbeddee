"""Frozen-backbone features for the leave-one-source-out search (``bench.transfer``), computed once and cached.

Two passes of the base model over every labeled sentiment text (training and held-out sources alike; the
search decides per fold which rows train and which are scored):

* ``mean``: the final hidden states mean-pooled over real tokens, as the shipped model's heads read them;
* ``prompt``: the text inside a short instruction ("... positive, negative or neutral for investors?
  Answer:"), with the last token's final hidden state and the language model's own logits for the three
  label words at that position (SmolLM2 ties its output head to the token embeddings).

Features are cached under ``<state>/cache/transfer/<key>.npz`` keyed by the base model, the texts and this
file's recipe, so re-running the search costs seconds.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np

from pipeline import config

log = logging.getLogger(__name__)

PROMPT = "News: {text}\nIs this news positive, negative or neutral for investors? Answer:"
LABEL_WORDS = {"negative": " negative", "neutral": " neutral", "positive": " positive"}
RECIPE = "v1:mean+prompt-last+labelwords;max_length=128;bf16-autocast-if-native"


def cache_path(texts: list[str], base: str | None, model_dir: str | None = None) -> Path:
    h = hashlib.sha256(RECIPE.encode())
    h.update(str(base or "smollm2").encode())
    if model_dir:
        h.update(f"model:{Path(model_dir).resolve()}".encode())
    for t in texts:
        h.update(t.encode("utf-8", "replace") + b"\0")
    return config.state_dir() / "cache" / "transfer" / f"{h.hexdigest()[:16]}.npz"


def compute(
    texts: list[str], base: str | None = None, batch_size: int = 64, max_length: int = 128, model_dir: str | None = None
) -> dict:
    """``{"mean": (n, h), "last": (n, h), "words": (n, 3)}`` for ``texts`` (cached).

    With ``model_dir`` (a trained finsent model) the features are that model's backbone's, with ``own``: its
    own sentiment head's logits; there is no prompt pass (``last`` and ``words`` are absent).
    """
    path = cache_path(texts, base, model_dir)
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    import torch

    from pipeline.classify.model import base as base_model
    from pipeline.classify.model.architecture import DualHeadClassifier
    from pipeline.classify.model.runtime import cpu_bf16_ok, length_sorted_batches

    torch.manual_seed(0)
    head = None
    if model_dir:
        from pipeline.classify.model import modeldir

        model, _ = modeldir.load(Path(model_dir))
        backbone, tok, head = model.backbone, modeldir.load_tokenizer(Path(model_dir)), model.sentiment_head
    else:
        backbone, tok, _ = base_model.load(base)
    backbone.eval()
    bf16 = cpu_bf16_ok()
    emb = backbone.get_input_embeddings().weight
    word_ids = [tok(w, add_special_tokens=False)["input_ids"][0] for w in LABEL_WORDS.values()]
    hidden = backbone.config.hidden_size
    out = {"mean": np.zeros((len(texts), hidden), np.float32)}
    if head is None:
        out["last"] = np.zeros((len(texts), hidden), np.float32)
        out["words"] = np.zeros((len(texts), len(word_ids)), np.float32)
    else:
        out["own"] = np.zeros((len(texts), head.out_features), np.float32)
    plain = tok(texts, truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"]
    prompted = [tok(PROMPT.format(text=tok.decode(ids)), add_special_tokens=False)["input_ids"] for ids in plain]
    t0 = time.monotonic()
    passes = [("mean", plain)] + ([("prompt", prompted)] if head is None else [])
    for name, ids_list in passes:
        done = 0
        with torch.inference_mode():
            for b, (idx, ids, mask) in enumerate(length_sorted_batches(ids_list, batch_size, tok.pad_token_id)):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    h = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
                if name == "mean":
                    pooled = DualHeadClassifier.pool(h, mask).float()
                    out["mean"][idx] = pooled.numpy()
                    if head is not None:
                        out["own"][idx] = head(pooled).numpy()
                else:
                    last = h[torch.arange(len(idx)), mask.sum(1) - 1].float()
                    out["last"][idx] = last.numpy()
                    out["words"][idx] = (last @ emb[word_ids].float().T).numpy()
                done += len(idx)
                if b % 20 == 0:
                    rate = done / max(time.monotonic() - t0, 1e-9)
                    log.info("features %s: %d/%d (%.0f texts/s)", name, done, len(texts), rate)
        t0 = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.rename(path)
    return out
