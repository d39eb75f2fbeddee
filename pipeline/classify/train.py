"""Fine-tune the dual-head classifier (``python -m pipeline train``).

Recipes, recorded in the model's metadata as ``method`` (``top``, ``adjust``, ``blend`` and ``compress``
are described at their functions; docs/classifier.md says which made the shipped model):

* ``heads`` - the fast path: the backbone stays frozen; mean-pooled features
  feed a logistic regression per task (regularisation chosen on the
  validation split), whose weights become the linear heads. Minutes on CPU.
* ``finetune`` - the quality path: HF Trainer updates the top
  ``train_layers`` blocks (0 = all) and both heads, optionally with LoRA
  adapters (peft), bf16 on CUDA/capable CPUs, class-weighted loss, early
  stopping on the validation split, and an optional time budget.

The held-out ``*_valid.csv`` sets are never used here; evaluation
(``pipeline.classify.evaluate``) reports on them afterwards.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import TrainerCallback

from pipeline import config
from pipeline.classify import base as base_model
from pipeline.classify import modeldir
from pipeline.classify.data import TaskData, data_hash, load_task
from pipeline.classify.labels import SENTIMENTS, TOPICS
from pipeline.classify.model import DualHeadClassifier
from pipeline.classify.runtime import cpu_bf16_ok, length_sorted_batches, pad_batch, pick_device

log = logging.getLogger(__name__)


@dataclass
class TrainArguments:
    """Everything that shapes a model; stored verbatim in its metadata."""

    base_model: str = field(
        default="smollm2", metadata={"help": "smollm2 (packaged GGUF), a local folder, or a cached hub id"}
    )
    init_model: str | None = field(
        default=None,
        metadata={"help": "warm start: continue from this trained finsent model directory (backbone and heads)"},
    )
    method: str = field(
        default="heads",
        metadata={
            "help": "heads (frozen backbone), top (top blocks on cached activations), finetune, adjust (no "
            "training: the init model with its sentiment head's neutral_offset applied, then recalibrated), "
            "blend (the init model's backbone frozen; both heads refitted on --data, the sentiment one blended with its own), or "
            "compress (the init model's weights brought to a rank-compress_rank difference from its base)"
        },
    )
    data: str = field(
        default="default",
        metadata={"help": "training sources from data/sources.yaml, comma-separated (default: those marked default)"},
    )
    train_layers: int = field(default=6, metadata={"help": "finetune: top transformer blocks to update (0 = all)"})
    lora_r: int = field(default=0, metadata={"help": "finetune: LoRA rank on attention/MLP projections (0 = off)"})
    source_weighting: str = field(
        default="none",
        metadata={
            "help": "top, finetune, blend: none | sqrt | equal: a sentiment source of n rows weighs n, sqrt(n) or 1 "
            "in the loss, classes balanced (bench.transfer)"
        },
    )
    relabel: str = field(
        default="none",
        metadata={
            "help": "none | stated_direction: TFNS neutral rows that state a result with its direction take that "
            "label (pipeline/classify/convention.py)"
        },
    )
    polar_only: str = field(
        default="",
        metadata={
            "help": "top, finetune, blend: sources (comma list) whose neutral is not a judgement (sentences picked for "
            "holding a polar expression): their neutral rows are dropped and they train the direction only (neutral out of their softmax)"
        },
    )
    source_intercepts: bool = field(
        default=False,
        metadata={
            "help": "top, blend: each sentiment source learns its own class intercepts in training (its label mix); "
            "inference uses the shared head only"
        },
    )
    select: str = field(
        default="best",
        metadata={
            "help": "top: best (epoch by in-source validation) | last (the recipe was chosen leaving sources out)"
        },
    )
    neutral_offset: float = field(
        default=0.0,
        metadata={
            "help": "adjust, blend: lower the neutral logit by this much (logit adjustment: the training mix's "
            "neutral prior is not a news stream's; chosen leaving sources out, docs/classifier.md)"
        },
    )
    head_blend: float = field(
        default=0.0,
        metadata={
            "help": "blend: the weight (0-1) of a sentiment head refitted on --data's features of the init model "
            "against the init model's own head (one linear head either way; chosen by bench.transfer --blend)"
        },
    )
    compress_rank: int = field(
        default=0,
        metadata={
            "help": "compress: keep the init model's difference from its base model to this rank (truncated SVD of "
            "each weight matrix), so an all-layer fine-tune ships as a compact delta; the topic head is refitted"
        },
    )
    epochs: float = 3.0
    learning_rate: float = 1e-4
    head_learning_rate: float = 1e-3
    batch_size: int = 16
    max_length: int = 64
    val_fraction: float = 0.1
    limit_per_task: int | None = field(default=None, metadata={"help": "subsample each task's training rows"})
    topic_limit: int | None = field(default=None, metadata={"help": "subsample the topic task's training rows only"})
    seed: int = 42
    eval_steps: int = 200
    patience: int = 3
    max_minutes: float | None = field(default=None, metadata={"help": "stop fine-tuning after this long"})
    max_steps: int | None = field(
        default=None,
        metadata={
            "help": "finetune: stop after this many steps (the schedule still spans --epochs); make model replays "
            "a stage that its time budget stopped this way, so the replay does not depend on the machine's speed"
        },
    )
    device: str | None = None
    output_root: str | None = None

    def polar_sources(self) -> list[str]:
        """``--polar_only`` as the list of source names every recipe reads it as."""
        return [x.strip() for x in self.polar_only.split(",") if x.strip()]


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def new_version(method: str) -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{method}"


def load_backbone(args: TrainArguments):
    return base_model.load(args.base_model)


def load_parent(model_dir: Path):
    """A trained model to continue from: CPU training runs in stages of what a session allows."""

    model, meta = modeldir.load(model_dir)
    if meta["labels"] != {"sentiment": SENTIMENTS, "topic": TOPICS}:
        raise ValueError(f"{model_dir}: its label maps differ from this code's; train from the base model instead")
    tok = modeldir.load_tokenizer(model_dir)
    log.info("warm start from model %s (%s)", meta["version"], meta["method"])
    return model.train(), meta, tok


def class_weights(labels: list[str], names: list[str]) -> torch.Tensor:
    """Inverse-frequency weights, square-rooted so rare classes help without dominating."""
    counts = np.array([max(1, labels.count(n)) for n in names], dtype=np.float64)
    w = np.sqrt(counts.sum() / (len(names) * counts))
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def adjust_neutral(model: DualHeadClassifier, args: TrainArguments, parent: dict) -> dict:
    """Lower the sentiment head's neutral bias by ``args.neutral_offset`` (no training).

    Logit adjustment: the model learnt its neutral prior from a mix (half tweets) whose neutral share and
    convention are not those of news from other publishers; on the sources it never saw it calls far too much
    neutral. The offset is one number, chosen on the leave-one-source-out table (``bench.transfer``) and bounded
    by the promotion gate; the temperature is then refitted on validation as for any model.
    """
    with torch.no_grad():
        model.sentiment_head.bias[SENTIMENTS.index("neutral")] -= float(args.neutral_offset)
    log.info("adjusted %s: neutral logit -%.3f", parent["version"], args.neutral_offset)
    return {"neutral_offset": float(args.neutral_offset), "adjusted": parent["version"]}


def blend_heads(
    model: DualHeadClassifier,
    tok,
    sent: TaskData,
    topic: TaskData,
    args: TrainArguments,
    device: torch.device,
    parent: dict,
) -> dict:
    """Refit both heads on the init model's frozen features of every ``--data`` source; blend the sentiment one.

    The own heads learnt the conventions of the sources the backbone was tuned on; the refits, weighted as the
    leave-one-source-out tables chose (class-balanced, ``--source_weighting``, ``--source_intercepts``,
    ``--polar_only``), learn what the news sources beside them say (``bench.distil`` for the expert-labelled
    news, ``bench.transfer --blend`` before it). The sentiment refit is blended with the own head (weight
    ``head_blend``; one linear head either way, so inference costs what it did), then its neutral logit is
    lowered by ``neutral_offset``. The topic head is refitted on the topic sources of ``--data`` (each source
    weighted as ``--source_weighting`` says, classes as they come), replacing the own one.
    """
    from pipeline.classify import headfit
    from pipeline.classify.data import SOURCE_POWER, row_weights

    model.to(device).eval()
    tr = sent.train
    x = extract_features(model, tok, tr["text"].tolist(), args.max_length, device, label="sentiment/train")
    y = np.array([SENTIMENTS.index(v) for v in tr["label"]])
    power = SOURCE_POWER[args.source_weighting]
    w = row_weights(tr, class_w=True, source_w=power)
    polar = args.polar_sources()
    offset = headfit.polar_offset(tr["source"], polar) if polar else None
    groups = pd.factorize(tr["source"])[0] if args.source_intercepts else None
    t0 = time.monotonic()
    refit = headfit.fit_softmax(x, y, w, offset=offset, groups=groups)
    log.info(
        "refitted sentiment head on %d rows of %d sources in %.0f s",
        len(tr),
        tr["source"].nunique(),
        time.monotonic() - t0,
    )
    own = headfit.LinearHead.of(model.sentiment_head)
    headfit.blend(own, refit, args.head_blend, args.neutral_offset).copy_into(model.sentiment_head)
    log.info(
        "blended %s's sentiment head: refit weight %.2f, neutral logit -%.3f",
        parent["version"],
        args.head_blend,
        args.neutral_offset,
    )
    refit_topic_head(model, tok, topic, args, device, power)
    return {
        "head_blend": float(args.head_blend),
        "neutral_offset": float(args.neutral_offset),
        "blended": parent["version"],
        "refit_rows": len(tr),
        "refit_sources": sorted(tr["source"].unique()),
        "topic_head_refit_rows": len(topic.train),
        "topic_refit_sources": sorted(topic.train["source"].unique()),
    }


def refit_topic_head(
    model: DualHeadClassifier, tok, topic: TaskData, args: TrainArguments, device: torch.device, source_w: float = 0.0
) -> None:
    """The topic head refitted by logistic regression on the model's features of every topic training row."""
    from pipeline.classify import headfit
    from pipeline.classify.data import row_weights

    model.to(device).eval()
    x = extract_features(model, tok, topic.train["text"].tolist(), args.max_length, device, label="topic/train")
    y = np.array([TOPICS.index(v) for v in topic.train["label"]])
    w = row_weights(topic.train, class_w=False, source_w=source_w)
    headfit.fit_softmax(x, y, w, classes=len(TOPICS), iters=300).copy_into(model.topic_head)
    log.info("refitted topic head on %d rows of %d sources", len(topic.train), topic.train["source"].nunique())


