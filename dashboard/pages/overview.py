"""Overview: negative share over time, overall and per topic; the topics at a glance.

Run by ``dashboard/app.py`` (``st.navigation``); feed text is shown only as literal text (see app.py)."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import streamlit as st

from dashboard import view
from dashboard.common import cached, from_url, scored, to_url
from dashboard.safe import csv_bytes


def page_overview(model: str) -> None:
    lo, hi = cached("data_span", model)
    if hi is None:
        st.info("No aggregated data yet: the hourly DAG fills it after stories are scored.")
        return
    hi_end = hi + timedelta(hours=1)
    per_hour = cached("overall_hours", model)
    c1, c2, c3, c4 = st.columns([1, 2, 2, 1])
    ranges = list(view.RANGES) + [view.BUSY]
    from_url("ov_range", "range", ranges, view.first_view(per_hour, hi_end))
    span = c1.selectbox("Time range (to the latest data hour)", ranges, key="ov_range")
    end = hi_end
    if span == view.BUSY:
        start, end = view.busy_period(per_hour)
    else:
        start = lo if view.RANGES[span] is None else max(lo, hi_end - view.RANGES[span])
    from_url("ov_topics", "topic", cached("topics", model), [], many=True)
    chosen = c2.multiselect("Topics", cached("topics", model), key="ov_topics", placeholder="overall only")
    from_url("ov_sources", "source", cached("sources"), [], many=True)
    srcs = c3.multiselect("Sources", cached("sources"), key="ov_sources", placeholder="all sources")
    from_url("ov_bucket", "bucket", list(view.BUCKETS), view.default_bucket(per_hour["hour"], start, end))
    bucket = c4.selectbox("Bucket", list(view.BUCKETS), key="ov_bucket")
    to_url(range=span, bucket=bucket, topic=chosen, source=srcs)
    df = cached("hourly", model, start, end, chosen, srcs)
    if df.empty:
        st.info("No stories in this range.")
        return
    overall = df[df["series"] == "overall"]
    stories, negatives = int(overall["stories"].sum()), int(overall["negatives"].sum())
    st.caption(view.span_note(start, end, stories, bucket, lo, hi_end))
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Stories", f"{stories:,}")
    m2.metric("Negative share", f"{100 * negatives / max(stories, 1):.1f}%")
    mean = (overall["mean_sentiment"].astype(float) * overall["stories"]).sum() / max(stories, 1)
    m3.metric("Mean sentiment", f"{mean:+.3f}")
    live = cached("alerts", model, ["open", "acknowledged"])
    m4.metric("Live alerts", f"{len(live)}")

    df = view.fill_gaps(view.rebucket(df, bucket, start), bucket, start, end)
    df = df.assign(neg_pct=100 * df["neg_share"].astype(float), mean_sentiment=df["mean_sentiment"].astype(float))
    series = df[df["series"] == "overall"]
    base = alt.Chart(df).encode(x=alt.X("period:T", title=f"{bucket} (UTC)"))
    share = base.mark_line(point=len(series) < 60).encode(
        y=alt.Y("neg_pct:Q", title="negative share (%)"),
        color=alt.Color("series:N", title="series"),
        tooltip=["period:T", "series:N", "stories:Q", "negatives:Q", alt.Tooltip("neg_pct:Q", format=".1f")],
    )
    alerts_in_range = cached("alerts", model, ["open", "acknowledged", "resolved"])
    alerts_in_range = alerts_in_range[(alerts_in_range["started_at"] >= start) & (alerts_in_range["started_at"] < end)]
    layers = [share]
    if not alerts_in_range.empty:
        marks = (
            alt.Chart(alerts_in_range)
            .mark_rule(strokeDash=[4, 3], color="#d62728")
            .encode(
                x="started_at:T", tooltip=["subject:N", "severity:N", "status:N", "observed_pct:Q", "baseline_pct:Q"]
            )
        )
        layers.append(marks)
    st.subheader(f"Negative share per {bucket}")
    st.altair_chart(alt.layer(*layers).properties(height=280), width="stretch")
    st.subheader(f"Mean sentiment per {bucket} (p_positive - p_negative)")
    st.altair_chart(
        base.mark_line()
        .encode(y=alt.Y("mean_sentiment:Q", title="mean sentiment"), color="series:N")
        .properties(height=200),
        width="stretch",
    )
    st.subheader(f"Volume (stories per {bucket}, all topics)")
    st.altair_chart(
        alt.Chart(series).mark_bar().encode(x="period:T", y=alt.Y("stories:Q", title="stories")).properties(height=160),
        width="stretch",
    )
    st.download_button(
        "Download these series (CSV)", csv_bytes(df), file_name=f"finsent-{bucket}-series.csv", mime="text/csv"
    )
    st.subheader("Topics at a glance (last 24 h of data vs the 7 days before)")
    st.dataframe(cached("topic_state", model, hi), hide_index=True, width="stretch")


scored(page_overview)
