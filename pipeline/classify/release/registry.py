"""Model registry: versioned directories plus rows in ``models``; one model is active.

Promotion gate (held-out sets only; selection happened on validation splits):
a candidate is refused when its pooled news-headline macro-F1 or its tweet
(TFNS) sentiment macro-F1 is more than ``GATE_TOLERANCE`` below the active
model's. An active model evaluated before the news sets existed is evaluated
on them first. ``--force`` overrides, and is recorded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from psycopg2.extensions import connection
from psycopg2.extras import Json

from pipeline.classify.model.modeldir import ModelDirError, check_registrable, read_meta

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


GATE_TOLERANCE = 0.01
TFNS_TRADE = 0.02  # what a candidate that gains on news may lose on tweets


def held_out_score(metrics: dict | None) -> float | None:
    """One number for listings: mean of news macro-F1 (when measured), TFNS macro-F1 and topic accuracy."""
    if not metrics:
        return None
    parts = [metrics["sentiment"]["macro_f1"], metrics["topic"]["accuracy"]]
    if metrics.get("news"):
        parts.append(metrics["news"]["macro_f1"])
    return sum(parts) / len(parts)


def gate(
    candidate: dict, active: dict, tolerance: float = GATE_TOLERANCE, active_entity_rule: str | None = "head"
) -> list[str]:
    """Reasons to refuse ``candidate`` against ``active`` (both metric summaries); empty = it may be promoted.

    * pooled news-headline sentiment macro-F1 and, once measured, the expert split's sentiment macro-F1 and
      topic accuracy on news: at most ``tolerance`` below the active model's;
    * TFNS (tweets) sentiment macro-F1: at most ``tolerance`` below, or ``TFNS_TRADE`` below when the
      candidate gains on news (pooled or expert split) by more than ``tolerance``: tweets follow another
      convention, and news is what users read (docs/classifier.md "The promotion gate");
    * company-level figures only while the active entity rule uses the entity head (``inherit`` does not).
    """
    reasons = []

    def fig(metrics: dict, key: str, name: str):
        return (metrics.get(key) or {}).get(name)

    gains_news = any(
        fig(candidate, k, n) is not None
        and fig(active, k, n) is not None
        and fig(candidate, k, n) > fig(active, k, n) + tolerance
        for k, n in (("news", "macro_f1"), ("expert", "macro_f1"))
    )
    checks = [
        ("news", "macro_f1", "pooled news-headline sentiment macro-F1", tolerance, True),
        ("sentiment", "macro_f1", "TFNS sentiment macro-F1", TFNS_TRADE if gains_news else tolerance, True),
        ("expert", "macro_f1", "expert-labelled news sentiment macro-F1", tolerance, False),
        ("expert", "topic_accuracy", "topic accuracy on expert-labelled news", tolerance, False),
    ]
    for key, name, what, tol, required in checks:
        new, old = fig(candidate, key, name), fig(active, key, name)
        if new is None:
            if required or old is not None:
                reasons.append(f"it has no {what}")
        elif old is not None and new < old - tol:
            reasons.append(f"its {what} {new:.4f} is more than {tol} below the active model's {old:.4f}")
    old = (active.get("entity") or {}).get("macro_f1")
    if old is not None and active_entity_rule != "inherit":  # the head labels companies: keep it as good
        new = (candidate.get("entity") or {}).get("macro_f1")
        if new is None:
            reasons.append(
                "it has no entity head, but the active model labels companies with one (entities train-head)"
            )
        elif new < old - tolerance:
            reasons.append(f"its entity-level macro-F1 {new:.4f} is more than {tolerance} below the active {old:.4f}")
    return reasons


def entity_rule(model_path: str | Path | None) -> str | None:
    """The entity rule a registered model's folder records (``inherit``, ``head``, ...); None when unreadable."""
    try:
        return ((read_meta(model_path) or {}).get("entity_head") or {}).get("rule", "head")
    except Exception:  # a folder that no longer loads: be strict (the gate then asks for entity figures)
        return None


def _evaluate_active(conn: connection, version: str, path: str) -> dict | None:
    """The active model predates a held-out set (news, the expert split): evaluate it now (the gate needs it)."""
    from pipeline.classify.evaluation.evaluate import evaluate

    log.warning("active model %s has no news-headline figures: evaluating it first", version)
    try:
        metrics = evaluate(path, baselines=False)["summary"]
    except Exception as exc:  # a missing or damaged active model cannot anchor the gate
        log.error("cannot evaluate active model %s: %s", version, exc)
        return None
    with conn.cursor() as cur:
        cur.execute("UPDATE models SET metrics = %s WHERE version = %s", (Json(metrics), version))
    return metrics


def register(conn: connection, model_dir: Path) -> str:
    """Insert (or refresh the metrics of) the model in ``model_dir``; returns its version."""
    model_dir = Path(model_dir).resolve()
    meta = check_registrable(model_dir)
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


def model(conn: connection, version: str) -> dict | None:
    """A registered version's ``version`` and ``path`` (None if it is not registered): the one lookup."""
    with conn.cursor() as cur:
        cur.execute("SELECT version, path FROM models WHERE version = %s", (version,))
        row = cur.fetchone()
    return {"version": row[0], "path": row[1]} if row else None


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
        cur.execute("SELECT version, metrics, path FROM models WHERE is_active")
        current = cur.fetchone()
        new_metrics = row[0]
        if current and current[0] == version:
            conn.rollback()
            return {"promoted": False, "reason": "already active", "version": version}
        cur.execute("SELECT path FROM models WHERE version = %s", (version,))
        try:  # the folder may have changed since it was registered: never activate one that cannot load
            check_registrable(cur.fetchone()[0])
        except ModelDirError as exc:
            conn.rollback()
            raise PromotionRefused(f"{version} cannot be promoted: its folder does not load: {exc}") from None
        old_metrics = current[1] if current else None
        if (
            current
            and not force
            and old_metrics is not None
            and not (old_metrics.get("news") and old_metrics.get("expert"))
        ):
            old_metrics = _evaluate_active(conn, current[0], current[2]) or old_metrics
        if not force:
            if new_metrics is None:
                conn.rollback()
                raise PromotionRefused(f"{version} has no held-out evaluation; evaluate it or use --force")
            rule = entity_rule(current[2]) if current else "head"
            reasons = gate(new_metrics, old_metrics or {}, active_entity_rule=rule)
            if reasons:
                conn.rollback()
                raise PromotionRefused(
                    f"{version} is refused against the active {current[0] if current else '(none)'}: "
                    + "; ".join(reasons)
                    + "; use --force to promote anyway"
                )
        new_score, old_score = held_out_score(new_metrics), held_out_score(old_metrics)
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
                "news_macro_f1": (metrics.get("news") or {}).get("macro_f1") if metrics else None,
                "sentiment_macro_f1": metrics["sentiment"]["macro_f1"] if metrics else None,
                "topic_accuracy": metrics["topic"]["accuracy"] if metrics else None,
            }
        )
    return out