def compress_backbone(
    model: DualHeadClassifier, tok, topic: TaskData, args: TrainArguments, device: torch.device, parent: dict
) -> dict:
    """Bring an all-layer fine-tune within a compact delta: each weight matrix's difference from the base model
    truncated to rank ``compress_rank`` (SVD), vectors kept exact; then the topic head refitted on the new
    features.

    A fine-tune of every layer changes every weight a little; its difference is not low rank, and whole it is
    the model's full size, which does not ship. The leading singular directions carry most of what it learnt;
    the rest costs held-out accuracy, which the evaluation of this stage measures. The topic head (many classes,
    more sensitive to the shifted features) is refitted by logistic regression on every topic training row
    (``headfit``); the sentiment head is kept (``--method blend`` refits it next).
    """
    from pipeline.classify.lowrank import truncated_svd

    rank = int(args.compress_rank)
    base_backbone, _, _ = base_model.load(training_stages(parent)[0].get("base_model"))
    base_state = base_backbone.state_dict()
    new_state, kept, total, n_matrices = {}, 0.0, 0.0, 0
    t0 = time.monotonic()
    for name, t in model.backbone.state_dict().items():
        diff = t.float() - base_state[name].float()
        split = truncated_svd(diff, rank)  # the same factors the export then finds exactly
        if split is not None:
            diff, kept, total, n_matrices = split[0] @ split[1], kept + split[2], total + split[3], n_matrices + 1
        new_state[name] = (base_state[name].float() + diff).to(t.dtype)
    model.backbone.load_state_dict(new_state)
    share = kept / total if total else 1.0
    log.info(
        "compressed %s: %d matrices to rank %d (%.1f %% of the difference's energy kept) in %.0f s",
        parent["version"],
        n_matrices,
        rank,
        100 * share,
        time.monotonic() - t0,
    )
    refit_topic_head(model, tok, topic, args, device)
    return {
        "compressed": parent["version"],
        "compress_rank": rank,
        "matrices": n_matrices,
        "energy_kept": round(share, 4),
        "topic_head_refit_rows": len(topic.train),
    }


