"""Hourly aggregates, negative-surge detection and alert emails."""
