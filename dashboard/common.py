"""What every dashboard page shares: the connection pool, cached queries, and the URL as a shareable view."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from dashboard import queries as q

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


def story_table(df) -> None:
    """Stories with their link and a wide title column (titles shown literally, as every feed text is)."""
    st.dataframe(
        df,
        hide_index=True,
        width="stretch",
        column_config={
            "url": st.column_config.LinkColumn("link", display_text="open"),
            "title": st.column_config.TextColumn("title", width="large"),
        },
    )


def scored(page: Callable[[str], None]) -> None:
    """Run a page that reads one model's scores with the active model, or say that none is active."""
    model_row = cached("active_model")
    if model_row is None:
        st.warning("No active model yet: stories are stored but not scored. See Pipeline health.")
    else:
        page(model_row["version"])
