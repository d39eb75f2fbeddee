"""One decoder-only backbone, two linear heads: one forward pass gives both labels."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

META_FILE = "finsent_model.json"
HEADS_FILE = "heads.safetensors"


class DualHeadClassifier(nn.Module):
    """Mean-pooled final hidden states -> sentiment head and topic head.

    Mean pooling (over real tokens) rather than last-token pooling: it suits
    both the frozen-backbone fast path and fine-tuning, and is indifferent
    to the pad token being the EOS token.
    """

    def __init__(
        self,
        backbone: nn.Module,
        n_sentiment: int,
        n_topic: int,
        dropout: float = 0.1,
        class_weights: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        hidden = backbone.config.hidden_size
        self.backbone = backbone
        self.config = backbone.config  # lets Trainer find model metadata
        self.dropout = nn.Dropout(dropout)
        self.sentiment_head = nn.Linear(hidden, n_sentiment)
        self.topic_head = nn.Linear(hidden, n_topic)
        self.class_weights = class_weights or {}

    @staticmethod
    def pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.pool(hidden, attention_mask).float()

    def forward(self, input_ids, attention_mask, task=None, labels=None):
        pooled = self.dropout(self.features(input_ids, attention_mask))
        s_logits = self.sentiment_head(pooled)
        t_logits = self.topic_head(pooled)
        out = {"sentiment_logits": s_logits, "topic_logits": t_logits}
        if labels is not None and task is not None:
            # Each row carries a label for one task; rows of the other task add nothing.
            loss = s_logits.new_zeros(())
            for task_id, logits, key in ((0, s_logits, "sentiment"), (1, t_logits, "topic")):
                rows = task == task_id
                if rows.any():
                    w = self.class_weights.get(key)
                    loss = loss + nn.functional.cross_entropy(
                        logits[rows], labels[rows], weight=None if w is None else w.to(logits.device), reduction="sum"
                    )
            out["loss"] = loss / max(1, labels.shape[0])
        return out

    # -- persistence ----------------------------------------------------------------
    def save(self, out_dir: Path, meta: dict, tokenizer) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(out_dir / "backbone", safe_serialization=True)
        tokenizer.save_pretrained(out_dir / "tokenizer")
        heads = {
            f"sentiment_head.{k}": v.detach().cpu().contiguous() for k, v in self.sentiment_head.state_dict().items()
        }
        heads.update(
            {f"topic_head.{k}": v.detach().cpu().contiguous() for k, v in self.topic_head.state_dict().items()}
        )
        save_file(heads, str(out_dir / HEADS_FILE))
        (out_dir / META_FILE).write_text(json.dumps(meta, indent=2, default=str))

    @classmethod
    def load(cls, model_dir: Path, torch_dtype: torch.dtype | None = None) -> tuple[DualHeadClassifier, dict]:
        from transformers import AutoModel

        model_dir = Path(model_dir)
        meta = json.loads((model_dir / META_FILE).read_text())
        backbone = AutoModel.from_pretrained(model_dir / "backbone", dtype=torch_dtype or torch.float32)
        model = cls(backbone, len(meta["labels"]["sentiment"]), len(meta["labels"]["topic"]))
        heads = load_file(str(model_dir / HEADS_FILE))
        model.sentiment_head.load_state_dict(
            {k.split(".", 1)[1]: v for k, v in heads.items() if k.startswith("sentiment_head.")}
        )
        model.topic_head.load_state_dict(
            {k.split(".", 1)[1]: v for k, v in heads.items() if k.startswith("topic_head.")}
        )
        return model.eval(), meta
