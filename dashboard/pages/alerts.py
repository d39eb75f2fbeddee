"""Alerts: open and recent alerts with their evidence, acknowledgement, the rules and routing in force, trial replays.

Run by ``dashboard/app.py`` (``st.navigation``); feed text is shown only as literal text (see app.py)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import auth
from dashboard import queries as q
from dashboard.common import cached, pool, scored
from dashboard.safe import csv_bytes, int_param


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


scored(page_alerts)
