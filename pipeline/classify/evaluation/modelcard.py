"""A model card for every evaluated model version (``MODEL_CARD.md`` beside its report).

Written from the model's metadata and held-out report, so it can never
disagree with them: data sources and sizes, held-out figures per set with
intervals, calibration, intended use and known weaknesses.
"""

from __future__ import annotations

from pathlib import Path

CARD_FILE = "MODEL_CARD.md"

WEAKNESSES = [
    "English only, trained on the sources above; on news sources it never saw (other publishers and annotators) "
    "it scores far below its held-out figures (docs/classifier.md, leave one source out); other languages and "
    "long article text are out of its training distribution.",
    "One label per story: a headline about two companies with opposite news gets one sentiment "
    "(see the company-level work).",
    "Topics are the 20 TFNS topics; a headline on another subject is forced into one of them (the expert-labelled "
    "news split measures topic accuracy on news).",
    "Sentiment here is the tone of the news for its subject, not a trading signal.",
]
WEAKNESSES_ENTITY = (
    "Company labels are trained on Indian market headlines (SEntFiN) only; on Reuters-style passages "
    "(FinEntity) they barely beat the story label overall."
)


def render(meta: dict, report: dict) -> str:
    s = report["summary"]
    data = meta.get("training_data", {})
    cal = report.get("calibration", {})
    lines = [
        f"# Model card: finsent {meta['version']}",
        "",
        f"- **Architecture**: {meta.get('architecture', '')}; base model {meta['base_model']}.",
        f"- **Recipe**: {_recipe(meta)}; every stage's arguments in `finsent_model.json` (`training_stages`).",
        "- **Intended use**: topic and sentiment (negative / neutral / positive, calibrated probabilities) of finance "
        "news headlines, aggregated per hour for trends and surge alerts. Not for single-story trading decisions.",
        "",
        "## Training data",
        "",
        "| source | rows | licence | sha256 (first 12) |",
        "|---|---|---|---|",
    ]
    for name, m in (data.get("sources") or {}).items():
        lines.append(f"| {name} | {m['rows']:,} | {m.get('licence', '')} | {m['sha256'][:12]} |")
    lines += [
        "",
        f"Validation (model selection, calibration): {data.get('validation', '')}. Held-out sets are never used for "
        "either; rows equal to a held-out row are removed from training.",
        "",
        "## Held-out figures",
        "",
        "| set | n | sentiment macro-F1 [95 % CI] | accuracy |",
        "|---|---|---|---|",
    ]
    for name, m in s["news"]["sets"].items():
        lines.append(
            f"| {name} (news) | {m['n']:,} | {m['macro_f1']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] | "
            f"{m['accuracy']:.3f} |"
        )
    n = s["news"]
    lines.append(
        f"| **news pooled** | {n['n']:,} | **{n['macro_f1']:.3f}** [{n['ci95'][0]:.3f}, {n['ci95'][1]:.3f}] | "
        f"{n['accuracy']:.3f} |"
    )
    lines.append(
        f"| tweets (TFNS valid) | {s['sentiment']['n']:,} | {s['sentiment']['macro_f1']:.3f} | "
        f"{s['sentiment']['accuracy']:.3f} |"
    )
    lines.append(
        f"| topic, tweets (TFNS valid) | {s['topic']['n']:,} | macro-F1 {s['topic']['macro_f1']:.3f} | "
        f"{s['topic']['accuracy']:.3f} |"
    )
    e = s.get("expert")
    if e:
        lines.append(
            f"| expert-labelled news, test split | {e['n']:,} | {e['macro_f1']:.3f} [{e['ci95'][0]:.3f}, "
            f"{e['ci95'][1]:.3f}] | {e['accuracy']:.3f} |"
        )
        if "topic_accuracy" in e:
            lines.append(
                f"| topic, expert-labelled news | {e['topic_n']:,} | macro-F1 {e['topic_macro_f1']:.3f} | "
                f"{e['topic_accuracy']:.3f} |"
            )
    lines += [
        "",
        "## Calibration",
        "",
        f"Temperature {cal.get('sentiment_temperature', 1.0):.3f} (fitted on validation). Top-label ECE, "
        f"{cal.get('bins', 15)} bins:",
        "",
    ] + ece_table(cal)
    peers = [(k, v) for k, v in report["systems"].items() if k != "model" and "news_pooled" in v]
    if peers:
        lines += ["", "## Peers on the same rows (news pooled macro-F1)", ""]
        lines += [f"- {k}: {v['news_pooled']['macro_f1']:.3f}" for k, v in peers]
    ent = report.get("entity")
    if ent:
        head = meta.get("entity_head") or {}
        lines += [
            "",
            "## Company-level sentiment (entity head)",
            "",
            f"Trained on {head.get('trained_on', 'SEntFiN per-entity labels')} ({head.get('train_pairs', '?')} pairs); "
            f"story weight {head.get('story_weight', '?')} and L2 chosen on validation. Entity-level macro-F1 against "
            "every entity inheriting the story's predicted label:",
            "",
            "| set | pairs | entity head | baseline | disagreeing stories: head | baseline |",
            "|---|---|---|---|---|---|",
        ]
        for name in ("sentfin_test", "finentity"):
            m = ent[name]
            lines.append(
                f"| {name} | {m['pairs']:,} | {m['entity_head_macro_f1']:.3f} | {m['story_label_baseline_macro_f1']:.3f} "
                f"| {m['disagreeing_entity_head_macro_f1']:.3f} | {m['disagreeing_baseline_macro_f1']:.3f} |"
            )
        if head.get("rule"):
            lines += ["", f"**Rule in use: `{head['rule']}`.** {head.get('rule_chosen_by', '')}".rstrip()]
    weak = [w for w in WEAKNESSES if not (ent and w.startswith("One label per story"))]
    weak += [WEAKNESSES_ENTITY] if ent else []
    lines += ["", "## Known weaknesses", ""] + [f"- {w}" for w in weak]
    return "\n".join(lines) + "\n"


def ece_table(cal: dict) -> list[str]:
    """Markdown rows of ECE before/after calibration per held-out set (report and card share it)."""
    rows = ["| held-out set | ECE before | ECE after |", "|---|---|---|"]
    return rows + [
        f"| {k} | {v['ece_before']:.4f} | {v['ece_after']:.4f} |" for k, v in cal.items() if isinstance(v, dict)
    ]


def write(model_dir: str | Path, meta: dict, report: dict) -> Path:
    path = Path(model_dir) / CARD_FILE
    path.write_text(render(meta, report))
    return path


def _recipe(meta: dict) -> str:
    """The training stages in order, e.g. ``finetune`` (all blocks) then ``compress`` then ``blend``."""
    stages = meta.get("training_stages") or [meta.get("training") or {"method": meta.get("method")}]
    parts = []
    for st in stages:
        method = st.get("method") or meta.get("method")
        if method == "finetune":
            what = f"{st.get('train_layers') or 'all'} top blocks" if st.get("train_layers") else "all blocks"
        elif method == "compress":
            what = f"the difference from the base kept at rank {st.get('compress_rank')}, topic head refitted"
        else:
            what = "heads only"
        parts.append(f"`{method}` ({what})")
    return " then ".join(parts)
