"""finsent dashboard: trends, alerts, companies, headlines and pipeline health.

    streamlit run dashboard/app.py

Each page has its own URL (``/alerts``, ``/companies`` ...) through
``st.navigation``; links sent before that (``/?page=Alerts&alert=ID`` in
alert emails and Slack) still open the right page, because the page named in
``?page=`` becomes the default one served at ``/``.

Feed text (titles, summaries, feed errors) is only ever shown through
``st.dataframe``/``st.text``, which render it literally: a ``<script>`` or
markdown in a headline shows as typed. Nothing renders raw HTML.
Queries live in ``dashboard/queries.py``; results are cached for a minute.
"""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import auth, view
from dashboard import queries as q
from dashboard.safe import csv_bytes, int_param, text_param
from pipeline.classify.model.labels import SENTIMENTS

TTL = 60


@st.cache_resource
def pool():
    return q.make_pool()


@st.cache_data(ttl=TTL, show_spinner=False)
def cached(name: str, *args):
    return getattr(q, name)(pool(), *args)


def from_url(key: str, param: str, options: list, default, many: bool = False) -> None:
    """Prime a widget from the page URL once (a shared link opens the same view); values not offered are dropped."""
    if key in st.session_state:
        return
    if many:
        st.session_state[key] = [v for v in st.query_params.get_all(param) if v in options] or default
    else:
        value = st.query_params.get(param)
        st.session_state[key] = value if value in options else default


def to_url(**params) -> None:
    """Mirror the current filters in the URL (empty ones removed), so the address bar is a shareable view."""
    for name, value in params.items():
        if value:
            st.query_params[name] = value
        elif name in st.query_params:
            del st.query_params[name]


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


def show_rules() -> None:
    """The thresholds and the routing in force (config/alert_rules.yaml): who is judged how, and who hears."""
    from pipeline.alerts import rules

    try:
        loaded = rules.load()
    except rules.RulesError as exc:
        st.error(f"The alert rules file is invalid: {exc}")
        return
    with st.expander("Thresholds in force"):
        st.dataframe(pd.DataFrame(loaded.describe()), hide_index=True, width="stretch")
    with st.expander("Routing in force (who gets which alerts, and where)"):
        routes = loaded.routing.describe()
        if routes:
            st.dataframe(pd.DataFrame(routes), hide_index=True, width="stretch")
        else:
            st.warning("No route is configured: alerts are recorded but sent nowhere (see docs/alerts.md).")


def page_alerts(model: str) -> None:
    show_rules()
    trial = cached("trial_alerts", model)
    if not trial.empty:
        with st.expander(f"Trial replay: {len(trial)} alerts under trial rules (a backtest: not live, never sent)"):
            st.dataframe(trial, hide_index=True, width="stretch")
    live = cached("alerts", model, ["open", "acknowledged"])
    # nothing live (a replayed history, a calm week): show what was raised, resolved ones included
    default = ["open", "acknowledged"] if not live.empty else ["open", "acknowledged", "resolved"]
    statuses = st.multiselect("Status", ["open", "acknowledged", "resolved"], default=default)
    df = cached("alerts", model, statuses)
    st.metric("Alerts shown", len(df))
    if df.empty:
        ever = cached("alerts", model, ["open", "acknowledged", "resolved"])
        st.info(
            "No alerts with this status."
            if not ever.empty
            else "No alerts: no hour judged so far surged with these thresholds (see Thresholds in force above)."
        )
        return
    st.dataframe(
        df, hide_index=True, width="stretch", column_config={"p_value": st.column_config.NumberColumn(format="%.2e")}
    )
    wanted = st.query_params.get("alert")
    ids = df["id"].tolist()
    wanted = int_param(wanted)
    default = ids.index(wanted) if wanted in ids else 0
    alert_id = st.selectbox(
        "Drill down into alert",
        ids,
        index=default,
        format_func=lambda i: f"#{i} {df.loc[df['id'] == i, 'subject'].iloc[0]}",
    )
    row = df[df["id"] == alert_id].iloc[0]
    st.text(
        f"Alert #{alert_id}: {row['subject']}, {row['severity']} ({row['status']}), "
        f"{row['observed_negatives']}/{row['observed_stories']} negative = {row['observed_pct']}% "
        f"vs baseline {row['baseline_pct']}%, surging {row['hours_surging']} h since {row['started_at']:%Y-%m-%d %H:%M} UTC"
    )
    st.caption("Deliveries (one per channel; a failed one is retried by the next hourly run)")
    st.dataframe(q.alert_deliveries(pool(), int(alert_id)), hide_index=True, width="stretch")
    stories = q.alert_stories(pool(), int(alert_id))
    st.download_button(
        "Download these headlines (CSV)", csv_bytes(stories), f"finsent-alert-{alert_id}.csv", "text/csv"
    )
    st.dataframe(
        stories,
        hide_index=True,
        width="stretch",
        column_config={"url": st.column_config.LinkColumn("link", display_text="open")},
    )
    if row["status"] == "open":
        who, how = auth.current_user()
        if who is None:
            st.caption(f"Acknowledging needs a signed-in user: {how}.")
        else:
            with st.form(f"ack-{alert_id}"):
                st.text(f"Signed in as {who} ({how}). Acknowledging records that you looked; the email still goes out.")
                if st.form_submit_button("Acknowledge"):
                    if q.acknowledge(pool(), int(alert_id), who):
                        cached.clear()
                        st.success(f"Alert #{alert_id} acknowledged by {who}.")
                    else:
                        st.warning("It was no longer open.")
    elif row["status"] == "acknowledged":
        st.text(f"Acknowledged by {row['acknowledged_by']} at {row['acknowledged_at']:%Y-%m-%d %H:%M} UTC")


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
    st.dataframe(
        heads,
        hide_index=True,
        width="stretch",
        column_config={
            "url": st.column_config.LinkColumn("link", display_text="open"),
            "title": st.column_config.TextColumn("title", width="large"),
        },
    )


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
    st.dataframe(
        df,
        hide_index=True,
        width="stretch",
        column_config={
            "url": st.column_config.LinkColumn("link", display_text="open"),
            "title": st.column_config.TextColumn("title", width="large"),
        },
    )


