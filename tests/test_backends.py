"""CPU inference backends on a tiny real model: ONNX export fidelity, the int8 rescaling, atomic exports, choice."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline.classify.model import onnx_backend, predict
from pipeline.classify.model.predict import Classifier

TEXTS = [
    "Oil majors slump as crude slides below $60",
    "Fed holds rates steady, signals patience",
    "Acme beats estimates while Beta warns on margins",
    "x",
    "Shares of the world's largest chipmaker rallied for a third straight session after upbeat guidance",
]


@pytest.fixture()
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("FINSENT_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def test_smoothing_rescales_without_changing_the_function(tiny_models):
    from pipeline.classify.model import modeldir
    from pipeline.classify.model.runtime import pad_batch

    model, _ = modeldir.load(tiny_models[1])
    model.eval()
    tok = modeldir.load_tokenizer(tiny_models[1])
    ids, mask = pad_batch(tok(TEXTS, add_special_tokens=False)["input_ids"], tok.pad_token_id)
    smoothed = copy.deepcopy(model)
    onnx_backend.smooth(smoothed, tok)
    layer, before = smoothed.backbone.layers[0], model.backbone.layers[0]
    assert not torch.equal(layer.self_attn.q_proj.weight, before.self_attn.q_proj.weight)  # it did rescale
    assert not torch.equal(layer.self_attn.o_proj.weight, before.self_attn.o_proj.weight)  # (GQA: 2 heads, 1 kv)
    with torch.no_grad():
        a, b = model(ids, mask), smoothed(ids, mask)
    for key in ("sentiment_logits", "topic_logits"):
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_onnx_fp32_gives_the_torch_logits_and_exports_once(tiny_models, state):
    ref = Classifier.load(tiny_models[1], precision="fp32")
    clf = Classifier.load(tiny_models[1], precision="onnx-fp32")
    assert clf.backend == "onnx-fp32" and clf.runner is not None
    for got, want in zip(clf.logits(TEXTS, batch_size=2), ref.logits(TEXTS, batch_size=2)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert clf.predict(TEXTS).sentiment == ref.predict(TEXTS).sentiment
    exports = list((state / "exports").glob("*/onnx-fp32/model.onnx"))
    assert len(exports) == 1
    info = json.loads((exports[0].parent / "export.json").read_text())
    assert info["backend"] == "onnx-fp32" and info["model_version"] == ref.meta["version"]
    stamp = exports[0].stat().st_mtime_ns
    Classifier.load(tiny_models[1], precision="onnx-fp32")  # a second worker reuses the export
    assert exports[0].stat().st_mtime_ns == stamp
    assert [p.name for p in exports[0].parent.parent.iterdir()] == ["onnx-fp32"]  # no temporary folder left


def test_onnx_int8_labels_every_text(tiny_models, state):
    clf = Classifier.load(tiny_models[1], precision="onnx-int8")
    s, t = clf.logits(TEXTS, batch_size=4)
    assert s.shape == (len(TEXTS), 3) and t.shape[0] == len(TEXTS) and np.isfinite(s).all() and np.isfinite(t).all()
    assert len(clf.predict(TEXTS).sentiment) == len(TEXTS)
    assert (state / "exports").glob("*/onnx-int8/model.onnx")


def test_concurrent_workers_never_read_a_half_written_export(tiny_models, state):
    """Two processes export the same model at once: both load a complete file and one export remains."""
    code = f"""
import sys
from pipeline.classify.model.predict import Classifier
clf = Classifier.load({str(tiny_models[0])!r}, precision="onnx-fp32")
print(len(clf.predict(["Oil slumps"]).sentiment))
"""
    env = {**__import__("os").environ, "FINSENT_HOME": str(state)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert [o[0].strip().splitlines()[-1] for o in outs] == ["1", "1"]
    folders = list((state / "exports").iterdir())
    assert len(folders) == 1 and [p.name for p in folders[0].iterdir()] == ["onnx-fp32"]


def test_the_automatic_choice_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(predict, "cpu_bf16_ok", lambda: True)
    assert predict.auto_precision(torch.device("cpu")) == "bf16"
    monkeypatch.setattr(predict, "cpu_bf16_ok", lambda: False)
    assert predict.auto_precision(torch.device("cpu")) == "onnx-fp32"
    monkeypatch.setattr(onnx_backend, "available", lambda: False)
    assert predict.auto_precision(torch.device("cpu")) == "fp32"
    assert predict.auto_precision(torch.device("cuda")) == "fp16"


def test_bf16_is_not_chosen_when_torch_is_held_below_avx512(monkeypatch):
    from pipeline.classify.model import runtime

    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert runtime.cpu_bf16_ok() is False
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert runtime.cpu_bf16_ok() is False


def test_an_unknown_backend_is_refused(tiny_models, monkeypatch):
    monkeypatch.setenv("FINSENT_PRECISION", "fp8")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        Classifier.load(tiny_models[0])
