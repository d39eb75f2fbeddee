"""The model that ships with the product: a compact delta over the packaged base model.

Full weights of a 135M model do not belong in git. A model trained with the
``top`` recipe differs from its base only in its top blocks, the final norm
and the two heads, so the shipped form is exactly that: those tensors in one
safetensors file (blocks and norm in fp16, heads in fp32; ~21 MB for three
blocks), with the model's metadata, its held-out report and model card.

``materialize`` rebuilds a normal model directory from the base and the
delta, after checking that the base's weights hash to the value recorded at
export (a different base would silently give a different model). The report
travels with the delta, so registering it needs no re-evaluation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pipeline import config
from pipeline.classify import base as base_model
from pipeline.classify import modeldir
from pipeline.classify.model import DualHeadClassifier

log = logging.getLogger(__name__)

SHIPPED_DIR = config.REPO_ROOT / "data" / "model"
ENTITY_HEAD = "entity_head.safetensors"  # pipeline.entities.sentiment.HEAD_FILE
DELTA_FILE = "delta.safetensors"
MAX_BYTES = 30 * 1024 * 1024


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


def export(model_dir: str | Path, out_dir: str | Path | None = None, base: str | None = None) -> Path:
    """Write the compact delta of a trained ``top`` model (plus metadata, report, card) to ``out_dir``."""
    model_dir, out_dir = Path(model_dir), Path(out_dir or SHIPPED_DIR)
    model, meta = modeldir.load(model_dir)
    k = int(meta.get("training_details", {}).get("trained_layers") or 0)
    if meta["method"] != "top" or k <= 0:
        raise ShippedModelError(f"{model_dir}: only 'top' models ship as a delta (this one is {meta['method']!r})")
    base_backbone, _, _ = base_model.load(base or meta["training"].get("base_model"))
    n = len(model.backbone.layers)
    delta = {}
    for name, t in model.backbone.state_dict().items():
        in_top = name.startswith("norm.") or any(name.startswith(f"layers.{i}.") for i in range(n - k, n))
        if in_top:
            delta[f"backbone.{name}"] = t.to(torch.float16).contiguous()
        elif not torch.equal(t, base_backbone.state_dict()[name]):
            raise ShippedModelError(f"{model_dir}: {name} differs from the base, but only the top {k} blocks may")
    delta.update(modeldir.head_tensors(model))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".shipped-", dir=out_dir.parent))  # beside it: the rename stays on one disk
    save_file(delta, str(tmp / DELTA_FILE), metadata={"format": "finsent-top-delta", "layers": str(k)})
    size = (tmp / DELTA_FILE).stat().st_size
    if size > MAX_BYTES:
        shutil.rmtree(tmp)
        raise ShippedModelError(f"delta is {size / 2**20:.1f} MiB, over the {MAX_BYTES / 2**20:.0f} MiB limit")
    meta = {
        **meta,
        "version": f"{meta['version']}-delta",  # a model of its own: fp16 blocks, evaluated in this form
        "parent_version": meta["version"],
        "metrics": None,
        "shipped": {
            "format": "top-blocks delta",
            "top_blocks": k,
            "dtype": "float16 blocks, float32 heads",
            "base_weights_sha256": weights_sha256(base_backbone),
            "delta_bytes": size,
            "delta_sha256": hashlib.sha256((tmp / DELTA_FILE).read_bytes()).hexdigest(),
        },
    }
    modeldir.write_meta(tmp, meta)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    log.info("shipped %s: %d top blocks, %.1f MiB", meta["version"], k, size / 2**20)
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
    digest = hashlib.sha256((shipped_dir / DELTA_FILE).read_bytes()).hexdigest()
    if digest != info["delta_sha256"]:
        raise ShippedModelError(
            f"{shipped_dir / DELTA_FILE} is damaged: sha256 {digest[:12]}… != {info['delta_sha256'][:12]}…"
        )
    out = Path(models_root or config.state_dir() / "models") / meta["version"]
    if (out / modeldir.META_FILE).exists():
        _refresh_entity_head(shipped_dir, out, meta)
        return out
    backbone, tok, _ = base_model.load(base)
    found = weights_sha256(backbone)
    if found != info["base_weights_sha256"]:
        raise ShippedModelError(
            f"the base model's weights (sha256 {found[:12]}…) are not the ones this model was made for "
            f"({info['base_weights_sha256'][:12]}…): refusing to apply the delta"
        )
    delta = load_file(str(shipped_dir / DELTA_FILE))
    model = DualHeadClassifier(backbone, len(meta["labels"]["sentiment"]), len(meta["labels"]["topic"]))
    state = backbone.state_dict()
    for key, t in delta.items():
        if key.startswith("backbone."):
            name = key.removeprefix("backbone.")
            if name not in state or state[name].shape != t.shape:
                raise ShippedModelError(f"{DELTA_FILE}: {name} does not fit the base model")
            state[name].copy_(t.to(torch.float32))
    modeldir.load_heads(model, delta)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    modeldir.save(model, tmp, meta, tok)
    for extra in (modeldir.REPORT_JSON, modeldir.REPORT_MD, "MODEL_CARD.md", ENTITY_HEAD):
        if (shipped_dir / extra).exists():
            shutil.copy2(shipped_dir / extra, tmp / extra)
    try:
        tmp.rename(out)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("materialised shipped model %s into %s", meta["version"], out)
    return out


def _refresh_entity_head(shipped_dir: Path, out: Path, meta: dict) -> None:
    """An install made before the shipped model gained its entity head gets the head (and its metadata)."""
    src = shipped_dir / ENTITY_HEAD
    if not src.is_file() or (out / ENTITY_HEAD).is_file():
        return
    shutil.copy2(src, out / ENTITY_HEAD)
    installed = modeldir.read_meta(out)
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
    meta["entity_head"] = trained["entity_head"]
    meta["entity_head"]["sha256"] = hashlib.sha256((out_dir / ENTITY_HEAD).read_bytes()).hexdigest()
    if trained.get("metrics", {}).get("entity"):
        meta.setdefault("metrics", {})["entity"] = trained["metrics"]["entity"]
    modeldir.write_meta(out_dir, meta)
    for extra in (modeldir.REPORT_JSON, modeldir.REPORT_MD):
        shutil.copy2(model_dir / extra, out_dir / extra)


def ship(model_dir: str | Path, out_dir: str | Path | None = None, base: str | None = None) -> Path:
    """Export the delta, rebuild the model from it, evaluate *that* (the form users get) and attach its report."""
    from pipeline.classify.evaluate import evaluate

    out_dir = export(model_dir, out_dir, base)
    rebuilt = materialize(out_dir, base=base)
    evaluate(rebuilt)
    attach_report(rebuilt, out_dir)
    return out_dir


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
