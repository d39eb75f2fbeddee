"""Headlines: search and filter the scored stories; download what is shown.

Run by ``dashboard/app.py`` (``st.navigation``); feed text is shown only as literal text (see app.py)."""

from __future__ import annotations

import streamlit as st

from dashboard.common import cached, from_url, scored, story_table, to_url
from dashboard.safe import csv_bytes, text_param
from pipeline.classify.model.labels import SENTIMENTS


def page_headlines(model: str) -> None:
    c1, c2, c3, c4 = st.columns([2, 1, 2, 2])
    if "hl_search" not in st.session_state:
        st.session_state["hl_search"] = text_param(st.query_params.get("q", ""), 200)
    search = c1.text_input("Search titles", max_chars=200, key="hl_search")
    from_url("hl_sent", "sentiment", SENTIMENTS, [], many=True)
    sentiments = c2.multiselect("Sentiment", SENTIMENTS, key="hl_sent")
    from_url("hl_topics", "topic", cached("topics", model), [], many=True)
    topics = c3.multiselect("Topic", cached("topics", model), key="hl_topics")
    from_url("hl_sources", "source", cached("sources"), [], many=True)
    srcs = c4.multiselect("Source", cached("sources"), key="hl_sources")
    to_url(q=search, sentiment=sentiments, topic=topics, source=srcs)
    df = cached("headlines", model, search, sentiments, topics, srcs)
    st.metric("Stories shown (latest first, at most 200)", len(df))
    st.download_button("Download these stories (CSV)", csv_bytes(df), "finsent-headlines.csv", "text/csv")
    story_table(df)


scored(page_headlines)
