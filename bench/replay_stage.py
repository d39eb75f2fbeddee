"""Replay a model's last recorded training stage with today's code; compare its labels with the model's own.

    python -m bench.replay_stage --model .state/models/VERSION [--init_model DIR] [--limit N]

Where the code of a recipe changes (the ``blend`` refit moved from a torch L-BFGS softmax to scikit-learn's
logistic regression, same objective), this says whether ``make model`` still reproduces the model: the stage's
recipe is read back from the model's metadata by ``arguments.parse``, trained again from the same parent, and
both models label the demo's 4,324 real 2023 headlines (``data/history/``). Prints agreement per head, the
largest sentiment-probability difference and the class shares.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from pipeline import config


def main(argv: list[str] | None = None) -> dict:
    from bench.peers import cpu_info
    from pipeline.classify.model import modeldir
    from pipeline.classify.model.predict import Classifier
    from pipeline.classify.training.arguments import NOT_RECIPE, parse
    from pipeline.classify.training.train import train

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a trained (materialised) model folder")
    ap.add_argument("--init_model", help="its parent, where the recorded path is not on this machine")
    ap.add_argument("--limit", type=int, help="label only the first N headlines")
    ap.add_argument("--out", default=str(config.state_dir() / "replay-models"))
    opts = ap.parse_args(argv)
    stage = modeldir.read_meta(opts.model)["training_stages"][-1]
    args, targs = parse({k: v for k, v in stage.items() if k not in NOT_RECIPE})
    args.init_model = opts.init_model or args.init_model
    args.output_root = opts.out
    t0 = time.monotonic()
    again = train(args, targs)
    seconds = time.monotonic() - t0
    texts = pd.read_csv(config.REPO_ROOT / "data" / "history" / "headlines_2023_bank_crisis.csv.gz")["title"]
    texts = texts.astype(str).tolist()[: opts.limit]
    a, b = Classifier.load(opts.model).predict(texts), Classifier.load(again).predict(texts)
    out = {
        "machine": cpu_info(),
        "stage": stage["method"],
        "replayed": str(again),
        "train_seconds": round(seconds, 1),
        "texts": len(texts),
        "sentiment_agreement": round(float(np.mean(np.array(a.sentiment) == np.array(b.sentiment))), 4),
        "topic_agreement": round(float(np.mean(np.array(a.topic) == np.array(b.topic))), 4),
        "max_sentiment_prob_diff": round(float(np.abs(a.probs - b.probs).max()), 4),
        "shares": {
            "model": pd.Series(a.sentiment).value_counts(normalize=True).round(4).to_dict(),
            "replay": pd.Series(b.sentiment).value_counts(normalize=True).round(4).to_dict(),
        },
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
