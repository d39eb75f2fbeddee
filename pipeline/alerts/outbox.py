"""Draining a delivery table (``alert_deliveries``, ``digest_deliveries``): one row, one send, one commit.

Both tables work the same way, so the loop is written once: claim the next
unsent row with ``FOR UPDATE SKIP LOCKED`` (two workers never send the same
row), send it, and mark it ``sent`` or ``failed`` in the same transaction right
after the server answers. A row that fails is not claimed again in the same
call; it stays due for the task's retries and later runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from psycopg2.extensions import connection, cursor

log = logging.getLogger(__name__)

Row = tuple


@dataclass
class Drained:
    """What one call sent and what failed (rows as the claim query returned them, errors by row)."""

    sent: list[Row] = field(default_factory=list)
    failed: list[Row] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def drain(
    conn: connection,
    claim_sql: str,
    scope: Sequence,
    *,
    key: Callable[[Row], str],
    send: Callable[[Row], None],
    mark: Callable[[cursor, Row, str, str | None], None],
    describe: Callable[[Row], str] = str,
) -> Drained:
    """Send every due row once. ``claim_sql`` takes ``(*scope, keys already tried)`` and returns one row or none;
    ``mark(cur, row, status, error)`` records the outcome (status ``sent`` or ``failed``) before the commit."""
    out, tried = Drained(), []
    while True:
        with conn.cursor() as cur:
            cur.execute(claim_sql, (*scope, tried))
            row = cur.fetchone()
            if row is None:
                conn.commit()
                return out
            tried.append(key(row))
            try:
                send(row)
            except Exception as exc:  # SMTP or webhook outage, refused recipients, bad connection
                error = f"{type(exc).__name__}: {exc}"[:500]
                mark(cur, row, "failed", error)
                conn.commit()
                out.failed.append(row)
                out.errors.append(error)
                log.error("%s not delivered: %s", describe(row), error)
                continue
            mark(cur, row, "sent", None)
            conn.commit()
            out.sent.append(row)
            log.info("%s delivered", describe(row))
