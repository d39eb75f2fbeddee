"""One table: the model and its peers on every held-out set, with speed and the CPU it ran on.

Scores the active model (or ``--model DIR``) and the peers (TF-IDF+LR and
MiniLM+LR trained on the model's own training split, VADER, finvader) on the
tweet held-out set and the three news-headline sets, through the same code
as ``python -m pipeline evaluate`` (nothing is re-implemented here), then
prints macro-F1 per set, pooled news macro-F1 with its 95 % interval, accuracy
and texts/s, and the CPU model and flags that matter for speed.

    .state/venv/bin/python -m bench.peers [--model DIR] [--peers tfidf_lr vader finvader minilm_lr]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def cpu_info() -> dict:
    flags, model = set(), platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    wanted = ["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "avx_vnni"]
    import os

    from pipeline.classify.model.runtime import cpu_bf16_ok

    out = {
        "model": model,
        "cores": os.cpu_count(),
        "flags": [f for f in wanted if f in flags],
        "native_bf16": "avx512_bf16" in flags or "amx_bf16" in flags,
        "bf16_used": cpu_bf16_ok(),
    }
    # an emulated fp32-only CPU: torch's kernels held to AVX2 (ONNX Runtime ignores these)
    for var in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"):
        if os.environ.get(var):
            out[var] = os.environ[var]
    return out


def main(argv: list[str] | None = None) -> None:
    from pipeline import db
    from pipeline.classify.evaluation.evaluate import DEFAULT_PEERS, evaluate
    from pipeline.classify.release import registry

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the active model)")
    ap.add_argument("--peers", nargs="*", default=list(DEFAULT_PEERS))
    args = ap.parse_args(argv)
    model_dir = args.model
    if model_dir is None:
        conn = db.connect()
        try:
            model_dir = registry.active(conn)["path"]
        finally:
            conn.close()
    t0 = time.monotonic()
    report = evaluate(model_dir, peer_names=tuple(args.peers))
    rows = []
    for name, sysm in report["systems"].items():
        if "skipped" in sysm:
            rows.append({"system": name, "skipped": sysm["skipped"]})
            continue
        row = {"system": name, **{k: round(m["macro_f1"], 3) for k, m in sysm["sets"].items()}}
        if "news_pooled" in sysm:
            p = sysm["news_pooled"]
            row["news_pooled"] = f"{p['macro_f1']:.3f} [{p['macro_f1_ci95'][0]:.3f}, {p['macro_f1_ci95'][1]:.3f}]"
            row["news_accuracy"] = round(p["accuracy"], 3)
        if "throughput_texts_per_s" in sysm:
            row["texts_per_s"] = sysm["throughput_texts_per_s"]
        rows.append(row)
    cols = [
        "system",
        "news_pooled",
        "news_accuracy",
        "finentity",
        "wsj",
        "sentfin_test",
        "tfns_sentiment_valid",
        "tfns_topic_valid",
        "texts_per_s",
    ]
    print(f"CPU: {json.dumps(cpu_info())}")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print(
            "| " + " | ".join(str(r.get(c, r.get("skipped", "-") if c == "news_pooled" else "-")) for c in cols) + " |"
        )
    print(
        f"(tfns_topic_valid is topic macro-F1; the rest sentiment macro-F1. {time.monotonic() - t0:.0f} s in all; "
        f"report: {Path(model_dir) / 'report.md'})"
    )


if __name__ == "__main__":
    main()
