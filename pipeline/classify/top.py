"""The CPU quality recipe: train the top blocks on cached activations of the frozen ones (method ``top``).

Fine-tuning every block costs ~6 s per batch of 16 on a 2-core CPU without
native bf16. Training only the top ``train_layers`` blocks (plus the final
norm and both heads) is nearly as good for classification, and the frozen
lower blocks give the same output every epoch: so they run **once** over the
training and validation texts, their output (the input of the first trained
block) is cached, and each epoch runs only the top blocks, forward and
backward. With 4 of 30 blocks trained an epoch costs about 0.4 of one full
forward pass. The top blocks run as a small model of the same architecture fed
``inputs_embeds``; afterwards their weights are copied back into the full
backbone, so inference is the ordinary model.

Selection is on the validation split (mean of sentiment macro-F1 and topic
accuracy); the best epoch's weights are kept. Held-out sets are never read.

Resumable: with a ``work_dir`` (``train`` passes ``.state/runs/<recipe hash>``)
the cached activations are saved once computed, and a checkpoint (weights,
optimiser, schedule, RNG, best epoch) after every epoch; a run interrupted and
started again with the same recipe picks up where it stopped.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time

import numpy as np
import torch
from torch import nn

from pipeline.classify.data import SOURCE_POWER, TaskData, row_weights
from pipeline.classify.headfit import polar_offset
from pipeline.classify.labels import SENTIMENTS, TOPICS
from pipeline.classify.model import DualHeadClassifier
from pipeline.classify.runtime import length_sorted_batches

log = logging.getLogger(__name__)


class _Top(nn.Module):
    """The top blocks + norm of a backbone as a standalone model fed hidden states (``inputs_embeds``)."""

    def __init__(self, backbone: nn.Module, k: int) -> None:
        super().__init__()
        cfg = copy.deepcopy(backbone.config)
        cfg.num_hidden_layers = k
        if getattr(cfg, "layer_types", None):
            cfg.layer_types = cfg.layer_types[-k:]
        self.model = type(backbone)(cfg)
        n = len(backbone.layers)
        for i in range(k):
            self.model.layers[i].load_state_dict(backbone.layers[n - k + i].state_dict())
        self.model.norm.load_state_dict(backbone.norm.state_dict())
        self.model.embed_tokens = None  # never used: inputs are hidden states

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.model(inputs_embeds=hidden, attention_mask=mask).last_hidden_state
        return DualHeadClassifier.pool(out, mask).float()

    def copy_into(self, backbone: nn.Module) -> None:
        n, k = len(backbone.layers), len(self.model.layers)
        for i in range(k):
            backbone.layers[n - k + i].load_state_dict(self.model.layers[i].state_dict())
        backbone.norm.load_state_dict(self.model.norm.state_dict())


@torch.inference_mode()
def cache_lower(backbone: nn.Module, k: int, ids: list[list[int]], pad_id: int, label: str) -> list[torch.Tensor]:
    """Output of the frozen lower blocks for each text (its real tokens only, fp32: bf16 shifts the pooled features), in input order."""
    layers, norm = backbone.layers, backbone.norm
    backbone.layers, backbone.norm = layers[: len(layers) - k], nn.Identity()
    out: list[torch.Tensor | None] = [None] * len(ids)
    t0, done = time.monotonic(), 0
    try:
        for b, (idx, batch, mask) in enumerate(length_sorted_batches(ids, 64, pad_id)):
            dev = next(backbone.parameters()).device
            hidden = backbone(input_ids=batch.to(dev), attention_mask=mask.to(dev)).last_hidden_state.cpu()
            for row, i in enumerate(idx):
                out[i] = hidden[row, : int(mask[row].sum())].clone()
            done += len(idx)
            if b % 20 == 0 or done == len(ids):
                rate = done / max(time.monotonic() - t0, 1e-9)
                log.info(
                    "cache %s: %d/%d texts (%.0f/s, ETA %.0f s)",
                    label,
                    done,
                    len(ids),
                    rate,
                    (len(ids) - done) / max(rate, 1e-9),
                )
    finally:
        backbone.layers, backbone.norm = layers, norm
    return out  # type: ignore[return-value]


def _stack(hs: list[torch.Tensor], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad cached hidden states to the longest: (hidden fp32, mask)."""
    width = max(h.shape[0] for h in hs)
    x = torch.zeros(len(hs), width, hs[0].shape[1])
    mask = torch.zeros(len(hs), width, dtype=torch.long)
    for r, h in enumerate(hs):
        x[r, : h.shape[0]] = h.float()
        mask[r, : h.shape[0]] = 1
    return x.to(device), mask.to(device)


