"""One decoder-only backbone, two linear heads: one forward pass gives both labels."""

from __future__ import annotations

import torch
from torch import nn


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

    def forward(self, input_ids, attention_mask, task=None, labels=None, row_weight=None):
        """``row_weight`` (optional, per row): a row's share of the loss, where the training mix weighs its
        sources (``--source_weighting``) rather than counting their rows; class weights apply on top."""
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
                    per_row = nn.functional.cross_entropy(
                        logits[rows], labels[rows], weight=None if w is None else w.to(logits.device), reduction="none"
                    )
                    if row_weight is not None:
                        per_row = per_row * row_weight[rows].to(per_row.dtype)
                    loss = loss + per_row.sum()
            out["loss"] = loss / max(1, labels.shape[0])
        return out

    def heads(self) -> list[tuple[str, nn.Linear]]:
        """The two heads by attribute name (the keys under which they are saved)."""
        return [("sentiment_head", self.sentiment_head), ("topic_head", self.topic_head)]
