"""finsent: financial news sentiment monitoring pipeline."""