def _batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Length-grouped batches in random order (little padding, no fixed order)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def _logits(top: _Top, head: nn.Linear, cache: list[torch.Tensor], batch_size: int = 128) -> np.ndarray:
    top.eval()
    device = next(top.parameters()).device
    out = np.zeros((len(cache), head.out_features), dtype=np.float32)
    order = sorted(range(len(cache)), key=lambda i: cache[i].shape[0])
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            x, mask = _stack([cache[i] for i in idx], device)
            out[idx] = head(top(x, mask)).float().cpu().numpy()
    return out


def _cached(work_dir, name: str, compute):
    """``compute()`` once per recipe: saved under ``work_dir`` (written to a temp name, then renamed)."""
    if work_dir is None:
        return compute()
    path = work_dir / f"{name}.pt"
    if path.exists():
        log.info("resuming: cached %s from %s", name, path)
        return torch.load(path, weights_only=True)
    value = compute()
    tmp = path.with_suffix(".tmp")
    torch.save(value, tmp)
    tmp.rename(path)
    return value


def _best_for_checkpoint(best):
    """The best epoch's state with its numpy validation logits as tensors, so ``weights_only=True`` can read it."""
    if best is None:
        return None
    score, top_state, head_states, val = best
    return score, top_state, head_states, {t: torch.from_numpy(np.ascontiguousarray(v)) for t, v in val.items()}


def _best_from_checkpoint(saved):
    if saved is None:
        return None
    score, top_state, head_states, val = saved
    return score, top_state, head_states, {t: v.numpy() for t, v in val.items()}