def page_health(model_row: dict | None) -> None:
    version = model_row["version"] if model_row else None
    h = cached("health", version)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Stories stored", f"{h['articles']:,}")
    c2.metric("Unscored backlog", f"{h['backlog']:,}")
    c3.metric("Feeds failing", int((h["feeds"]["last_status"] == "error").sum()))
    c4.metric("Oldest unscored story waited", view.wait_text(h.get("oldest_unscored")))
    st.subheader("Last ingestion run")
    st.dataframe(h["last_run"], hide_index=True, width="stretch")
    st.subheader("Feeds")
    st.dataframe(h["feeds"], hide_index=True, width="stretch")
    st.subheader("Stories fetched per hour (last 48 h of data)")
    if not h["per_hour"].empty:
        st.bar_chart(h["per_hour"], x="hour", y="stories", height=180)
    st.subheader("Model in use")
    if model_row:
        metrics = model_row.get("metrics") or {}
        st.text(
            f"{model_row['version']} ({model_row['method']}), promoted {model_row['promoted_at']:%Y-%m-%d %H:%M} UTC"
        )
        if metrics:
            st.dataframe(
                pd.DataFrame(
                    {
                        "held-out set": ["news headlines (pooled)", "tweets: sentiment", "tweets: topic"][
                            0 if metrics.get("news") else 1 :
                        ],
                        "macro_f1": [m["macro_f1"] for m in model_metric_rows(metrics)],
                        "accuracy": [m["accuracy"] for m in model_metric_rows(metrics)],
                        "held-out rows": [m["n"] for m in model_metric_rows(metrics)],
                    }
                ),
                hide_index=True,
            )
        card = q.model_card(model_row.get("path"))
        if card:
            with st.expander("Model card"):
                st.markdown(card)  # generated by evaluation from the model's own figures; holds no feed text
    else:
        st.warning("No active model: run `make demo` (installs the shipped model) or `python -m pipeline train`.")


def model_metric_rows(metrics: dict) -> list[dict]:
    """News (when measured), tweet sentiment and tweet topic figures of a model, in that order."""
    return ([metrics["news"]] if metrics.get("news") else []) + [metrics["sentiment"], metrics["topic"]]


def scored(page):
    """A page that reads one model's scores: run it with the active model, or say that none is active."""

    def run() -> None:
        model_row = cached("active_model")
        if model_row is None:
            st.warning("No active model yet: stories are stored but not scored. See Pipeline health.")
        else:
            page(model_row["version"])

    run.__name__ = page.__name__
    return run


def health() -> None:
    page_health(cached("active_model"))


# (title, URL path, page): the title is what ?page= names in links sent before pages had paths.
PAGES = [
    ("Overview", "overview", scored(page_overview)),
    ("Alerts", "alerts", scored(page_alerts)),
    ("Companies", "companies", scored(page_companies)),
    ("Headlines", "headlines", scored(page_headlines)),
    ("Pipeline health", "health", health),
]


def main() -> None:
    st.set_page_config(page_title="finsent", layout="wide")
    wanted = st.query_params.get("page")
    default = wanted if wanted in [t for t, _, _ in PAGES] else "Overview"
    nav = st.navigation(
        [st.Page(fn, title=title, url_path=path, default=title == default) for title, path, fn in PAGES]
    )
    st.sidebar.title("finsent")
    if st.sidebar.button("Refresh data"):
        cached.clear()
    model_row = cached("active_model")
    st.sidebar.caption(f"Model: {model_row['version']}" if model_row else "Model: none active")
    st.title(nav.title)
    nav.run()


main()
