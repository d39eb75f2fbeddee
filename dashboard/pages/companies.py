"""Companies: the most-mentioned companies, one company's stories and sentiment, names outside the catalogue.

Run by ``dashboard/app.py`` (``st.navigation``); feed text is shown only as literal text (see app.py)."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import view
from dashboard.common import cached, scored, story_table
from dashboard.safe import csv_bytes, text_param


def unlinked_names(model: str, search: str, bucket: str) -> None:
    """Company names the headlines give that the catalogue lacks (the mention tagger's unlinked spans)."""
    with st.expander("Names outside the catalogue (found in headlines, not linked)", expanded=False):
        names = cached("unlinked_names", search)
        if names.empty:
            st.info("No unlinked company name matches." if search else "No unlinked company names stored yet.")
            return
        st.dataframe(names.drop(columns=["key"]), hide_index=True, width="stretch")
        key = st.selectbox("Name", names["key"].tolist(), format_func=dict(zip(names["key"], names["name"])).get)
        series = cached("name_series", model, key, bucket)
        st.bar_chart(series.set_index("period")[["stories", "negatives"]], height=200)


def page_companies(model: str) -> None:
    lo, hi = cached("data_span", model)
    at = (hi + timedelta(hours=1)) if hi is not None else pd.Timestamp.now(tz="UTC")
    if hi is not None:  # thin recent data beside a dense older stretch: rank the companies where the news is
        at = view.news_end(cached("overall_hours", model), at)
    st.subheader(f"Watchlists: change in negative share (the 7 days to {at:%Y-%m-%d} vs the 28 before)")
    watch = cached("watchlist_overview", model, at)
    if watch.empty:
        st.info("No watchlist yet: add one to config/entities.yaml and run `python -m pipeline entities sync`.")
    else:
        st.dataframe(watch.drop(columns=["id"]), hide_index=True, width="stretch")
    st.subheader("Company")
    c1, c2 = st.columns([2, 1])
    if "company_search" not in st.session_state:  # a shared link (?company=...) opens on that company
        st.session_state["company_search"] = text_param(st.query_params.get("company", ""), 80)
    search = c1.text_input("Search by name or ticker", key="company_search", max_chars=80)
    bucket = c2.selectbox("Bucket", ["day", "week", "hour"], index=0)
    found = cached("find_companies", search)
    if found.empty:
        st.info("No company matches." if search else "Type a name or ticker (for example AAPL or Infosys).")
        unlinked_names(model, search, bucket)
        return
    ids = found["id"].tolist()
    labels = {r.id: f"{r.name} ({r.tickers}) - {r.stories} stories" for r in found.itertuples()}
    entity_id = st.selectbox("Matches", ids, format_func=lambda i: labels[i])
    st.query_params["company"] = search
    series = cached("company_series", model, entity_id, bucket)
    if series.empty:
        st.info("No stored story names this company yet.")
        return
    m1, m2, m3 = st.columns(3)
    stories = int(series["stories"].sum())
    m1.metric("Stories", f"{stories:,}")
    m2.metric("Negative share (company label)", f"{100 * int(series['negatives'].sum()) / max(stories, 1):.1f}%")
    m3.metric(
        "Mean sentiment", f"{(series['mean_sentiment'].astype(float) * series['stories']).sum() / max(stories, 1):+.3f}"
    )
    base = alt.Chart(series.assign(negative_pct=series["negative_pct"].astype(float))).encode(
        x=alt.X("period:T", title=f"{bucket} (UTC)")
    )
    st.altair_chart(
        alt.layer(
            base.mark_bar(opacity=0.3).encode(y=alt.Y("stories:Q", title="stories")),
            base.mark_line(point=True, color="#d62728").encode(y=alt.Y("negative_pct:Q", title="negative (%)")),
        )
        .resolve_scale(y="independent")
        .properties(height=260),
        width="stretch",
    )
    st.download_button("Download this series (CSV)", csv_bytes(series), f"finsent-{entity_id}-{bucket}.csv", "text/csv")
    unlinked_names(model, search, bucket)
    st.subheader("Headlines (company label beside the story's own)")
    heads = cached("company_headlines", model, entity_id)
    st.download_button("Download these headlines (CSV)", csv_bytes(heads), f"finsent-{entity_id}.csv", "text/csv")
    story_table(heads)


scored(page_companies)
