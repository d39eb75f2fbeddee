"""Train a model and write its versioned directory (``python -m pipeline train``): the one readable route.

Load the data, start from the base or a trained model, run one recipe (``heads``, ``finetune``, ``compress``,
``blend``: one module each beside this one), fit the temperatures on the validation split, and save the model
with everything that made it: its recipe and those of its ancestors (``training_stages``, which ``make model``
replays), the data's manifest and hash, the calibration. The held-out ``*_valid.csv`` sets are never used here;
evaluation (``pipeline.classify.evaluation.evaluate``) reports on them afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from transformers import TrainingArguments

from pipeline import config
from pipeline.classify.datasets.data import TaskData, data_hash, load_task
from pipeline.classify.model import base as base_model
from pipeline.classify.model import calibrate as cal
from pipeline.classify.model import modeldir
from pipeline.classify.model.architecture import DualHeadClassifier
from pipeline.classify.model.labels import SENTIMENTS, TOPICS
from pipeline.classify.model.predict import Classifier
from pipeline.classify.model.runtime import pick_device
from pipeline.classify.training.arguments import NOT_RECIPE, RecipeArguments, parse, recipe

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def new_version(method: str) -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{method}"


def load_parent(model_dir: Path):
    """A trained model to continue from: CPU training runs in stages of what a session allows."""
    model, meta = modeldir.load(model_dir)
    if meta["labels"] != {"sentiment": SENTIMENTS, "topic": TOPICS}:
        raise ValueError(f"{model_dir}: its label maps differ from this code's; train from the base model instead")
    tok = modeldir.load_tokenizer(model_dir)
    log.info("warm start from model %s (%s)", meta["version"], meta["method"])
    return model.train(), meta, tok


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


def run_dir(stage: dict, sent: TaskData, topic: TaskData) -> Path:
    """``.state/runs/<hash of recipe and data>``: where an interrupted run of the same recipe resumes."""
    key = json.dumps([stage, data_hash([sent.manifest, topic.manifest])], sort_keys=True, default=str)
    path = config.state_dir() / "runs" / f"{stage['method']}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def calibrate(clf: Classifier, sent: TaskData, topic: TaskData) -> dict:
    """Fit one temperature per head on the validation split (never the held-out sets); ECE before and after."""
    out = {"method": "temperature scaling on the validation split", "bins": 15}
    s_logits = clf.logits(sent.val["text"].tolist())[0]
    t_logits = clf.logits(topic.val["text"].tolist())[1]
    for task, logits, names, labels in (
        ("sentiment", s_logits, SENTIMENTS, sent.val["label"]),
        ("topic", t_logits, TOPICS, topic.val["label"]),
    ):
        y = np.array([names.index(v) for v in labels])
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


def train(args: RecipeArguments, targs: TrainingArguments | None = None) -> Path:
    """Train a model and write its versioned directory; returns the directory."""
    if targs is None:
        args, targs = parse(asdict(args))
    args.check()
    set_seed(targs.seed)
    device = pick_device(args.device)
    t0 = time.monotonic()
    sent = load_task("sentiment", args.val_fraction, targs.seed, args.limit_per_task, args.data)
    topic = load_task("topic", args.val_fraction, targs.seed, args.topic_limit or args.limit_per_task, args.data)
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
        if args.method in ("blend", "compress") and args.max_length != parent.get("max_length"):
            raise ValueError(f"{args.method} keeps the model's inputs: pass --max_length {parent.get('max_length')}")
    else:
        backbone, tok, base_desc = base_model.load(args.base_model)
        model, parent = DualHeadClassifier(backbone, len(SENTIMENTS), len(TOPICS)), None
    stage = recipe(args, targs)
    version = new_version(args.method)
    out_dir = Path(args.output_root or config.state_dir() / "models") / version
    work = None
    if args.method == "heads":
        from pipeline.classify.training.heads import train_heads

        details = train_heads(model, tok, sent, topic, args, device)
    elif args.method == "finetune":
        from pipeline.classify.training.finetune import finetune

        work = run_dir(stage, sent, topic)
        details = finetune(model, tok, sent, topic, args, targs, device, work)
    elif args.method == "compress":
        from pipeline.classify.training.compress import compress_backbone

        first = training_stages(parent)[0].get("base_model")
        details = compress_backbone(model, tok, topic, args, device, parent, first)
    else:
        from pipeline.classify.training.blend import blend_heads

        details = blend_heads(model, tok, sent, topic, args, device, parent)
    model.to(device).eval()
    labels = {"sentiment": SENTIMENTS, "topic": TOPICS}
    calibration = calibrate(
        Classifier(model, {"labels": labels, "max_length": args.max_length}, tok, device, None), sent, topic
    )
    meta = {
        "version": version,
        "method": args.method,
        "base_model": base_desc,
        "parent_version": parent["version"] if parent else None,
        "architecture": f"{type(backbone).__name__} + mean pooling + 2 linear heads",
        "labels": labels,
        "max_length": args.max_length,
        "training": {**stage, **{k: getattr(args, k) for k in NOT_RECIPE}},
        "training_stages": (training_stages(parent) if parent else []) + [replayable(stage, details)],
        "training_details": details,
        "calibration": calibration,
        "training_data": {
            "sha256": data_hash([sent.manifest, topic.manifest]),
            "sources": {**sent.manifest, **topic.manifest},
            "sentiment_train_rows": len(sent.train),
            "topic_train_rows": len(topic.train),
            "validation": f"{args.val_fraction:.0%} stratified split of each training source (seed {targs.seed})",
        },
        "device": str(device),
        "created_at": datetime.now(UTC).isoformat(),
        "train_seconds": round(time.monotonic() - t0, 1),
    }
    modeldir.save(model.cpu(), out_dir, meta, tok)
    log.info("saved model %s to %s in %.0fs", version, out_dir, time.monotonic() - t0)
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)  # finished: the resume state is spent
    return out_dir


def train_from(params: dict) -> Path:
    """``train`` from one flat mapping of both argument sets (DAG params, a replayed stage, a test)."""
    return train(*parse(params))
