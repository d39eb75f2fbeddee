"""finsent dashboard: trends, alerts, companies, headlines and pipeline health.

    streamlit run dashboard/app.py

Each page has its own URL (``/alerts``, ``/companies`` ...) through
``st.navigation``; links sent before that (``/?page=Alerts&alert=ID`` in
alert emails and Slack) still open the right page, because the page named in
``?page=`` becomes the default one served at ``/``.

Feed text (titles, summaries, feed errors) is only ever shown through
``st.dataframe``/``st.text``, which render it literally: a ``<script>`` or
markdown in a headline shows as typed. Nothing renders raw HTML.
One file per page in ``dashboard/pages/``; what they share (the pool, cached
queries, URL helpers) in ``dashboard/common.py``; queries in
``dashboard/queries.py``, their results cached for a minute.
"""

from __future__ import annotations

import streamlit as st

from dashboard.common import cached

# (title, URL path, page file): the title is what ?page= names in links sent before pages had paths.
PAGES = [
    ("Overview", "overview", "pages/overview.py"),
    ("Alerts", "alerts", "pages/alerts.py"),
    ("Companies", "companies", "pages/companies.py"),
    ("Headlines", "headlines", "pages/headlines.py"),
    ("Pipeline health", "health", "pages/health.py"),
]


def main() -> None:
    st.set_page_config(page_title="finsent", layout="wide")
    wanted = st.query_params.get("page")
    default = wanted if wanted in [t for t, _, _ in PAGES] else "Overview"
    nav = st.navigation(
        [st.Page(path, title=title, url_path=url, default=title == default) for title, url, path in PAGES]
    )
    st.sidebar.title("finsent")
    if st.sidebar.button("Refresh data"):
        cached.clear()
    model_row = cached("active_model")
    st.sidebar.caption(f"Model: {model_row['version']}" if model_row else "Model: none active")
    st.title(nav.title)
    nav.run()


main()
