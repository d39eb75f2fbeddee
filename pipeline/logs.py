"""Logging set-up for the CLI: logs go to stderr so stdout stays machine-readable."""

from __future__ import annotations

import logging
import os
import sys


def setup(verbose: bool = False) -> None:
    level = (
        logging.DEBUG
        if verbose
        else getattr(logging, os.environ.get("FINSENT_LOG_LEVEL", "INFO").upper(), logging.INFO)
    )
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pgserver").setLevel(logging.WARNING)