def _weighted_class_weights(labels: list[str], row_w: np.ndarray) -> torch.Tensor:
    """Square-rooted inverse-frequency class weights over source-weighted counts (as train.class_weights)."""
    counts = np.array([max(1e-9, row_w[np.asarray(labels) == n].sum()) for n in SENTIMENTS])
    w = np.sqrt(counts.sum() / (len(SENTIMENTS) * counts))
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def train_top(
    model: DualHeadClassifier, tok, sent: TaskData, topic: TaskData, args, class_weights, device=None, work_dir=None
) -> dict:
    """Train the top ``args.train_layers`` blocks, norm and heads; returns details incl. validation logits."""
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import get_linear_schedule_with_warmup

    k = args.train_layers if args.train_layers > 0 else 4
    device = torch.device(device or "cpu")  # the cache lives in CPU memory; each batch moves to the device
    model.to(device)
    backbone = model.backbone.eval()
    enc = lambda texts: tok(texts, truncation=True, max_length=args.max_length, add_special_tokens=False)["input_ids"]  # noqa: E731
    data = {}
    for task, td in (("sentiment", sent), ("topic", topic)):
        names = SENTIMENTS if task == "sentiment" else TOPICS
        for part in ("train", "val"):
            df = getattr(td, part)
            ids = [x or [tok.pad_token_id] for x in enc(df["text"].tolist())]
            hidden = _cached(
                work_dir,
                f"cache-{task}-{part}",
                lambda ids=ids, task=task, part=part: cache_lower(backbone, k, ids, tok.pad_token_id, f"{task}/{part}"),
            )
            data[task, part] = (hidden, np.array([names.index(y) for y in df["label"]]))
    top = _Top(backbone, k).to(device)
    heads = {"sentiment": model.sentiment_head, "topic": model.topic_head}
    weights = {
        "sentiment": class_weights(sent.train["label"].tolist(), SENTIMENTS).to(device),
        "topic": class_weights(topic.train["label"].tolist(), TOPICS).to(device),
    }
    row_w = {"sentiment": np.ones(len(sent.train)), "topic": np.ones(len(topic.train))}
    power = SOURCE_POWER[args.source_weighting]
    if power:
        row_w["sentiment"] = row_weights(sent.train, class_w=False, source_w=power)
        weights["sentiment"] = _weighted_class_weights(sent.train["label"].tolist(), row_w["sentiment"]).to(device)
    # per-row additions to the sentiment logits in training only: a source's own intercepts, and -30 on neutral
    # for sources that train the direction only
    polar = args.polar_sources()
    src_names = sorted(sent.train["source"].unique()) if "source" in sent.train else []
    src_idx = np.array([src_names.index(x) for x in sent.train["source"]]) if src_names else None
    neutral_mask = torch.zeros(len(sent.train), len(SENTIMENTS), device=device)
    if polar:  # -30 on neutral: those sources train the direction only
        neutral_mask = torch.from_numpy(polar_offset(sent.train["source"], polar)).to(device)
    src_bias = None
    if args.source_intercepts and src_names:
        src_bias = nn.Parameter(torch.zeros(len(src_names), len(SENTIMENTS), device=device))
    rng = random.Random(args.seed)
    steps_per_epoch = sum(math.ceil(len(data[t, "train"][0]) / args.batch_size) for t in heads)
    total = max(1, int(steps_per_epoch * args.epochs))
    optim = torch.optim.AdamW(
        [
            {"params": top.parameters(), "lr": args.learning_rate, "weight_decay": 0.01},
            {
                "params": [p for h in heads.values() for p in h.parameters()]
                + ([src_bias] if src_bias is not None else []),
                "lr": args.head_learning_rate,
                "weight_decay": 0.0,
            },
        ]
    )
    sched = get_linear_schedule_with_warmup(optim, int(0.06 * total), total)
    dropout = nn.Dropout(0.1)
    best, history, step, t0, start_epoch = None, [], 0, time.monotonic(), 0
    ckpt = work_dir / "checkpoint.pt" if work_dir is not None else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, weights_only=True)  # tensors and plain containers only: nothing is unpickled
        top.load_state_dict(state["top"])
        for t, h in heads.items():
            h.load_state_dict(state["heads"][t])
        optim.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        history, step, start_epoch = state["history"], state["step"], state["epoch"]
        if src_bias is not None and state.get("src_bias") is not None:
            src_bias.data.copy_(state["src_bias"])
        best = _best_from_checkpoint(state["best"])
        log.info("resuming from %s after epoch %d (step %d)", ckpt, start_epoch, step)
    for epoch in range(start_epoch, math.ceil(args.epochs)):
        plan = [
            (t, b) for t in heads for b in _batches([h.shape[0] for h in data[t, "train"][0]], args.batch_size, rng)
        ]
        rng.shuffle(plan)
        top.train()
        running = 0.0
        for n, (task, idx) in enumerate(plan):
            if step >= total:
                break
            cache, y = data[task, "train"]
            x, mask = _stack([cache[i] for i in idx], device)
            logits = heads[task](dropout(top(x, mask)))
            if task == "sentiment":
                logits = logits + neutral_mask[idx]
                if src_bias is not None:
                    logits = logits + src_bias[torch.tensor(src_idx[idx], device=device)]
            target = torch.tensor(y[idx], device=device)
            rw = torch.tensor(row_w[task][idx], dtype=torch.float32, device=device) * weights[task][target]
            loss = (nn.functional.cross_entropy(logits, target, reduction="none") * rw).sum() / rw.sum()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                list(top.parameters()) + [p for h in heads.values() for p in h.parameters()], 1.0
            )
            optim.step()
            sched.step()
            optim.zero_grad()
            step += 1
            running += float(loss.detach())
            if n % 50 == 0:
                rate = step / max(time.monotonic() - t0, 1e-9)
                log.info(
                    "epoch %d step %d/%d loss %.4f (%.2f steps/s, ETA %.0f min)",
                    epoch + 1,
                    step,
                    total,
                    running / (n + 1),
                    rate,
                    (total - step) / max(rate, 1e-9) / 60,
                )
        val = {t: _logits(top, heads[t], data[t, "val"][0]) for t in heads}
        s_f1 = f1_score(data["sentiment", "val"][1], val["sentiment"].argmax(1), average="macro")
        t_acc = accuracy_score(data["topic", "val"][1], val["topic"].argmax(1))
        score = (s_f1 + t_acc) / 2
        history.append(
            {
                "epoch": epoch + 1,
                "val_sentiment_macro_f1": float(s_f1),
                "val_topic_accuracy": float(t_acc),
                "score": float(score),
                "minutes": round((time.monotonic() - t0) / 60, 1),
            }
        )
        log.info("epoch %d: validation sentiment macro-F1 %.4f, topic accuracy %.4f", epoch + 1, s_f1, t_acc)
        if best is None or score > best[0] or args.select == "last":
            best = (
                score,
                copy.deepcopy(top.state_dict()),
                {t: copy.deepcopy(h.state_dict()) for t, h in heads.items()},
                val,
            )
        if ckpt is not None:  # resumable after every epoch: written to a temp name, then renamed
            tmp = ckpt.with_suffix(".tmp")
            torch.save(
                {
                    "top": top.state_dict(),
                    "heads": {t: h.state_dict() for t, h in heads.items()},
                    "optim": optim.state_dict(),
                    "sched": sched.state_dict(),
                    "rng": rng.getstate(),
                    "torch_rng": torch.get_rng_state(),
                    "best": _best_for_checkpoint(best),
                    "src_bias": src_bias.detach() if src_bias is not None else None,
                    "history": history,
                    "step": step,
                    "epoch": epoch + 1,
                },
                tmp,
            )
            tmp.rename(ckpt)
    _, top_state, head_states, val = best
    top.load_state_dict(top_state)
    for t, h in heads.items():
        h.load_state_dict(head_states[t])
    top.copy_into(backbone)
    return {
        "trained_layers": k,
        "history": history,
        "steps": step,
        "train_minutes": round((time.monotonic() - t0) / 60, 1),
        "trainable_params": sum(p.numel() for p in top.parameters())
        + sum(p.numel() for h in heads.values() for p in h.parameters()),
        "val_logits": {t: (val[t], data[t, "val"][1]) for t in heads},
    }
