"""The model that ships with the product: a compact delta over the packaged base model.

Full weights of a 135M model do not belong in git. A trained model differs
from its base in a few places, and each ships in the smallest exact form:
tensors a recipe trained outright (a ``finetune`` of the top blocks, and the
final norm) in fp16, tensors whose difference from the base is low rank as the
two fp16 factors of that difference (found by SVD and checked to reproduce it),
and the heads in fp32; ~21-27 MB in all for the shipped models. An all-layer
fine-tune is not low rank: its ``compress`` stage (training/compress.py)
truncates the difference to rank r first, so the same exact factors carry it.
Shipping a model (export, rebuild, evaluate, fit its entity head) is
``pipeline.lifecycle.ship``: it drives evaluation and the company head too.

``materialize`` rebuilds a normal model directory from the base and the
delta, after checking that the base's weights hash to the value recorded at
export (a different base would silently give a different model). The report
travels with the delta, so registering it needs no re-evaluation.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load, save

from pipeline import config
from pipeline.classify.evaluation import modelcard
from pipeline.classify.model import base as base_model
from pipeline.classify.model import modeldir
from pipeline.classify.model.architecture import DualHeadClassifier
from pipeline.classify.model.lowrank import lowrank_factors

log = logging.getLogger(__name__)

SHIPPED_DIR = config.REPO_ROOT / "data" / "model"
ENTITY_HEAD = "entity_head.safetensors"  # pipeline.entities.sentiment.HEAD_FILE
MENTION_TAGGER = ("mention_head.safetensors", "mention_head.json")  # pipeline.entities.detect.HEAD_FILE + metadata
ENTITY_RULE_KEYS = ("rule", "rule_chosen_by")  # the company rule in use: chosen by bench.entity_transfer, not trained


def carry_entity_rule(previous: dict, meta: dict) -> dict:
    """``meta`` with the company rule ``previous`` ships with, unless ``meta`` names its own.

    The rule (e.g. ``inherit``: companies take their headline's label) is a decision measured on the shipped
    folder; a re-ship, a refitted entity head or ``make model`` must not silently fall back to the default.
    """
    rule = {k: v for k, v in (previous.get("entity_head") or {}).items() if k in ENTITY_RULE_KEYS}
    if not rule or (meta.get("entity_head") or {}).get("rule"):
        return meta
    return {**meta, "entity_head": {**(meta.get("entity_head") or {}), **rule}}


DELTA_FILE = "delta.safetensors.gz"  # safetensors, gzip -9 (fp16 weights: ~8 % smaller; checked before reading)
MAX_BYTES = 30_000_000  # the whole shipped folder (delta, entity head, metadata, report) stays within 30 MB
MAX_INFLATED_BYTES = 400_000_000  # a delta never decompresses past this (the shipped one: 30 MB; fp16 base: 270 MB)


class ShippedModelError(modeldir.ModelDirError):
    """The shipped delta is missing, damaged, or made for a different base model."""


def weights_sha256(backbone: torch.nn.Module) -> str:
    """sha256 over the backbone's tensors (names, shapes, fp32 bytes): independent of file serialisation."""
    h = hashlib.sha256()
    for name, t in sorted(backbone.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


LOWRANK_A, LOWRANK_B = ".lowrank_a", ".lowrank_b"  # delta = A @ B, A: (out, r), B: (r, in)


def write_delta(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """safetensors bytes, gzip-compressed with a fixed timestamp: the same tensors give the same file."""
    path.write_bytes(gzip.compress(save(tensors, metadata=metadata), compresslevel=9, mtime=0))


def read_delta(path: Path, max_bytes: int | None = None) -> dict[str, torch.Tensor]:
    """The delta's tensors, decompressed in chunks and refused past ``max_bytes`` (a gzip bomb stops there).

    A recorded sha256 only proves the bytes are the ones someone recorded, not that they are small.
    """
    max_bytes = max_bytes or MAX_INFLATED_BYTES
    out = bytearray()
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                out += chunk
                if len(out) > max_bytes:
                    raise ShippedModelError(
                        f"{path} inflates past {max_bytes / 1e6:.0f} MB: not a finsent delta (refused)"
                    )
        return load(bytes(out))
    except (OSError, EOFError, ValueError) as exc:
        raise ShippedModelError(f"{path} is not a gzip-compressed safetensors delta: {exc}") from exc


def delta_rank(stages: list[dict]) -> int:
    """The rank of a model's weight difference from its base, where its recipe bounds it: its last ``compress``
    stage's (0: none; later ``blend`` stages change the heads only)."""
    last = max((i for i, st in enumerate(stages) if st.get("method") == "compress"), default=None)
    return 0 if last is None else int(stages[last]["compress_rank"])


def export(model_dir: str | Path, out_dir: str | Path | None = None, base: str | None = None) -> Path:
    """Write the compact delta of a trained model (plus metadata, report, card) to ``out_dir``.

    Refused when the delta would exceed MAX_BYTES (an all-layer fine-tune without a compress stage, say).
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir or SHIPPED_DIR)
    from pipeline.classify.training.train import training_stages

    model, meta = modeldir.load(model_dir)
    stages = training_stages(meta)  # kept in the shipped metadata: ``make model`` replays them in order
    base_backbone, _, _ = base_model.load(base or stages[0].get("base_model"))
    base_state, rank = base_backbone.state_dict(), delta_rank(stages)
    delta: dict[str, torch.Tensor] = {}
    full_blocks: set[str] = set()
    n_lowrank = 0
    for name, t in model.backbone.state_dict().items():
        if name not in base_state or base_state[name].shape != t.shape:
            raise ShippedModelError(f"{model_dir}: {name} does not fit the base model")
        if torch.equal(t, base_state[name]):
            continue
        factors = lowrank_factors(t.float() - base_state[name].float(), rank)
        if factors is None:
            delta[f"backbone.{name}"] = t.to(torch.float16).contiguous()
            if t.ndim == 2:  # a trained matrix; norms (vectors) ship whole after any recipe that touched them
                full_blocks.add(".".join(name.split(".")[:2]) if name.startswith("layers.") else name.split(".")[0])
        else:
            delta[f"backbone.{name}{LOWRANK_A}"], delta[f"backbone.{name}{LOWRANK_B}"] = factors
            n_lowrank += 1
    delta.update(modeldir.head_tensors(model))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".shipped-", dir=out_dir.parent))  # beside it: the rename stays on one disk
    write_delta(tmp / DELTA_FILE, delta, {"format": "finsent-delta", "rank": str(rank)})
    size = (tmp / DELTA_FILE).stat().st_size
    if size > MAX_BYTES:
        shutil.rmtree(tmp)
        raise ShippedModelError(
            f"delta is {size / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB limit "
            f"({len(full_blocks)} parts trained outright; compress an all-layer fine-tune first, or train fewer top blocks)"
        )
    top_blocks = sum(1 for b in full_blocks if b.startswith("layers."))
    meta = {
        **meta,
        "version": f"{meta['version']}-delta",  # a model of its own: fp16 blocks, evaluated in this form
        "parent_version": meta["version"],
        "training_stages": stages,
        "metrics": None,
        "shipped": {
            "format": "top-blocks delta" if not n_lowrank else f"top-blocks + rank-{rank} delta",
            "top_blocks": top_blocks,
            "lowrank_tensors": n_lowrank,
            "rank": rank if n_lowrank else 0,
            "dtype": "float16 blocks and low-rank factors, float32 heads",
            "base_weights_sha256": weights_sha256(base_backbone),
            "delta_bytes": size,
            "delta_sha256": hashlib.sha256((tmp / DELTA_FILE).read_bytes()).hexdigest(),
        },
    }
    if (out_dir / modeldir.META_FILE).is_file():
        meta = carry_entity_rule(modeldir.read_meta(out_dir), meta)
    modeldir.write_meta(tmp, meta)
    tmp.chmod(0o755)  # mkdtemp makes it private; the shipped folder is read by every user
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    log.info(
        "shipped %s: %d top blocks whole, %d tensors as rank-%d factors, %.1f MB",
        meta["version"],
        top_blocks,
        n_lowrank,
        rank,
        size / 1e6,
    )
    return out_dir


def materialize(
    shipped_dir: str | Path | None = None, models_root: str | Path | None = None, base: str | None = None
) -> Path:
    """Rebuild the full model directory under the state folder (once per version); returns it."""
    shipped_dir = Path(shipped_dir or SHIPPED_DIR)
    meta = modeldir.read_meta(shipped_dir)
    info = meta.get("shipped")
    if not info or not (shipped_dir / DELTA_FILE).is_file():
        raise ShippedModelError(f"{shipped_dir} holds no shipped delta ({DELTA_FILE} and metadata 'shipped')")
    if not isinstance(info, dict) or not all(
        isinstance(info.get(k), str) for k in ("delta_sha256", "base_weights_sha256")
    ):
        raise ShippedModelError(f"{shipped_dir}: metadata 'shipped' lacks delta_sha256 or base_weights_sha256")
    if (shipped_dir / DELTA_FILE).stat().st_size > MAX_BYTES:
        raise ShippedModelError(f"{shipped_dir / DELTA_FILE} is over the {MAX_BYTES / 1e6:.0f} MB limit")
    digest = hashlib.sha256((shipped_dir / DELTA_FILE).read_bytes()).hexdigest()
    if digest != info["delta_sha256"]:
        raise ShippedModelError(
            f"{shipped_dir / DELTA_FILE} is damaged: sha256 {digest[:12]}… != {info['delta_sha256'][:12]}…"
        )
    out = modeldir.under(models_root or config.state_dir() / "models", meta["version"])
    if (out / modeldir.META_FILE).exists():
        _refresh_entity_head(shipped_dir, out, meta)
        _refresh_tagger(shipped_dir, out)
        return out
    delta = read_delta(shipped_dir / DELTA_FILE)  # capped: a bomb is refused before the base is even loaded
    backbone, tok, _ = base_model.load(base)
    found = weights_sha256(backbone)
    if found != info["base_weights_sha256"]:
        raise ShippedModelError(
            f"the base model's weights (sha256 {found[:12]}…) are not the ones this model was made for "
            f"({info['base_weights_sha256'][:12]}…): refusing to apply the delta"
        )
    model = DualHeadClassifier(backbone, len(meta["labels"]["sentiment"]), len(meta["labels"]["topic"]))
    state = backbone.state_dict()
    for key, t in delta.items():
        if not key.startswith("backbone.") or key.endswith(LOWRANK_B):
            continue
        name = key.removeprefix("backbone.").removesuffix(LOWRANK_A)
        if key.endswith(LOWRANK_A):
            b = delta.get(f"backbone.{name}{LOWRANK_B}")
            if name not in state or b is None or (t.shape[0], b.shape[1]) != state[name].shape:
                raise ShippedModelError(f"{DELTA_FILE}: the low-rank delta of {name} does not fit the base model")
            state[name].add_(t.float() @ b.float())
        elif name not in state or state[name].shape != t.shape:
            raise ShippedModelError(f"{DELTA_FILE}: {name} does not fit the base model")
        else:
            state[name].copy_(t.to(torch.float32))
    modeldir.load_heads(model, delta)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    modeldir.save(model, tmp, meta, tok)
    for extra in (modeldir.REPORT_JSON, modeldir.REPORT_MD, "MODEL_CARD.md", ENTITY_HEAD, *MENTION_TAGGER):
        if (shipped_dir / extra).exists():
            shutil.copy2(shipped_dir / extra, tmp / extra)
    try:
        tmp.rename(out)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("materialised shipped model %s into %s", meta["version"], out)
    return out


def _refresh_tagger(shipped_dir: Path, out: Path) -> None:
    """An install made before the shipped model gained (or changed) its mention tagger gets the shipped one."""
    src = [shipped_dir / f for f in MENTION_TAGGER]
    if not all(p.is_file() for p in src):
        return
    if all((out / p.name).is_file() and (out / p.name).read_bytes() == p.read_bytes() for p in src):
        return
    for p in src:
        shutil.copy2(p, out / p.name)


def _refresh_entity_head(shipped_dir: Path, out: Path, meta: dict) -> None:
    """An install made before the shipped model gained its entity head gets the head (and its metadata); one
    made before its entity rule changed gets the new rule."""
    src = shipped_dir / ENTITY_HEAD
    if not src.is_file():
        return
    installed = modeldir.read_meta(out)
    if (out / ENTITY_HEAD).is_file():
        if installed.get("entity_head") != meta.get("entity_head"):  # the same head under a newer rule
            installed["entity_head"] = meta.get("entity_head")
            modeldir.write_meta(out, installed)
        return
    shutil.copy2(src, out / ENTITY_HEAD)
    installed["entity_head"] = meta.get("entity_head")
    if installed.get("metrics") and (meta.get("metrics") or {}).get("entity"):
        installed["metrics"]["entity"] = meta["metrics"]["entity"]
    modeldir.write_meta(out, installed)
    for extra in (modeldir.REPORT_JSON, modeldir.REPORT_MD):
        shutil.copy2(shipped_dir / extra, out / extra)


def attach_entity_head(model_dir: str | Path, out_dir: str | Path | None = None) -> None:
    """Ship the entity head trained on ``model_dir`` (the shipped model's rebuild) with its figures."""
    model_dir, out_dir = Path(model_dir), Path(out_dir or SHIPPED_DIR)
    trained, meta = modeldir.read_meta(model_dir), modeldir.read_meta(out_dir)
    if trained["version"] != meta["version"]:
        raise ShippedModelError(f"{model_dir} is {trained['version']}, not the shipped {meta['version']}")
    shutil.copy2(model_dir / ENTITY_HEAD, out_dir / ENTITY_HEAD)
    meta["entity_head"] = carry_entity_rule(meta, {"entity_head": trained["entity_head"]})["entity_head"]
    meta["entity_head"]["sha256"] = hashlib.sha256((out_dir / ENTITY_HEAD).read_bytes()).hexdigest()
    if trained.get("metrics", {}).get("entity"):
        meta.setdefault("metrics", {})["entity"] = trained["metrics"]["entity"]
    modeldir.write_meta(out_dir, meta)
    for extra in (modeldir.REPORT_JSON, modeldir.REPORT_MD):
        shutil.copy2(model_dir / extra, out_dir / extra)
    report = json.loads((out_dir / modeldir.REPORT_JSON).read_text(encoding="utf-8"))
    modelcard.write(out_dir, meta, report)  # the card shows the head's figures and the rule in use


def attach_report(evaluated_dir: str | Path, out_dir: str | Path | None = None) -> None:
    """Copy an evaluated rebuild's report, card and metrics into the shipped folder."""
    out_dir = Path(out_dir or SHIPPED_DIR)
    evaluated = modeldir.read_meta(evaluated_dir)
    meta = modeldir.read_meta(out_dir)
    if evaluated["version"] != meta["version"]:
        raise ShippedModelError(f"{evaluated_dir} is {evaluated['version']}, not the shipped {meta['version']}")
    meta["metrics"] = evaluated["metrics"]
    modeldir.write_meta(out_dir, meta)
    for extra in (modeldir.REPORT_JSON, modeldir.REPORT_MD, "MODEL_CARD.md"):
        shutil.copy2(Path(evaluated_dir) / extra, out_dir / extra)


def summary(shipped_dir: str | Path | None = None) -> dict:
    meta = modeldir.read_meta(shipped_dir or SHIPPED_DIR)
    return {
        "version": meta["version"],
        "metrics": meta.get("metrics"),
        "shipped": meta.get("shipped"),
        "reproduce": json.dumps(meta.get("training")),
    }
