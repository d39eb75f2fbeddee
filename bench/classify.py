"""Classification throughput, peak memory and fidelity per backend and batch size.

For each backend (torch fp32, the automatic choice, ONNX Runtime fp32 and
int8, torch int8) and batch size, a fresh process loads the model and labels
N held-out texts (length-sorted batches, inference mode), reporting stories/s
and peak memory (RSS on CPU, max allocated on CUDA). Label agreement is
measured against the first backend (torch fp32, the reference); with
``--heldout`` every backend also labels every held-out set and the table gains
their macro-F1. ONNX exports are made before timing (once per model version,
under the state folder). In the same run it measures the baselines: TF-IDF +
logistic regression (fit on the training split, timed on predict only) and the
VADER lexicon. The CPU flags are printed with the figures.

    .state/venv/bin/python -m bench.classify                  # active model, CPU (+ CUDA if present)
    .state/venv/bin/python -m bench.classify --model DIR --batch-sizes 64 --n 1024 --heldout
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .state/venv/bin/python -m bench.classify ...  # torch as on
        an fp32-only AVX2 CPU (ONNX Runtime ignores these variables and keeps its own kernels)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(model_dir: str, device: str, batch_size: int, n: int, precision: str, heldout: bool) -> dict:
    import torch

    from pipeline.classify.datasets.data import load_task
    from pipeline.classify.model.predict import Classifier

    texts = load_task("sentiment").test["text"].tolist()
    texts = (texts * (n // len(texts) + 1))[:n]
    clf = Classifier.load(model_dir, device=device, precision=precision)  # ONNX: exported here, before timing
    clf.predict(texts[: batch_size * 2], batch_size=batch_size)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    clf.predict(texts, batch_size=batch_size)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    el = time.perf_counter() - t
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    out = {
        "device": device,
        "precision": clf.backend,
        "batch_size": batch_size,
        "n": n,
        "seconds": el,
        "stories_per_s": n / el,
        "peak_mib": peak,
        "labels": clf.predict(texts[: min(n, 2388)], batch_size=batch_size).sentiment,
        "macro_f1": {},
    }
    if heldout:
        from sklearn.metrics import f1_score

        from pipeline.classify.evaluation.evaluate import heldout_sets

        out["labels"] = []
        for name, (task, df) in heldout_sets().items():
            pred = clf.predict(df["text"].tolist(), batch_size=batch_size)
            labels = pred.sentiment if task == "sentiment" else pred.topic
            out["labels"] += labels
            out["macro_f1"][name] = f1_score(df["label"].tolist(), labels, average="macro")
    return out


def baselines(n: int) -> list[dict]:
    from pipeline.classify.datasets.data import load_task
    from pipeline.classify.evaluation.peers import tfidf_lr, vader_labels

    sent = load_task("sentiment")
    texts = (sent.test["text"].tolist() * (n // len(sent.test) + 1))[:n]
    lr = tfidf_lr(
        sent.train["text"].tolist(),
        sent.train["label"].tolist(),
        sent.val["text"].tolist(),
        sent.val["label"].tolist(),
        "macro_f1",
    )
    out = []
    t = time.perf_counter()
    lr.predict(texts)
    out.append({"system": "baseline: TF-IDF + LR (sentiment only)", "stories_per_s": n / (time.perf_counter() - t)})
    t = time.perf_counter()
    vader_labels(texts)
    out.append({"system": "baseline: VADER lexicon (sentiment only)", "stories_per_s": n / (time.perf_counter() - t)})
    return out


def active_model_dir() -> str:
    from pipeline import db
    from pipeline.classify.release import registry

    conn = db.connect()
    try:
        model = registry.active(conn)
    finally:
        conn.close()
    if not model:
        raise SystemExit("no active model: pass --model DIR or run `make demo` / `python -m pipeline train`")
    return model["path"]


def main(argv: list[str] | None = None) -> None:
    from pipeline.classify.model.predict import PRECISIONS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the active model)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--n", type=int, default=1024, help="stories per measurement")
    ap.add_argument("--precision", default="auto", choices=["auto", *PRECISIONS])
    ap.add_argument(
        "--precisions",
        nargs="+",
        default=["fp32", "auto", "bf16", "onnx-fp32", "onnx-int8", "int8"],
        help="CPU backends to compare; labels are compared with the first (the faithful reference)",
    )
    ap.add_argument("--heldout", action="store_true", help="also label every held-out set: macro-F1 per backend")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        dev, bs = args.worker.rsplit(":", 1)[0], int(args.worker.rsplit(":", 1)[1])
        print(json.dumps(worker(args.model, dev, bs, args.n, args.precision, args.heldout)))
        return
    import torch

    model_dir = args.model or active_model_dir()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    plan = [("cpu", p) for p in dict.fromkeys(args.precisions)] + [(d, "auto") for d in devices if d != "cpu"]
    for dev, precision in plan:
        for bs in args.batch_sizes:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.classify",
                    "--model",
                    model_dir,
                    "--n",
                    str(args.n),
                    "--precision",
                    precision,
                    "--worker",
                    f"{dev}:{bs}",
                ]
                + (["--heldout"] if args.heldout else []),
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-3000:])
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    base = baselines(args.n)
    print(
        f"\nclassify benchmark: {args.n} held-out headlines per row; model {Path(model_dir).name}; "
        f"{os.cpu_count()} CPU cores; torch {torch.__version__}; "
        f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}"
    )
    from bench.peers import cpu_info

    print(f"CPU: {json.dumps(cpu_info())}")
    ref = rows[0]
    sets = list(ref["macro_f1"])
    print(
        f"{'system':<44} {'batch':>6} {'stories/s':>10} {'vs ref':>7} {'peak MiB':>9} {'agreement':>10}"
        + "".join(f" {s[:14]:>14}" for s in sets)
    )
    for r in rows:
        label = f"finsent model on {r['device']} ({r['precision']})"
        agree = sum(a == b for a, b in zip(r["labels"], ref["labels"], strict=False)) / max(1, len(ref["labels"]))
        speedup = r["stories_per_s"] / ref["stories_per_s"]
        print(
            f"{label:<44} {r['batch_size']:>6} {r['stories_per_s']:>10.1f} {speedup:>6.2f}x {r['peak_mib']:>9.0f} "
            f"{agree:>10.4f}" + "".join(f" {r['macro_f1'].get(s, float('nan')):>14.3f}" for s in sets)
        )
    for b in base:
        print(f"{b['system']:<44} {'-':>6} {b['stories_per_s']:>10.0f} {'-':>9}")


if __name__ == "__main__":
    main()
