"""The ``finetune`` recipe: Hugging Face's Trainer updates the top ``train_layers`` blocks (0 = all) and both heads.

bf16 on CUDA and capable CPUs, a class-weighted loss (or the sources weighted as ``--source_weighting`` says),
early stopping on the validation split, checkpoints a restarted run resumes from, and an optional time budget.
The optimiser's options are the caller's ``TrainingArguments``; this recipe sets only what it needs to work.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import TrainerCallback, TrainingArguments

from pipeline.classify.datasets.data import SOURCE_POWER, TaskData, row_weights
from pipeline.classify.model.architecture import DualHeadClassifier
from pipeline.classify.model.labels import SENTIMENTS, TOPICS
from pipeline.classify.model.runtime import cpu_bf16_ok, pad_batch
from pipeline.classify.training.arguments import RecipeArguments
from pipeline.classify.training.features import class_weights

log = logging.getLogger(__name__)


class _Rows(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def encode(tok, sent_df, topic_df, max_length: int, sent_weights: np.ndarray | None = None) -> _Rows:
    """Token rows of both tasks; with ``sent_weights`` every row carries a loss weight (topic rows 1)."""
    rows = []
    for task_id, df, names in ((0, sent_df, SENTIMENTS), (1, topic_df, TOPICS)):
        enc = tok(df["text"].tolist(), truncation=True, max_length=max_length, add_special_tokens=False)
        for i, (ids, label) in enumerate(zip(enc["input_ids"], df["label"])):
            row = {"input_ids": ids or [tok.pad_token_id], "task": task_id, "labels": names.index(label)}
            if sent_weights is not None:
                row["row_weight"] = float(sent_weights[i]) if task_id == 0 else 1.0
            rows.append(row)
    return _Rows(rows)


def make_collator(pad_id: int):
    def collate(batch: list[dict]) -> dict:
        ids, mask = pad_batch([r["input_ids"] for r in batch], pad_id)  # to the longest in this batch only
        out = {
            "input_ids": ids,
            "attention_mask": mask,
            "task": torch.tensor([r["task"] for r in batch]),
            "labels": torch.tensor([r["labels"] for r in batch]),
        }
        if "row_weight" in batch[0]:
            out["row_weight"] = torch.tensor([r["row_weight"] for r in batch])
        return out

    return collate


def compute_metrics(eval_pred) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    (s_logits, t_logits), (labels, task) = eval_pred.predictions, eval_pred.label_ids
    s_rows, t_rows = task == 0, task == 1
    s_f1 = f1_score(labels[s_rows], s_logits[s_rows].argmax(-1), average="macro") if s_rows.any() else 0.0
    t_acc = accuracy_score(labels[t_rows], t_logits[t_rows].argmax(-1)) if t_rows.any() else 0.0
    return {"sentiment_macro_f1": s_f1, "topic_accuracy": t_acc, "score": (s_f1 + t_acc) / 2}


def freeze_for(model: DualHeadClassifier, train_layers: int) -> DualHeadClassifier:
    """Only the top ``train_layers`` blocks (and the final norm, and the heads) learn; 0 = every block."""
    backbone = model.backbone
    layers = backbone.layers
    keep = len(layers) if train_layers <= 0 else min(train_layers, len(layers))
    for p in backbone.parameters():
        p.requires_grad = keep == len(layers)
    for layer in layers[len(layers) - keep :]:
        for p in layer.parameters():
            p.requires_grad = True
    for p in backbone.norm.parameters():
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
    args: RecipeArguments,
    targs: TrainingArguments,
    device: torch.device,
    work_dir: Path,
) -> dict:
    from transformers import EarlyStoppingCallback, Trainer, get_linear_schedule_with_warmup
    from transformers.trainer_utils import get_last_checkpoint

    model = freeze_for(model, args.train_layers)
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
    train_ds = encode(tok, sent.train, topic.train, args.max_length, weights)
    val_ds = encode(tok, sent.val, topic.val, args.max_length)
    on_cuda = device.type == "cuda"
    bf16 = (on_cuda and torch.cuda.is_bf16_supported()) or (not on_cuda and cpu_bf16_ok())
    batch = targs.per_device_train_batch_size
    total = max(1, int(math.ceil(len(train_ds) / batch) * targs.num_train_epochs))  # the schedule spans the epochs
    head_params = [
        p for n, p in model.named_parameters() if p.requires_grad and n.startswith(("sentiment_head", "topic_head"))
    ]
    body_params = [
        p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(("sentiment_head", "topic_head"))
    ]
    optim = torch.optim.AdamW(
        [
            {"params": body_params, "lr": targs.learning_rate, "weight_decay": 0.01},
            {"params": head_params, "lr": args.head_learning_rate, "weight_decay": 0.0},
        ]
    )
    sched = get_linear_schedule_with_warmup(optim, int(0.06 * total), total)
    run_args = dataclasses.replace(  # what this recipe needs; the caller's optimiser options kept
        targs,
        output_dir=str(work_dir),
        per_device_eval_batch_size=64,
        eval_strategy="steps",
        save_strategy="steps",
        save_steps=targs.eval_steps,
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
        data_seed=targs.seed,
        train_sampling_strategy="group_by_length",
        dataloader_num_workers=0,
        save_only_model=False,  # optimizer and scheduler too: an interrupted run resumes where it stopped
        disable_tqdm=False,
        max_steps=-1,  # a step limit stops the run (TimeBudget) without shortening the schedule
    )
    callbacks = [EarlyStoppingCallback(early_stopping_patience=args.patience)]
    steps = targs.max_steps if targs.max_steps > 0 else None
    if args.max_minutes or steps:
        callbacks.append(TimeBudget(args.max_minutes, steps))
    trainer = Trainer(
        model=model,
        args=run_args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=make_collator(tok.pad_token_id),
        compute_metrics=compute_metrics,
        optimizers=(optim, sched),
        callbacks=callbacks,
    )
    last = get_last_checkpoint(str(work_dir)) if work_dir.is_dir() else None
    if last:
        log.info("resuming from %s (an interrupted run of the same recipe)", last)
    t0 = time.monotonic()
    trainer.train(resume_from_checkpoint=last)
    best = trainer.evaluate()
    return {
        "val": {k: float(v) for k, v in best.items() if isinstance(v, (int, float))},
        "steps": trainer.state.global_step,
        "train_minutes": (time.monotonic() - t0) / 60,
        "bf16": bf16,
        "trainable_params": sum(p.numel() for p in body_params + head_params),
    }
