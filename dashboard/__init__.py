"""Streamlit dashboard for analysts (read-only but for acknowledging alerts)."""
