"""The label convention, where a rule can apply it: a result stated with its direction is polar.

Sentiment here is the likely effect of the news on the company or market it is about, as an investor
reads it (docs/classifier.md, "Label convention"). Sources disagree on one sub-class above all: a sentence
that states a measure and which way it moved ("net profit rose to 8.6 million from 2.8 million", "Q3 sales
fall 12%"). Tweets label many of those neutral; news sets label them polar. ``stated_direction`` finds
them with a deliberately narrow rule (a known measure, a movement verb next to it, and a figure), so that
relabelling touches only rows the convention decides, and ``bench.transfer`` measures whether it helps.
"""

from __future__ import annotations

import re

# Measures that are good news when they go up, and those that are bad news when they go up.
_GOOD = (
    r"(?:net |operating |pre-?tax |gross |quarterly |annual |first-quarter |second-quarter |third-quarter |"
    r"fourth-quarter |q[1-4] )?(?:profits?|revenues?|sales|earnings|eps|net income|income|turnover|orders?|"
    r"margins?|dividends?|ebitda|ebit|operating result|shares?|stock|bookings|deliveries|traffic|guidance|outlook)"
)
_BAD = r"(?:net |operating |pre-?tax |quarterly )?(?:loss|losses|costs?|debt|unemployment|jobless claims)"
_UP = (
    r"(?:rose|rises?|risen|rising|up|jump(?:s|ed)?|surg(?:e|es|ed)|soar(?:s|ed)?|gain(?:s|ed)?|climb(?:s|ed)?|"
    r"increas(?:e|es|ed)|gr(?:ow|ows|ew|own)|rall(?:y|ies|ied)|doubl(?:e|es|ed)|tripl(?:e|es|ed)|improv(?:e|es|ed)|"
    r"beats?|higher|widen(?:s|ed)?)"
)
_DOWN = (
    r"(?:fell|falls?|fallen|falling|down|drop(?:s|ped)?|declin(?:e|es|ed)|slump(?:s|ed)?|plung(?:e|es|ed)|"
    r"tumbl(?:e|es|ed)|s[ia]nk(?:s)?|decreas(?:e|es|ed)|shr[iu]nk(?:s)?|shrank|slid(?:e|es)?|slip(?:s|ped)?|"
    r"halv(?:e|es|ed)|miss(?:es|ed)?|lower|narrow(?:s|ed)?)"
)
_FIGURE = re.compile(r"\d")
_GAP = r"\W+(?:\w+\W+){0,3}?"  # up to three words between the measure and its verb


def _pattern(measure: str, verb: str) -> re.Pattern:
    return re.compile(rf"\b{measure}{_GAP}{verb}\b", re.IGNORECASE)


_RULES = (
    (_pattern(_GOOD, _UP), "positive"),
    (_pattern(_GOOD, _DOWN), "negative"),
    (_pattern(_BAD, _UP), "negative"),
    (_pattern(_BAD, _DOWN), "positive"),
)


def stated_direction(text: str) -> str | None:
    """``positive``/``negative`` when ``text`` states a measure moving one way with a figure; else None.

    Two findings that disagree (profit up, sales down) decide nothing.
    """
    if not _FIGURE.search(text):
        return None
    found = set()
    for rx, label in _RULES:
        m = rx.search(text)
        # "widen"/"narrow" only speak about losses and margins; "beats"/"misses" only about results
        if m:
            found.add(label)
    return found.pop() if len(found) == 1 else None


def relabel_neutral(texts: list[str], labels: list[str]) -> tuple[list[str], int]:
    """Neutral rows that state a direction take it; returns the new labels and how many changed."""
    out, changed = [], 0
    for t, y in zip(texts, labels, strict=True):
        d = stated_direction(t) if y == "neutral" else None
        out.append(d or y)
        changed += d is not None
    return out, changed
