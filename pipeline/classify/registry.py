"""Model registry: versioned directories plus rows in ``models``; one model is active.

Promotion gate: a model whose held-out score (mean of sentiment macro-F1 and
topic accuracy) is below the active model's is not promoted unless forced.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from psycopg2.extensions import connection
from psycopg2.extras import Json

from pipeline.classify.modeldir import read_meta

log = logging.getLogger(__name__)


class NoActiveModel(RuntimeError):
    """No model is active yet: nothing can be scored or aggregated."""


def active_version(conn: connection) -> str:
    """The active model's version, or NoActiveModel."""
    model = active(conn)
    if model is None:
        raise NoActiveModel("no active model: train one with `python -m pipeline train`")
    return model["version"]


class PromotionRefused(RuntimeError):
    """The candidate scores below the active model on the held-out sets."""


def held_out_score(metrics: dict | None) -> float | None:
    if not metrics:
        return None
    return (metrics["sentiment"]["macro_f1"] + metrics["topic"]["accuracy"]) / 2


def register(conn: connection, model_dir: Path) -> str:
    """Insert (or refresh the metrics of) the model in ``model_dir``; returns its version."""
    model_dir = Path(model_dir).resolve()
    meta = read_meta(model_dir)
    with conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO models (version, path, method, base_model, data_sha256, training, metrics, created_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (version) DO UPDATE SET metrics = EXCLUDED.metrics, path = EXCLUDED.path
            """,
            (
                meta["version"],
                str(model_dir),
                meta["method"],
                meta["base_model"],
                meta["training_data"]["sha256"],
                Json(meta["training"]),
                Json(meta.get("metrics")),
                meta["created_at"],
            ),
        )
    conn.commit()
    return meta["version"]


def active(conn: connection) -> dict | None:
    with conn.cursor() as cur:
        cur.execute("SELECT version, path, method, metrics FROM models WHERE is_active")
        row = cur.fetchone()
    return dict(zip(["version", "path", "method", "metrics"], row)) if row else None


def promote(conn: connection, version: str, force: bool = False, by: str | None = None) -> dict:
    """Make ``version`` the active model, subject to the gate; returns the decision."""
    by = by or os.environ.get("USER") or "pipeline"
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('finsent.promote'))")
        cur.execute("SELECT metrics FROM models WHERE version = %s", (version,))
        row = cur.fetchone()
        if row is None:
            raise LookupError(f"model {version} is not registered")
        cur.execute("SELECT version, metrics FROM models WHERE is_active")
        current = cur.fetchone()
        new_score = held_out_score(row[0])
        old_score = held_out_score(current[1]) if current else None
        if current and current[0] == version:
            conn.rollback()
            return {"promoted": False, "reason": "already active", "version": version}
        if not force:
            if new_score is None:
                conn.rollback()
                raise PromotionRefused(f"{version} has no held-out evaluation; evaluate it or use --force")
            if old_score is not None and new_score < old_score:
                conn.rollback()
                raise PromotionRefused(
                    f"{version} scores {new_score:.4f} on the held-out sets, below the active "
                    f"{current[0]} ({old_score:.4f}); use --force to promote anyway"
                )
        cur.execute("UPDATE models SET is_active = false WHERE is_active")
        cur.execute(
            "UPDATE models SET is_active = true, promoted_at = now(), promoted_by = %s WHERE version = %s",
            (by, version),
        )
    conn.commit()
    log.info("promoted %s (score %s; previous %s %s)", version, new_score, current[0] if current else None, old_score)
    return {
        "promoted": True,
        "version": version,
        "score": new_score,
        "previous": current[0] if current else None,
        "previous_score": old_score,
        "forced": force,
    }


def list_models(conn: connection) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT version, method, is_active, created_at, promoted_at, metrics, path FROM models ORDER BY created_at DESC"
        )
        rows = cur.fetchall()
    out = []
    for version, method, is_active, created, promoted, metrics, path in rows:
        out.append(
            {
                "version": version,
                "method": method,
                "active": is_active,
                "created_at": created,
                "promoted_at": promoted,
                "held_out_score": held_out_score(metrics),
                "path": path,
                "sentiment_macro_f1": metrics["sentiment"]["macro_f1"] if metrics else None,
                "topic_accuracy": metrics["topic"]["accuracy"] if metrics else None,
            }
        )
    return out
