"""A model card for every evaluated model version (``MODEL_CARD.md`` beside its report).

Written from the model's metadata and held-out report, so it can never
disagree with them: data sources and sizes, held-out figures per set with
intervals, calibration, intended use and known weaknesses.
"""

from __future__ import annotations

from pathlib import Path

CARD_FILE = "MODEL_CARD.md"

WEAKNESSES = [
    "Trained on English finance tweets (TFNS) and Indian/European news headlines (SEntFiN, EcoSent); other "
    "publishers, languages and long article text are out of its training distribution.",
    "One label per story: a headline about two companies with opposite news gets one sentiment "
    "(see the company-level work).",
    "Topic labels come from tweets only (20 TFNS topics); news headlines on other subjects are forced into one of them.",
    "Sentiment here is the tone of the news for its subject, not a trading signal.",
]


def render(meta: dict, report: dict) -> str:
    s = report["summary"]
    data = meta.get("training_data", {})
    cal = report.get("calibration", {})
    lines = [
        f"# Model card: finsent {meta['version']}",
        "",
        f"- **Architecture**: {meta.get('architecture', '')}; base model {meta['base_model']}.",
        f"- **Recipe**: `{meta['method']}`; training arguments in `finsent_model.json` (`training`).",
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
    lines += ["", "## Known weaknesses", ""] + [f"- {w}" for w in WEAKNESSES]
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
