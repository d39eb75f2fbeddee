"""Batched inference: length-sorted batches, inference mode, and the fastest faithful backend for the machine.

Backends (``precision``): ``fp16`` on CUDA; on the CPU ``bf16`` autocast where
the CPU has native bf16, ``onnx-fp32`` (ONNX Runtime, same labels as torch
fp32) elsewhere, torch ``fp32`` when onnxruntime is missing; ``onnx-int8``
and torch ``int8`` are opt-in (faster, but they change some labels: see
docs/classifier.md#inference-backends). ``FINSENT_PRECISION`` overrides the
automatic choice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.classify.model import modeldir
from pipeline.classify.model.architecture import DualHeadClassifier
from pipeline.classify.model.runtime import cpu_bf16_ok, length_sorted_batches, pick_device

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    sentiment: list[str]
    probs: np.ndarray  # (n, 3) in the order of meta labels.sentiment
    topic: list[str]
    topic_confidence: np.ndarray

    def rows(self) -> list[dict]:
        return [
            {
                "sentiment": s,
                "p_negative": float(p[0]),
                "p_neutral": float(p[1]),
                "p_positive": float(p[2]),
                "topic": t,
                "topic_confidence": float(c),
            }
            for s, p, t, c in zip(self.sentiment, self.probs, self.topic, self.topic_confidence)
        ]


PRECISIONS = ("fp32", "bf16", "fp16", "int8", "onnx-fp32", "onnx-int8")


def auto_precision(device: torch.device) -> str:
    """The fastest faithful backend for this machine (figures: docs/classifier.md#inference-backends)."""
    from pipeline.classify.model import onnx_backend

    if device.type == "cuda":
        return "fp16"
    if cpu_bf16_ok():
        return "bf16"
    return "onnx-fp32" if onnx_backend.available() else "fp32"


class Classifier:
    """A loaded model directory, ready to label texts."""

    def __init__(
        self,
        model: DualHeadClassifier,
        meta: dict,
        tokenizer,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        backend: str = "fp32",
        runner=None,
    ) -> None:
        self.model, self.meta, self.tokenizer, self.device = model, meta, tokenizer, device
        self.autocast_dtype = autocast_dtype
        self.backend = backend
        self.runner = runner  # an ONNX Runtime session for the onnx-* backends; None: torch
        self.sentiments = meta["labels"]["sentiment"]
        self.topics = meta["labels"]["topic"]
        if self.sentiments != ["negative", "neutral", "positive"]:
            raise ValueError(f"unexpected sentiment labels {self.sentiments}")
        self.max_length = int(meta.get("max_length", 96))
        cal = meta.get("calibration") or {}
        self.temperatures = (float(cal.get("sentiment_temperature", 1.0)), float(cal.get("topic_temperature", 1.0)))

    @classmethod
    def load(cls, model_dir: str | Path, device: str | None = None, precision: str = "auto") -> Classifier:
        """``precision``: auto, or one of PRECISIONS (see the module docstring).

        ``FINSENT_PRECISION`` overrides ``auto``.
        """
        import os

        from pipeline.classify.model import onnx_backend

        dev = pick_device(device)
        if precision == "auto":
            precision = os.environ.get("FINSENT_PRECISION", "").strip().lower() or "auto"
        if precision == "auto":
            precision = auto_precision(dev)
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} (known: auto, {', '.join(PRECISIONS)})")
        weights_dtype = torch.float16 if (dev.type == "cuda" and precision == "fp16") else None
        model, meta = modeldir.load(model_dir, torch_dtype=weights_dtype)
        model.to(dev)
        if weights_dtype is not None:
            model.half()
        if precision == "int8":
            if dev.type != "cpu":
                raise ValueError("int8 dynamic quantisation runs on the CPU only")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        tok = modeldir.load_tokenizer(model_dir)
        autocast = torch.bfloat16 if precision == "bf16" else None
        runner = None
        if precision.startswith("onnx-"):
            if dev.type != "cpu":
                raise ValueError("the ONNX Runtime backends run on the CPU only")
            runner = onnx_backend.OnnxRunner(onnx_backend.ensure_export(model, meta, tok, Path(model_dir), precision))
        log.info("loaded model %s on %s (%s)", meta.get("version"), dev, precision)
        return cls(model, meta, tok, dev, autocast, precision, runner)

    @torch.inference_mode()
    def logits(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw (uncalibrated) sentiment and topic logits, in input order."""
        n = len(texts)
        s_logits = np.zeros((n, len(self.sentiments)), dtype=np.float32)
        t_logits = np.zeros((n, len(self.topics)), dtype=np.float32)
        if n == 0:
            return s_logits, t_logits
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length, add_special_tokens=False)
        t0, done = time.monotonic(), 0
        for b, (idx, batch, mask) in enumerate(
            length_sorted_batches(enc["input_ids"], batch_size, self.tokenizer.pad_token_id)
        ):
            if self.runner is not None:
                s_logits[idx], t_logits[idx] = self.runner(batch, mask)
            else:
                batch, mask = batch.to(self.device), mask.to(self.device)
                if self.autocast_dtype is not None:
                    with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                        out = self.model(batch, mask)
                else:
                    out = self.model(batch, mask)
                s_logits[idx] = out["sentiment_logits"].float().cpu().numpy()
                t_logits[idx] = out["topic_logits"].float().cpu().numpy()
            done += len(idx)
            if progress and (b % 20 == 0 or done == n):
                rate = done / max(time.monotonic() - t0, 1e-9)
                log.info("predicted %d/%d (%.0f texts/s, ETA %.0f s)", done, n, rate, (n - done) / max(rate, 1e-9))
        return s_logits, t_logits

    def predict(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> Predictions:
        """Labels and calibrated probabilities (the model's fitted temperatures, 1.0 if it has none)."""
        from pipeline.classify.model.calibrate import softmax

        s_logits, t_logits = self.logits(texts, batch_size, progress)
        probs = softmax(s_logits, self.temperatures[0]).astype(np.float32)
        topic_probs = softmax(t_logits, self.temperatures[1]).astype(np.float32)
        sentiment = [self.sentiments[i] for i in probs.argmax(1)]
        topic = [self.topics[i] for i in topic_probs.argmax(1)]
        return Predictions(sentiment, probs, topic, topic_probs.max(1))
