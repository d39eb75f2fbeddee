"""The one owner of a model directory's layout: what is saved where, and how it is read back.

::

    VERSION/
      backbone/            transformers backbone (safetensors)
      heads.safetensors    sentiment_head.* and topic_head.*
      tokenizer/
      finsent_model.json   metadata: labels, base model, method, training config, data sha256, metrics
      report.json, report.md   held-out evaluation (written by evaluate)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pipeline.classify.model import DualHeadClassifier
from pipeline.classify.runtime import prepare_tokenizer

META_FILE = "finsent_model.json"
HEADS_FILE = "heads.safetensors"
BACKBONE_DIR = "backbone"
TOKENIZER_DIR = "tokenizer"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"


def read_meta(model_dir: str | Path) -> dict:
    return json.loads((Path(model_dir) / META_FILE).read_text())


def write_meta(model_dir: str | Path, meta: dict) -> None:
    (Path(model_dir) / META_FILE).write_text(json.dumps(meta, indent=2, default=str))


def write_report(model_dir: str | Path, report: dict, markdown: str) -> None:
    model_dir = Path(model_dir)
    (model_dir / REPORT_JSON).write_text(json.dumps(report, indent=2))
    (model_dir / REPORT_MD).write_text(markdown)


def save(model: DualHeadClassifier, out_dir: str | Path, meta: dict, tokenizer) -> None:
    """Write backbone, heads, tokenizer and metadata."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.backbone.save_pretrained(out_dir / BACKBONE_DIR, safe_serialization=True)
    tokenizer.save_pretrained(out_dir / TOKENIZER_DIR)
    heads = {
        f"{name}.{k}": v.detach().cpu().contiguous()
        for name, head in model.heads()
        for k, v in head.state_dict().items()
    }
    save_file(heads, str(out_dir / HEADS_FILE))
    write_meta(out_dir, meta)


def load(model_dir: str | Path, torch_dtype: torch.dtype | None = None) -> tuple[DualHeadClassifier, dict]:
    """The model in eval mode and its metadata."""
    from transformers import AutoModel

    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    backbone = AutoModel.from_pretrained(model_dir / BACKBONE_DIR, dtype=torch_dtype or torch.float32)
    model = DualHeadClassifier(backbone, len(meta["labels"]["sentiment"]), len(meta["labels"]["topic"]))
    heads = load_file(str(model_dir / HEADS_FILE))
    for name, head in model.heads():
        head.load_state_dict({k.split(".", 1)[1]: v for k, v in heads.items() if k.startswith(name + ".")})
    return model.eval(), meta


def load_tokenizer(model_dir: str | Path):
    from transformers import AutoTokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(Path(model_dir) / TOKENIZER_DIR))
