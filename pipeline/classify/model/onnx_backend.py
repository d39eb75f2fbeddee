"""ONNX Runtime backends for CPU inference: export once per model version, run with onnxruntime.

``onnx-fp32`` is the same computation as the torch fp32 path (labels agree;
logits differ by float rounding only). ``onnx-int8`` is dynamic int8
quantisation of the backbone's weight matrices, made usable by two measured
steps (``bench.classify`` and docs/classifier.md#inference-backends):

* SmoothQuant-style rescaling (alpha 0.8) before export, exact in fp32: each
  linear layer's input channels are divided by a per-channel scale folded
  into the RMSNorm weight (q/k/v, gate/up), the up projection (down) or the
  value projection (o), and its weight columns multiplied by the same scale.
  The activation outliers of a decoder LM then no longer set the whole
  tensor's int8 range. Scales come from 512 training headlines.
* the MLP down projections, whose inputs carry the largest outliers, and the
  two heads stay fp32.

Exports live under ``<state>/exports/<version>/<backend>/`` (never in the
committed model) and are written to a temporary folder that is renamed into
place, so concurrent workers either find a complete export or make their own
and the first rename wins; nobody reads a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline import config

log = logging.getLogger(__name__)

BACKENDS = ("onnx-fp32", "onnx-int8")
SMOOTH_ALPHA = 0.8
CALIBRATION_TEXTS = 512
EXPORT_FORMAT = 1  # bump when the export recipe changes: old exports are then ignored


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_dir(model_dir: Path, meta: dict, backend: str) -> Path:
    """Where this model version's export for ``backend`` lives (version + weights digest + recipe)."""
    digest = hashlib.sha256(
        json.dumps(
            {"format": EXPORT_FORMAT, "alpha": SMOOTH_ALPHA, "weights": _weights_digest(model_dir)}, sort_keys=True
        ).encode()
    ).hexdigest()[:12]
    name = f"{meta.get('version') or Path(model_dir).name}-{digest}"
    return config.state_dir() / "exports" / name / backend


def _weights_digest(model_dir: Path) -> str:
    """Sizes and mtimes of the model's weight files: cheap, and changes when they are rewritten."""
    parts = []
    for p in sorted(Path(model_dir).rglob("*.safetensors")):
        st = p.stat()
        parts.append(f"{p.relative_to(model_dir)}:{st.st_size}:{int(st.st_mtime)}")
    return ";".join(parts)


class _Logits(torch.nn.Module):
    """(input_ids, attention_mask) -> (sentiment logits, topic logits): the graph ONNX needs."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        out = self.model(input_ids, attention_mask)
        return out["sentiment_logits"], out["topic_logits"]


def ensure_export(model, meta: dict, tokenizer, model_dir: Path, backend: str) -> Path:
    """The path of the exported ``model.onnx`` for ``backend``, exporting it first if no worker has."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown ONNX backend {backend!r} (known: {', '.join(BACKENDS)})")
    final = export_dir(model_dir, meta, backend)
    if (final / "model.onnx").exists():
        return final / "model.onnx"
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{backend}-", dir=final.parent))
    try:
        t0 = time.monotonic()
        log.info("exporting %s for %s to %s (once per model version)", backend, meta.get("version"), final)
        _export(model, tokenizer, tmp, backend)
        (tmp / "export.json").write_text(
            json.dumps(
                {
                    "backend": backend,
                    "model_version": meta.get("version"),
                    "format": EXPORT_FORMAT,
                    "smooth_alpha": SMOOTH_ALPHA if backend == "onnx-int8" else None,
                    "seconds": round(time.monotonic() - t0, 1),
                    "torch": torch.__version__,
                },
                indent=2,
            )
        )
        try:
            os.rename(tmp, final)  # atomic; fails if another worker got there first
        except OSError:
            if not (final / "model.onnx").exists():
                raise
            log.info("another worker finished the %s export first; using it", backend)
        else:
            log.info("exported %s in %.0f s", backend, time.monotonic() - t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / "model.onnx"


def _export(model, tokenizer, out: Path, backend: str) -> None:
    import copy

    work = copy.deepcopy(model).float().eval()
    if backend == "onnx-int8":
        smooth(work, tokenizer)
    ids = torch.randint(0, 100, (2, 8))
    mask = torch.ones_like(ids)
    batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("seq", min=2, max=4096)
    fp32 = out / ("model.onnx" if backend == "onnx-fp32" else "fp32.onnx")
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            _Logits(work),
            (ids, mask),
            dynamo=True,
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            input_names=["input_ids", "attention_mask"],
            output_names=["sentiment_logits", "topic_logits"],
            optimize=True,
            verbose=False,
        )
    program.save(str(fp32))
    if backend == "onnx-int8":
        _quantize(fp32, out / "model.onnx")
        fp32.unlink()


