"""Fit the mention tagger (``detect``) on the expert companies set's training split and judge it on the
held-out fifth: ``python -m pipeline entities train-detector [--model DIR]``.

The recipe (layer, width, threshold, data) was chosen leaving one publisher family out (the 2023 archive vs the
2018-19 Reuters/CNBC/Guardian headlines, see docs/companies.md); the held-out fifth only reports.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from pipeline.entities import catalogue, detect
from pipeline.entities import evaluate as link_eval
from pipeline.entities.link import Linker

log = logging.getLogger(__name__)


def train_detector(model_dir: str | Path, device: str | None = None, epochs: int = 6) -> dict:
    """Fit, judge and store the tagger beside ``model_dir``; returns the held-out figures."""
    t0 = time.monotonic()
    cat = catalogue.load()
    linker = Linker(cat)
    recs = link_eval.expert_companies()
    train = [r for r in recs if not detect.heldout(r["text"])]
    test = [r for r in recs if detect.heldout(r["text"])]
    clf = detect.load_classifier(model_dir, device)
    log.info("mention tagger: %d training headlines, %d held out", len(train), len(test))
    head = detect.fit(
        clf, [r["text"] for r in train], [[(s, e) for s, e, _ in r["gold"]] for r in train], linker, epochs=epochs
    )
    meta = {
        "layer": detect.layer_for(clf),
        "hidden": detect.HIDDEN,
        "members": detect.MEMBERS,
        "threshold": detect.THRESHOLD,
        "unlinked_threshold": detect.UNLINKED_THRESHOLD,
        "shapes": list(detect.SHAPES),
        "trained_on": f"expert companies set, training split ({len(train)} headlines)",
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "catalogue": cat.fingerprint(),
    }
    finder = detect.Finder(linker, detect.MentionDetector(clf, head, meta))
    texts = [r["text"] for r in test]
    figures = {
        "rules": link_eval.span_scores([linker.link(t) for t in texts], test),
        "rules+detector": link_eval.span_scores(finder.find_many(texts), test),
    }
    meta["heldout"] = figures
    detect.save(head, model_dir, meta)
    log.info("mention tagger held-out figures: %s", figures)
    return {
        "model": str(model_dir),
        "heldout_headlines": len(test),
        **figures,
        "seconds": round(time.monotonic() - t0, 1),
    }
