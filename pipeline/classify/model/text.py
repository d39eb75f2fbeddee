"""What the model reads for a story: one place, shared by training, evaluation, scoring and predict."""

from __future__ import annotations

import re

_URL = re.compile(r"https?://\S+")
_WS = re.compile(r"\s+")


def prepare_text(title: str, summary: str | None = None, max_chars: int = 600) -> str:
    """What the model reads: the title first (it survives truncation), then the summary.

    Links are dropped (tweets end in t.co links, headlines carry none).
    """
    text = _URL.sub(" ", title or "")
    if summary:
        extra = _URL.sub(" ", summary)
        if extra.strip() and extra.strip().lower() not in text.lower():
            text = f"{text.rstrip(' .')}. {extra}"
    return _WS.sub(" ", text).strip()[:max_chars]