@torch.no_grad()
def smooth(model, tokenizer, alpha: float = SMOOTH_ALPHA) -> None:
    """Rescale in place so that int8 activations lose less; the fp32 function is unchanged (tested)."""
    from pipeline.classify.datasets.data import load_task
    from pipeline.classify.model.runtime import length_sorted_batches

    backbone = model.backbone
    layers, cfg = backbone.layers, backbone.config
    amax: dict[str, torch.Tensor] = {}

    def record(name):
        def hook(_mod, inp):
            x = inp[0].detach().abs().reshape(-1, inp[0].shape[-1]).amax(0).float()
            amax[name] = torch.maximum(amax[name], x) if name in amax else x

        return hook

    hooks = []
    for i, layer in enumerate(layers):
        for name, mod in (
            ("q", layer.self_attn.q_proj),
            ("o", layer.self_attn.o_proj),
            ("gate", layer.mlp.gate_proj),
            ("down", layer.mlp.down_proj),
        ):
            hooks.append(mod.register_forward_pre_hook(record(f"{i}.{name}")))
    try:
        texts = load_task("sentiment").train["text"].tolist()[:CALIBRATION_TEXTS]  # training rows only
        enc = tokenizer(texts, truncation=True, max_length=96, add_special_tokens=False)["input_ids"]
        for _idx, ids, mask in length_sorted_batches(enc, 64, tokenizer.pad_token_id):
            model(ids, mask)
    finally:
        for h in hooks:
            h.remove()

    def scale(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (a.clamp(min=1e-5) ** alpha / w.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)

    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    dim, group = cfg.hidden_size // heads, heads // kv
    for i, layer in enumerate(layers):
        att, mlp = layer.self_attn, layer.mlp
        w = torch.stack([m.weight.abs().amax(0) for m in (att.q_proj, att.k_proj, att.v_proj)]).amax(0)
        s = scale(amax[f"{i}.q"], w)
        layer.input_layernorm.weight.div_(s)
        for m in (att.q_proj, att.k_proj, att.v_proj):
            m.weight.mul_(s)
        w = torch.stack([m.weight.abs().amax(0) for m in (mlp.gate_proj, mlp.up_proj)]).amax(0)
        s = scale(amax[f"{i}.gate"], w)
        layer.post_attention_layernorm.weight.div_(s)
        for m in (mlp.gate_proj, mlp.up_proj):
            m.weight.mul_(s)
        s = scale(amax[f"{i}.down"], mlp.down_proj.weight.abs().amax(0))
        mlp.up_proj.weight.div_(s[:, None])
        mlp.down_proj.weight.mul_(s)
        # o_proj's input channel (head h, d) is value channel (h // group, d): one scale per value channel
        a = amax[f"{i}.o"].view(kv, group, dim).amax(1)
        w = att.o_proj.weight.abs().amax(0).view(kv, group, dim).amax(1)
        s = scale(a, w)
        att.v_proj.weight.div_(s.reshape(-1)[:, None])
        att.o_proj.weight.mul_(s[:, None, :].expand(kv, group, dim).reshape(-1))


def _quantize(src: Path, dst: Path) -> None:
    """Dynamic int8 (per-channel weights) for the weight matmuls, except the down projections and the heads."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    matmuls = [n for n in graph.node if n.op_type in ("MatMul", "Gemm")]
    with_weight = [n for n in matmuls if any(i in weights for i in n.input)]
    heads = [n for n in with_weight if any("head" in i for i in n.input)]
    body = [n for n in with_weight if n not in heads]
    if len(body) % 7:
        raise RuntimeError(f"unexpected graph: {len(body)} weight matmuls is not 7 per decoder layer")
    keep = [n.name for n in matmuls if n not in with_weight]  # activation x activation (attention)
    keep += [n.name for n in heads] + [n.name for k, n in enumerate(body) if k % 7 == 6]  # q k v o gate up DOWN
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=keep)


class OnnxRunner:
    """An onnxruntime session over an export: ``(input_ids, attention_mask) -> (sentiment, topic)`` logits."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        self.path = path
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        s, t = self.session.run(
            None,
            {"input_ids": input_ids.cpu().numpy().astype(np.int64), "attention_mask": attention_mask.cpu().numpy()},
        )
        return s, t