# -- fast path ---------------------------------------------------------------------------
@torch.inference_mode()
def extract_features(
    model: DualHeadClassifier,
    tok,
    texts: list[str],
    max_length: int,
    device: torch.device,
    batch_size: int = 64,
    label: str = "",
) -> np.ndarray:
    enc = tok(texts, truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"]
    feats = np.zeros((len(texts), model.backbone.config.hidden_size), dtype=np.float32)
    use_bf16 = device.type == "cuda" or cpu_bf16_ok()
    t0, done = time.monotonic(), 0
    for b, (idx, ids, mask) in enumerate(length_sorted_batches(enc, batch_size, tok.pad_token_id)):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            feats[idx] = model.features(ids.to(device), mask.to(device)).cpu().numpy()
        done += len(idx)
        if b % 25 == 0:
            log.info(
                "features %s: %d/%d (%.0f texts/s)", label, done, len(texts), done / max(time.monotonic() - t0, 1e-9)
            )
    return feats


def fit_head(
    head: torch.nn.Linear,
    x_tr: np.ndarray,
    y_tr: list[str],
    x_va: np.ndarray,
    y_va: list[str],
    names: list[str],
    metric: str,
) -> dict:
    """Logistic regression on frozen features; C picked on validation; folded into ``head``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_tr)
    xs_tr, xs_va = scaler.transform(x_tr), scaler.transform(x_va)
    best = None
    for c in (0.01, 0.03, 0.1, 0.3):
        clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
        clf.fit(xs_tr, y_tr)
        pred = clf.predict(xs_va)
        score = f1_score(y_va, pred, average="macro") if metric == "macro_f1" else accuracy_score(y_va, pred)
        log.info("  C=%g validation %s=%.4f", c, metric, score)
        if best is None or score > best[0]:
            best = (score, c, clf)
    score, c, clf = best
    # Fold standardisation into the linear layer: w' = w / sigma, b' = b - w' . mu
    # Classes absent from a small training sample get a row that is never chosen.
    classes = list(clf.classes_)
    coef = clf.coef_ if len(classes) > 2 else np.vstack([-clf.coef_[0], clf.coef_[0]]) / 2
    icpt = clf.intercept_ if len(classes) > 2 else np.array([-clf.intercept_[0], clf.intercept_[0]]) / 2
    w = np.zeros((len(names), x_tr.shape[1]))
    b = np.full(len(names), -30.0)
    for row, name in enumerate(names):
        if name in classes:
            w[row] = coef[classes.index(name)] / scaler.scale_
            b[row] = icpt[classes.index(name)] - w[row] @ scaler.mean_
    with torch.no_grad():
        head.weight.copy_(torch.tensor(w, dtype=torch.float32))
        head.bias.copy_(torch.tensor(b, dtype=torch.float32))
    return {"C": c, f"val_{metric}": float(score)}


def train_heads(
    model: DualHeadClassifier, tok, sent: TaskData, topic: TaskData, args: TrainArguments, device: torch.device
) -> dict:
    model.to(device).eval()
    feats = {}
    for name, task in (("sentiment", sent), ("topic", topic)):
        feats[name] = (
            extract_features(model, tok, task.train["text"].tolist(), args.max_length, device, label=f"{name}/train"),
            extract_features(model, tok, task.val["text"].tolist(), args.max_length, device, label=f"{name}/val"),
        )
    out = {}
    for name, td, head, names, metric in (
        ("sentiment", sent, model.sentiment_head, SENTIMENTS, "macro_f1"),
        ("topic", topic, model.topic_head, TOPICS, "accuracy"),
    ):
        log.info("fitting %s head", name)
        x_tr, x_va = feats[name]
        out[name] = fit_head(head, x_tr, td.train["label"].tolist(), x_va, td.val["label"].tolist(), names, metric)
    return out


# -- quality path --------------------------------------------------------------------------
class _Rows(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def encode(
    tok,
    sent_df,
    topic_df,
    max_length: int,
    sent_weights: np.ndarray | None = None,
    sent_offsets: np.ndarray | None = None,
) -> _Rows:
    """Token rows of both tasks; with ``sent_weights`` every row carries a loss weight (topic rows 1), with
    ``sent_offsets`` a sentiment-logit offset for the loss (topic rows 0)."""
    rows = []
    for task_id, df, names in ((0, sent_df, SENTIMENTS), (1, topic_df, TOPICS)):
        enc = tok(df["text"].tolist(), truncation=True, max_length=max_length, add_special_tokens=False)
        for i, (ids, label) in enumerate(zip(enc["input_ids"], df["label"])):
            row = {"input_ids": ids or [tok.pad_token_id], "task": task_id, "labels": names.index(label)}
            if sent_weights is not None:
                row["row_weight"] = float(sent_weights[i]) if task_id == 0 else 1.0
            if sent_offsets is not None:
                row["logit_offset"] = sent_offsets[i].tolist() if task_id == 0 else [0.0] * len(SENTIMENTS)
            rows.append(row)
    return _Rows(rows)


def make_collator(pad_id: int):
    def collate(batch: list[dict]) -> dict:
        ids, mask = pad_batch([r["input_ids"] for r in batch], pad_id)  # to the longest in this batch only
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "task": torch.tensor([r["task"] for r in batch]),
            "labels": torch.tensor([r["labels"] for r in batch]),
            **{k: torch.tensor([r[k] for r in batch]) for k in ("row_weight", "logit_offset") if k in batch[0]},
        }

    return collate


def compute_metrics(eval_pred) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    (s_logits, t_logits), (labels, task) = eval_pred.predictions, eval_pred.label_ids
    s_rows, t_rows = task == 0, task == 1
    s_f1 = f1_score(labels[s_rows], s_logits[s_rows].argmax(-1), average="macro") if s_rows.any() else 0.0
    t_acc = accuracy_score(labels[t_rows], t_logits[t_rows].argmax(-1)) if t_rows.any() else 0.0
    return {"sentiment_macro_f1": s_f1, "topic_accuracy": t_acc, "score": (s_f1 + t_acc) / 2}


def freeze_for(model: DualHeadClassifier, args: TrainArguments) -> DualHeadClassifier:
    backbone = model.backbone
    if args.lora_r:
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(
            r=args.lora_r,
            lora_alpha=2 * args.lora_r,
            lora_dropout=0.05,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        )
        model.backbone = get_peft_model(backbone, cfg)
        return model
    layers = backbone.layers
    keep = len(layers) if args.train_layers <= 0 else min(args.train_layers, len(layers))
    for p in backbone.parameters():
        p.requires_grad = False
    for layer in layers[len(layers) - keep :]:
        for p in layer.parameters():
            p.requires_grad = True
    for p in backbone.norm.parameters():
        p.requires_grad = True
    if keep == len(layers):
        for p in backbone.parameters():
            p.requires_grad = True
    return model


class TimeBudget(TrainerCallback):
    """Stop training (after a final evaluation and save) once ``minutes`` have passed or ``steps`` are done."""

    def __init__(self, minutes: float | None = None, steps: int | None = None) -> None:
        self.minutes, self.steps = minutes, steps
        self.deadline = time.monotonic() + minutes * 60 if minutes else None

    def on_step_end(self, args, state, control, **kwargs):
        timed_out = self.deadline is not None and time.monotonic() > self.deadline
        if timed_out or (self.steps is not None and state.global_step >= self.steps):
            log.info(
                "budget (%s min, %s steps) spent at step %d: stopping", self.minutes, self.steps, state.global_step
            )
            control.should_training_stop = True
            control.should_evaluate = True
            control.should_save = True
        return control


def finetune(
    model: DualHeadClassifier,
    tok,
    sent: TaskData,
    topic: TaskData,
    args: TrainArguments,
    device: torch.device,
    work_dir: Path,
) -> dict:
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments, get_linear_schedule_with_warmup

    from pipeline.classify.data import SOURCE_POWER, row_weights

    model = freeze_for(model, args)
    model.class_weights = {
        "sentiment": class_weights(sent.train["label"].tolist(), SENTIMENTS),
        "topic": class_weights(topic.train["label"].tolist(), TOPICS),
    }
    weights = None
    if args.source_weighting != "none":
        # The weighting the leave-one-source-out table chose for the heads, applied to the whole network:
        # each source's weight by its rows' power, every class the same total (in place of class_weights).
        weights = row_weights(sent.train, class_w=True, source_w=SOURCE_POWER[args.source_weighting])
        model.class_weights["sentiment"] = None
        for name, share in (pd.Series(weights).groupby(sent.train["source"].to_numpy()).sum() / len(weights)).items():
            log.info("source %s: %.1f %% of the sentiment loss", name, 100 * share)
    offsets = None
    if args.polar_only:  # their neutral rows were dropped in train(); neutral leaves their softmax too
        from pipeline.classify.headfit import polar_offset

        offsets = polar_offset(sent.train["source"], args.polar_sources())
    train_ds = encode(tok, sent.train, topic.train, args.max_length, weights, offsets)
    val_ds = encode(tok, sent.val, topic.val, args.max_length)
    on_cuda = device.type == "cuda"
    bf16 = (on_cuda and torch.cuda.is_bf16_supported()) or (not on_cuda and cpu_bf16_ok())
    steps_per_epoch = math.ceil(len(train_ds) / args.batch_size)
    total = max(1, int(steps_per_epoch * args.epochs))
    head_params = [
        p for n, p in model.named_parameters() if p.requires_grad and n.startswith(("sentiment_head", "topic_head"))
    ]
    body_params = [
        p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(("sentiment_head", "topic_head"))
    ]
    optim = torch.optim.AdamW(
        [
            {"params": body_params, "lr": args.learning_rate, "weight_decay": 0.01},
            {"params": head_params, "lr": args.head_learning_rate, "weight_decay": 0.0},
        ]
    )
    sched = get_linear_schedule_with_warmup(optim, int(0.06 * total), total)
    targs = TrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        eval_strategy="steps",
        eval_steps=args.eval_steps,
        save_strategy="steps",
        save_steps=args.eval_steps,
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="score",
        greater_is_better=True,
        label_names=["labels", "task"],
        remove_unused_columns=False,
        bf16=bf16,
        use_cpu=not on_cuda,
        logging_steps=25,
        report_to=[],
        seed=args.seed,
        data_seed=args.seed,
        train_sampling_strategy="group_by_length",
        dataloader_num_workers=0,
        save_only_model=False,  # optimizer and scheduler too: an interrupted run resumes where it stopped
        disable_tqdm=False,
    )
    callbacks = [EarlyStoppingCallback(early_stopping_patience=args.patience)]
    if args.max_minutes or args.max_steps:
        callbacks.append(TimeBudget(args.max_minutes, args.max_steps))
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=make_collator(tok.pad_token_id),
        compute_metrics=compute_metrics,
        optimizers=(optim, sched),
        callbacks=callbacks,
    )
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(work_dir)) if work_dir.is_dir() else None
    if last:
        log.info("resuming from %s (an interrupted run of the same recipe)", last)
    t0 = time.monotonic()
    trainer.train(resume_from_checkpoint=last)
    best = trainer.evaluate()
    if args.lora_r:
        model.backbone = model.backbone.merge_and_unload()
    return {
        "val": {k: float(v) for k, v in best.items() if isinstance(v, (int, float))},
        "steps": trainer.state.global_step,
        "train_minutes": (time.monotonic() - t0) / 60,
        "bf16": bf16,
        "trainable_params": sum(p.numel() for p in body_params + head_params),
    }


NOT_RECIPE = ("device", "output_root")  # where a model trains or lands, not what it is


def recipe(args: TrainArguments) -> dict:
    """The arguments that shape the model (reproduced by ``make model``, keyed for resuming)."""
    return {k: v for k, v in asdict(args).items() if k not in NOT_RECIPE}


def replayable(stage: dict, details: dict) -> dict:
    """A fine-tune stopped by its time budget is replayed to the same step, not for the same minutes."""
    if stage.get("method") == "finetune" and stage.get("max_minutes") and details.get("steps"):
        return {**stage, "max_minutes": None, "max_steps": int(details["steps"])}
    return stage


def training_stages(meta: dict) -> list[dict]:
    """Every recipe that made a model, first stage first: a warm-started model's stages follow its parent's.

    Read from the metadata (``training_stages``), or, for a model trained before that was recorded, from the
    parent directory its ``init_model`` names, when that is still present.
    """
    if meta.get("training_stages"):
        return list(meta["training_stages"])
    own = {k: v for k, v in (meta.get("training") or {}).items() if k not in NOT_RECIPE}
    own = replayable(own, meta.get("training_details") or {})
    parent_dir = own.get("init_model")
    if parent_dir and (Path(parent_dir) / modeldir.META_FILE).is_file():
        return training_stages(modeldir.read_meta(parent_dir)) + [own]
    return [own]


def run_dir(args: TrainArguments, sent: TaskData, topic: TaskData) -> Path:
    """``.state/runs/<hash of recipe and data>``: where an interrupted run of the same recipe resumes."""
    import hashlib
    import json

    key = json.dumps([recipe(args), data_hash([sent.manifest, topic.manifest])], sort_keys=True, default=str)
    path = config.state_dir() / "runs" / f"{args.method}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def calibrate(model, tok, sent: TaskData, topic: TaskData, args: TrainArguments, device, val_logits=None) -> dict:
    """Fit one temperature per head on the validation split (never the held-out sets); ECE before and after."""
    from pipeline.classify import calibrate as cal
    from pipeline.classify.predict import Classifier

    if val_logits is None:
        clf = Classifier(
            model.to(device).eval(),
            {"labels": {"sentiment": SENTIMENTS, "topic": TOPICS}, "max_length": args.max_length},
            tok,
            device,
            None,
        )
        val_logits = {
            "sentiment": (
                clf.logits(sent.val["text"].tolist())[0],
                np.array([SENTIMENTS.index(y) for y in sent.val["label"]]),
            ),
            "topic": (
                clf.logits(topic.val["text"].tolist())[1],
                np.array([TOPICS.index(y) for y in topic.val["label"]]),
            ),
        }
    out = {"method": "temperature scaling on the validation split", "bins": 15}
    for task, (logits, y) in val_logits.items():
        t = cal.fit_temperature(logits, y)
        out[f"{task}_temperature"] = t
        out[f"{task}_val_ece_before"] = cal.ece(cal.softmax(logits), y)
        out[f"{task}_val_ece_after"] = cal.ece(cal.softmax(logits, t), y)
    log.info(
        "calibration: sentiment T=%.3f (val ECE %.3f -> %.3f), topic T=%.3f",
        out["sentiment_temperature"],
        out["sentiment_val_ece_before"],
        out["sentiment_val_ece_after"],
        out["topic_temperature"],
    )
    return out


def drop_polar_neutrals(sent: TaskData, names: list[str]) -> None:
    """Sources picked for holding a polar expression say little about neutrality: their neutral rows go."""
    for part in ("train", "val"):
        df = getattr(sent, part)
        keep = ~(df["source"].isin(names) & (df["label"] == "neutral"))
        setattr(sent, part, df[keep].reset_index(drop=True))
    for name in names:
        if name in sent.manifest:
            sent.manifest[name]["trained_on"] = "direction only (neutral rows dropped, neutral out of its softmax)"


def relabel_stated(sent: TaskData) -> None:
    """The label convention on TFNS: its neutral rows that state a result with a direction take it."""
    from pipeline.classify.convention import relabel_neutral

    changed = 0
    for part in (sent.train, sent.val):
        rows = part["source"] == "tfns_sentiment"
        part.loc[rows, "label"], n = relabel_neutral(part.loc[rows, "text"].tolist(), part.loc[rows, "label"].tolist())
        changed += n
    if "tfns_sentiment" in sent.manifest:
        sent.manifest["tfns_sentiment"]["relabelled_stated_direction"] = changed
    log.info("label convention: %d TFNS neutral rows stating a direction relabelled", changed)


def train(args: TrainArguments) -> Path:
    """Train a model and write its versioned directory; returns the directory."""
    set_seed(args.seed)
    device = pick_device(args.device)
    t0 = time.monotonic()
    sent = load_task("sentiment", args.val_fraction, args.seed, args.limit_per_task, args.data)
    topic = load_task("topic", args.val_fraction, args.seed, args.topic_limit or args.limit_per_task, args.data)
    if args.relabel == "stated_direction":
        relabel_stated(sent)
    elif args.relabel != "none":
        raise ValueError(f"unknown relabel rule {args.relabel!r} (none or stated_direction)")
    if args.source_weighting not in ("none", "sqrt", "equal") or args.select not in ("best", "last"):
        raise ValueError("source_weighting is none|sqrt|equal and select is best|last")
    if args.method not in ("top", "blend", "finetune") and args.polar_only:
        raise ValueError("polar_only is an option of the top, finetune and blend recipes")
    if args.method not in ("top", "blend") and args.source_intercepts:
        raise ValueError("source_intercepts is an option of the top and blend recipes")
    if args.method not in ("top", "blend", "finetune") and args.source_weighting != "none":
        raise ValueError("source_weighting is an option of the top, finetune and blend recipes")
    if args.method != "top" and args.select != "best":
        raise ValueError("select is an option of the top recipe")
    if args.neutral_offset and args.method not in ("adjust", "blend"):
        raise ValueError("neutral_offset is an option of the adjust and blend methods")
    if args.method == "adjust" and not args.neutral_offset:
        raise ValueError("adjust needs --neutral_offset")
    if (args.method == "blend") != bool(args.head_blend) or not 0 <= args.head_blend <= 1:
        raise ValueError("head_blend (in (0, 1]) is the blend method's option, and blend needs it")
    if (args.method == "compress") != (args.compress_rank > 0):
        raise ValueError("compress_rank (> 0) is the compress method's option, and compress needs it")
    if args.method in ("adjust", "blend", "compress") and not args.init_model:
        raise ValueError(f"{args.method} needs --init_model (the model it changes)")
    if args.polar_only:
        drop_polar_neutrals(sent, args.polar_sources())
    log.info(
        "data: sentiment %d train / %d val; topic %d train / %d val",
        len(sent.train),
        len(sent.val),
        len(topic.train),
        len(topic.val),
    )
    if args.init_model:
        model, parent, tok = load_parent(Path(args.init_model))
        backbone, base_desc = model.backbone, parent["base_model"]
        if args.method in ("adjust", "blend", "compress") and args.max_length != parent.get("max_length"):
            raise ValueError(f"{args.method} keeps the model's inputs: pass --max_length {parent.get('max_length')}")
    else:
        backbone, tok, base_desc = load_backbone(args)
        model, parent = DualHeadClassifier(backbone, len(SENTIMENTS), len(TOPICS)), None
    version = new_version(args.method)
    out_dir = Path(args.output_root or config.state_dir() / "models") / version
    val_logits, work = None, None
    if args.method == "heads":
        details = train_heads(model, tok, sent, topic, args, device)
    elif args.method == "top":
        from pipeline.classify.top import train_top

        work = run_dir(args, sent, topic)
        details = train_top(model, tok, sent, topic, args, class_weights, device, work_dir=work)
        val_logits = details.pop("val_logits")
    elif args.method == "finetune":
        work = run_dir(args, sent, topic)
        details = finetune(model, tok, sent, topic, args, device, work)
    elif args.method == "adjust":
        details = adjust_neutral(model, args, parent)
    elif args.method == "blend":
        details = blend_heads(model, tok, sent, topic, args, device, parent)
    elif args.method == "compress":
        details = compress_backbone(model, tok, topic, args, device, parent)
    else:
        raise ValueError(f"unknown method {args.method!r} (heads, top, finetune, adjust, blend or compress)")
    calibration = calibrate(model, tok, sent, topic, args, device, val_logits)
    meta = {
        "version": version,
        "method": args.method,
        "base_model": base_desc,
        "parent_version": parent["version"] if parent else None,
        "architecture": f"{type(backbone).__name__} + mean pooling + 2 linear heads",
        "labels": {"sentiment": SENTIMENTS, "topic": TOPICS},
        "max_length": args.max_length,
        "training": asdict(args),
        "training_stages": (training_stages(parent) if parent else []) + [replayable(recipe(args), details)],
        "training_details": details,
        "calibration": calibration,
        "training_data": {
            "sha256": data_hash([sent.manifest, topic.manifest]),
            "sources": {**sent.manifest, **topic.manifest},
            "sentiment_train_rows": len(sent.train),
            "topic_train_rows": len(topic.train),
            "validation": f"{args.val_fraction:.0%} stratified split of each training source (seed {args.seed})",
        },
        "device": str(device),
        "created_at": datetime.now(UTC).isoformat(),
        "train_seconds": round(time.monotonic() - t0, 1),
    }
    modeldir.save(model.cpu(), out_dir, meta, tok)
    log.info("saved model %s to %s in %.0fs", version, out_dir, time.monotonic() - t0)
    import shutil

    if work is not None:
        shutil.rmtree(work, ignore_errors=True)  # finished: the resume state is spent
    return out_dir
