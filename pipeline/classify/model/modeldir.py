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
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pipeline.classify.model.architecture import DualHeadClassifier
from pipeline.classify.model.labels import SENTIMENTS, TOPICS
from pipeline.classify.model.runtime import prepare_tokenizer
from pipeline.safeyaml import short

META_FILE = "finsent_model.json"
HEADS_FILE = "heads.safetensors"
BACKBONE_DIR = "backbone"
TOKENIZER_DIR = "tokenizer"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"


class ModelDirError(ValueError):
    """The folder is not a complete, loadable finsent model; the message says what is missing or wrong."""


_META_KEYS = ("version", "method", "labels", "base_model")
# what registering a model records: a folder without them cannot be registered
_REGISTER_KEYS = {"training_data": dict, "training": dict, "created_at": str}
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def check_version(version: object, where: str = "version") -> str:
    """A model version is a plain folder name: no separators, no ``..``, no absolute path, at most 128 chars."""
    if not isinstance(version, str) or not _VERSION.match(version) or ".." in version:
        raise ModelDirError(
            f"{where}: {short(version)} is not a valid model version (letters, digits, '.', '_', '+', '-'; no '..')"
        )
    return version


def under(root: str | Path, name: str) -> Path:
    """``root / name``, refused unless it stays inside ``root`` (after resolving links)."""
    root = Path(root).resolve()
    path = (root / check_version(name, str(root))).resolve()
    if path.parent != root:
        raise ModelDirError(f"{short(name)} would leave {root}")
    return path


def read_meta(model_dir: str | Path) -> dict:
    path = Path(model_dir) / META_FILE
    if not Path(model_dir).is_dir():
        raise ModelDirError(f"model folder {model_dir} does not exist")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelDirError(f"{model_dir} is not a finsent model: {META_FILE} is missing") from None
    except (OSError, UnicodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{path} is unreadable: {exc}") from None
    missing = [k for k in _META_KEYS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise ModelDirError(f"{path} lacks {missing}")
    check_version(meta["version"], f"{path}: version")
    for key in ("method", "base_model"):
        if not isinstance(meta[key], str):
            raise ModelDirError(f"{path}: {key!r} must be text")
    labels = meta["labels"]
    if not isinstance(labels, dict) or not all(
        isinstance(labels.get(t), list) and labels[t] for t in ("sentiment", "topic")
    ):
        raise ModelDirError(f"{path}: 'labels' must hold non-empty 'sentiment' and 'topic' lists")
    return meta


def check_labels(labels: dict, where: object) -> None:
    """The label lists a classifier of this project can use: sentiment exactly ``negative, neutral, positive``
    (scores, aggregates and alerts read its probabilities by those names and that order) and the 20 topics,
    each once, in any order (mapped by name). A model that labels otherwise is refused before it is registered,
    never promoted to fail every hourly run."""
    sent, topic = list(labels.get("sentiment") or []), list(labels.get("topic") or [])
    if sent != list(SENTIMENTS):
        raise ModelDirError(f"{where}: sentiment labels {sent[:10]} are not {list(SENTIMENTS)} (names and order)")
    if len(topic) != len(set(topic)) or set(topic) != set(TOPICS):
        extra, lacking = sorted(set(topic) - set(TOPICS))[:5], sorted(set(TOPICS) - set(topic))[:5]
        raise ModelDirError(
            f"{where}: topic labels must be the {len(TOPICS)} topics, each once (unknown: {extra}; missing: {lacking})"
        )


def check_registrable(model_dir: str | Path) -> dict:
    """Metadata with every field the registry records, and a folder whose model and tokenizer load.

    Called before a folder is registered or promoted, so a folder holding only a
    metadata file (or a damaged one) never becomes the active model.
    """
    meta = read_meta(model_dir)
    path = Path(model_dir) / META_FILE
    for key, kind in _REGISTER_KEYS.items():
        if not isinstance(meta.get(key), kind):
            raise ModelDirError(f"{path}: {key!r} is missing or not a {kind.__name__}")
    if not isinstance(meta["training_data"].get("sha256"), str):
        raise ModelDirError(f"{path}: 'training_data.sha256' is missing")
    check_labels(meta["labels"], path)
    load(model_dir)
    load_tokenizer(model_dir)
    return meta


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
    save_file(head_tensors(model), str(out_dir / HEADS_FILE))
    write_meta(out_dir, meta)


def head_tensors(model: DualHeadClassifier) -> dict[str, torch.Tensor]:
    """Both heads' weights keyed ``sentiment_head.weight`` etc. (fp32, CPU): how they are saved and shipped."""
    return {
        f"{name}.{k}": v.detach().float().cpu().contiguous()
        for name, head in model.heads()
        for k, v in head.state_dict().items()
    }


def load_heads(model: DualHeadClassifier, tensors: dict[str, torch.Tensor]) -> None:
    """Load both heads from ``head_tensors``-style keys, strictly (missing or misshapen tensors raise)."""
    for name, head in model.heads():
        head.load_state_dict(
            {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(name + ".")}, strict=True
        )


def load(model_dir: str | Path, torch_dtype: torch.dtype | None = None) -> tuple[DualHeadClassifier, dict]:
    """The model in eval mode and its metadata; ModelDirError before any work if anything is missing or damaged.

    Missing, unexpected or mismatched tensors are errors, never silently
    re-initialised layers: a truncated download must not predict at random.
    """
    from transformers import AutoModel

    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    for rel in (BACKBONE_DIR + "/config.json", HEADS_FILE, TOKENIZER_DIR):
        if not (model_dir / rel).exists():
            raise ModelDirError(f"{model_dir} is incomplete: {rel} is missing")
    try:
        backbone, info = AutoModel.from_pretrained(
            model_dir / BACKBONE_DIR, dtype=torch_dtype or torch.float32, output_loading_info=True
        )
    except Exception as exc:  # safetensors and transformers raise their own types for damaged files
        raise ModelDirError(f"{model_dir / BACKBONE_DIR}: cannot load the backbone: {_first_line(exc)}") from None
    problems = {k: list(info.get(k) or []) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(problems.values()):
        raise ModelDirError(
            f"{model_dir / BACKBONE_DIR}: weights do not match the architecture: "
            + "; ".join(f"{k} {v[:5]}" for k, v in problems.items() if v)
        )
    model = DualHeadClassifier(backbone, len(meta["labels"]["sentiment"]), len(meta["labels"]["topic"]))
    try:
        heads = load_file(str(model_dir / HEADS_FILE))
        load_heads(model, heads)
    except Exception as exc:  # safetensors raises its own error types for truncated files
        raise ModelDirError(f"{model_dir / HEADS_FILE}: {_first_line(exc)}") from None
    extra = [k for k in heads if not k.startswith(("sentiment_head.", "topic_head."))]
    if extra:
        raise ModelDirError(f"{model_dir / HEADS_FILE}: unexpected tensors {extra[:5]}")
    return model.eval(), meta


def load_tokenizer(model_dir: str | Path):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(Path(model_dir) / TOKENIZER_DIR)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelDirError(
            f"{Path(model_dir) / TOKENIZER_DIR}: cannot load the tokenizer: {_first_line(exc)}"
        ) from None
    return prepare_tokenizer(tok)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
