"""What shapes a model: the project's own options beside Hugging Face's ``TrainingArguments``.

As in ``run_classification.py``: one dataclass of our options, parsed together with ``TrainingArguments`` by
``HfArgumentParser``, which holds the optimiser's (epochs, learning rate, batch size, seed, evaluation steps,
step limit). ``recipe`` is what a model's metadata records of both, and ``parse`` reads it back, so ``make
model`` replays a recorded stage through the same parser as the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from transformers import HfArgumentParser, TrainingArguments

from pipeline.classify.datasets.data import SOURCE_POWER

METHODS = ("heads", "finetune", "compress", "blend")


@dataclass
class RecipeArguments:
    """The project's options; stored verbatim (with the trainer's, ``TRAINER_FIELDS``) in a model's metadata."""

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
            "help": "heads (frozen backbone, logistic heads: minutes), finetune (Trainer), compress (the init "
            "model's difference from its base cut to --compress_rank) or blend (the init model's backbone frozen, "
            "heads refitted on --data, the sentiment one blended with its own); docs/classifier.md"
        },
    )
    data: str = field(
        default="default",
        metadata={"help": "training sources from data/sources.yaml, comma-separated (default: those marked default)"},
    )
    train_layers: int = field(default=6, metadata={"help": "finetune: top transformer blocks to update (0 = all)"})
    source_weighting: str = field(
        default="none",
        metadata={
            "help": "finetune, blend: none | sqrt | equal: a sentiment source of n rows weighs n, sqrt(n) or 1 "
            "in the loss, classes balanced (bench.transfer)"
        },
    )
    neutral_offset: float = field(
        default=0.0,
        metadata={"help": "blend: lower the neutral logit by this much (chosen leaving sources out)"},
    )
    head_blend: float = field(
        default=0.0,
        metadata={
            "help": "blend: the weight (0-1) of a sentiment head refitted on --data's features of the init model "
            "against the init model's own head (one linear head either way; chosen by bench.distil)"
        },
    )
    compress_rank: int = field(
        default=0,
        metadata={
            "help": "compress: keep the init model's difference from its base model to this rank (truncated SVD of "
            "each weight matrix), so an all-layer fine-tune ships as a compact delta; the topic head is refitted"
        },
    )
    head_learning_rate: float = field(default=1e-3, metadata={"help": "finetune: the heads' learning rate"})
    max_length: int = 64
    val_fraction: float = 0.1
    limit_per_task: int | None = field(default=None, metadata={"help": "subsample each task's training rows"})
    topic_limit: int | None = field(default=None, metadata={"help": "subsample the topic task's training rows only"})
    patience: int = field(default=3, metadata={"help": "finetune: evaluations without gain before stopping"})
    max_minutes: float | None = field(
        default=None,
        metadata={
            "help": "finetune: stop after this long; the model records the step it stopped at, and make model "
            "replays the stage to that step (--max_steps), so the replay does not depend on the machine's speed"
        },
    )
    device: str | None = None
    output_root: str | None = None

    def check(self) -> None:
        """Refuse a combination no recipe reads, before any data is loaded."""
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r} ({', '.join(METHODS)})")
        if self.source_weighting not in SOURCE_POWER:
            raise ValueError("source_weighting is none|sqrt|equal")
        if self.method not in ("finetune", "blend") and self.source_weighting != "none":
            raise ValueError("source_weighting is an option of the finetune and blend recipes")
        if self.neutral_offset and self.method != "blend":
            raise ValueError("neutral_offset is an option of the blend method")
        if (self.method == "blend") != bool(self.head_blend) or not 0 <= self.head_blend <= 1:
            raise ValueError("head_blend (in (0, 1]) is the blend method's option, and blend needs it")
        if (self.method == "compress") != (self.compress_rank > 0):
            raise ValueError("compress_rank (> 0) is the compress method's option, and compress needs it")
        if self.method in ("blend", "compress") and not self.init_model:
            raise ValueError(f"{self.method} needs --init_model (the model it changes)")


# The trainer's options that shape a model, with this project's defaults (Hugging Face's differ).
TRAINER_DEFAULTS: dict[str, Any] = {
    "num_train_epochs": 3.0,
    "learning_rate": 1e-4,
    "per_device_train_batch_size": 16,
    "seed": 42,
    "eval_steps": 200,
    "max_steps": -1,
}
TRAINER_FIELDS = tuple(TRAINER_DEFAULTS)
RENAMED = {"epochs": "num_train_epochs", "batch_size": "per_device_train_batch_size"}  # stages recorded before
# Experiments that no shipped model used, removed from the product (git history keeps them): a recorded stage
# may carry them at their off value; any other value is refused rather than replayed as something else.
REMOVED = {"lora_r": 0, "relabel": "none", "polar_only": "", "source_intercepts": False, "select": "best"}
NOT_RECIPE = ("device", "output_root")  # where a model trains or lands, not what it is


def parse(params: Mapping[str, Any]) -> tuple[RecipeArguments, TrainingArguments]:
    """Both argument sets from one flat mapping (a recorded stage, DAG params, a test's keywords); ``train``
    checks their combination (``RecipeArguments.check``)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        key = RENAMED.get(key, key)
        if key in REMOVED:
            if value not in (REMOVED[key], None, 0, ""):
                raise ValueError(f"{key}={value!r}: an experiment removed from the product (see git history)")
            continue
        if value is not None:
            flat[key] = value
    if flat.get("method") in ("top", "adjust"):
        raise ValueError(f"method {flat['method']!r} was an experiment, removed from the product (git keeps it)")
    parser = HfArgumentParser((RecipeArguments, TrainingArguments))
    recipe_args, trainer_args = parser.parse_dict({"output_dir": "unused", "report_to": [], **TRAINER_DEFAULTS, **flat})
    return recipe_args, trainer_args


def recipe(args: RecipeArguments, targs: TrainingArguments) -> dict:
    """What a model's metadata records of its training: reproduced by ``make model``, keyed for resuming."""
    own = {k: v for k, v in asdict(args).items() if k not in NOT_RECIPE}
    return own | {k: getattr(targs, k) for k in TRAINER_FIELDS}
