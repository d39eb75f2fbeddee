"""Label names. Datasets are mapped by name, never by position."""

from __future__ import annotations

SENTIMENTS = ["negative", "neutral", "positive"]

# Twitter Financial News Sentiment: 0 Bearish, 1 Bullish, 2 Neutral (dataset card).
TFNS_SENTIMENT = {0: "negative", 1: "positive", 2: "neutral"}

# Twitter Financial News Topic: LABEL_i names from the dataset card.
TFNS_TOPIC = {
    0: "Analyst Update",
    1: "Fed | Central Banks",
    2: "Company | Product News",
    3: "Treasuries | Corporate Debt",
    4: "Dividend",
    5: "Earnings",
    6: "Energy | Oil",
    7: "Financials",
    8: "Currencies",
    9: "General News | Opinion",
    10: "Gold | Metals | Materials",
    11: "IPO",
    12: "Legal | Regulation",
    13: "M&A | Investments",
    14: "Macro",
    15: "Markets",
    16: "Politics",
    17: "Personnel Change",
    18: "Stock Commentary",
    19: "Stock Movement",
}
TOPICS = [TFNS_TOPIC[i] for i in range(len(TFNS_TOPIC))]
