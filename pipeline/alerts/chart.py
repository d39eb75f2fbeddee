"""A small picture of a surge for the alert email: negative share per hour against the baseline (PNG bytes).

Drawn with Pillow (already installed with Streamlit): no plotting stack, no fonts beyond Pillow's default, and
nothing from the feed text is drawn, so a hostile headline cannot reach the image.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime

from PIL import Image, ImageDraw

W, H = 560, 200
PAD_L, PAD_R, PAD_T, PAD_B = 44, 12, 28, 26
GREY, RED, BLUE, INK = (190, 190, 190), (214, 39, 40), (31, 119, 180), (40, 40, 40)


def surge_png(
    hours: Sequence[tuple[datetime, int, int]], baseline_share: float, surge_start: datetime, title: str
) -> bytes:
    """``hours``: (hour, stories, negatives), oldest first; hours from ``surge_start`` on are drawn red."""
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.text((PAD_L, 6), title[:80], fill=INK)
    x0, x1, y0, y1 = PAD_L, W - PAD_R, PAD_T, H - PAD_B
    d.line([(x0, y1), (x1, y1)], fill=INK)
    d.line([(x0, y0), (x0, y1)], fill=INK)
    for pct in (0, 50, 100):
        y = y1 - (y1 - y0) * pct / 100
        d.text((4, y - 6), f"{pct}%", fill=INK)
    if hours:
        step = (x1 - x0) / len(hours)
        for i, (hour, n, k) in enumerate(hours):
            if n <= 0:
                continue
            share = k / n
            left = x0 + i * step + 1
            top = y1 - (y1 - y0) * share
            d.rectangle([left, top, left + max(1.0, step - 2), y1 - 1], fill=RED if hour >= surge_start else GREY)
        d.text((x0, y1 + 6), f"{hours[0][0]:%d %b %H:%M}", fill=INK)
        d.text((x1 - 90, y1 + 6), f"{hours[-1][0]:%d %b %H:%M} UTC", fill=INK)
    yb = y1 - (y1 - y0) * min(max(baseline_share, 0.0), 1.0)
    for x in range(x0, x1, 8):  # dashed baseline
        d.line([(x, yb), (min(x + 4, x1), yb)], fill=BLUE, width=2)
    d.text((x1 - 150, max(y0, yb - 14)), f"baseline {100 * baseline_share:.0f}%", fill=BLUE)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
