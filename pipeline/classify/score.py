"""The classify step: score every stored story that the active model has not scored.

A work queue in SQL, not an in-memory hand-off: each chunk is selected with
``FOR UPDATE SKIP LOCKED``, scored and committed, so a crash loses at most
the chunk in flight (it is picked up next run), two workers never score the
same story, and ``(article_id, model_version)`` is unique anyway.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from psycopg2.extras import execute_values

from pipeline import db
from pipeline.classify.model.predict import Classifier
from pipeline.classify.model.text import prepare_text
from pipeline.classify.release import registry
from pipeline.classify.release.registry import NoActiveModel

log = logging.getLogger(__name__)


_PENDING = """
SELECT a.id, a.title, a.summary
FROM articles a
WHERE NOT EXISTS (SELECT 1 FROM scores s WHERE s.article_id = a.id AND s.model_version = %s)
ORDER BY a.id
LIMIT %s
FOR UPDATE OF a SKIP LOCKED
"""


def pending_count(conn, version: str) -> int:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM articles a WHERE NOT EXISTS "
            "(SELECT 1 FROM scores s WHERE s.article_id = a.id AND s.model_version = %s)",
            (version,),
        )
        return cur.fetchone()[0]


def score_pending(
    database_url: str | None = None,
    *,
    chunk_size: int = 512,
    batch_size: int = 64,
    max_articles: int | None = None,
    device: str | None = None,
    classifier: Classifier | None = None,
    version: str | None = None,
) -> dict:
    """Score pending stories with the active model (or ``version``); returns counts only."""
    url = database_url or db.database_url()
    conn = db.connect(url)
    try:
        model = registry.active(conn) if version is None else registry.model(conn, version)
        if model is None:
            raise NoActiveModel("no active model: train one with `python -m pipeline train`")
        version = model["version"]
        todo = pending_count(conn, version)
        conn.commit()
        if todo == 0:
            return {"model_version": version, "scored": 0, "remaining": 0, "seconds": 0.0}
        clf = classifier or Classifier.load(Path(model["path"]), device=device)
        t0, scored = time.monotonic(), 0
        log.info("scoring %d stories with %s on %s", todo, version, clf.device)
        while max_articles is None or scored < max_articles:
            take = chunk_size if max_articles is None else min(chunk_size, max_articles - scored)
            with conn.cursor() as cur:
                cur.execute(_PENDING, (version, take))
                rows = cur.fetchall()
                if not rows:
                    conn.commit()
                    break
                # The locks were taken under the SELECT's snapshot: a worker that committed in between
                # has released rows it already scored. A fresh statement sees its scores; skip those.
                cur.execute(
                    "SELECT article_id FROM scores WHERE model_version = %s AND article_id = ANY(%s)",
                    (version, [r[0] for r in rows]),
                )
                done = {r[0] for r in cur.fetchall()}
                rows = [r for r in rows if r[0] not in done]
                inserted = []
                if rows:
                    preds = clf.predict([prepare_text(t, s) for _, t, s in rows], batch_size=batch_size).rows()
                    inserted = execute_values(
                        cur,
                        "INSERT INTO scores (article_id, model_version, sentiment, p_negative, p_neutral, p_positive,"
                        " topic, topic_confidence) VALUES %s ON CONFLICT DO NOTHING RETURNING article_id",
                        [
                            (
                                aid,
                                version,
                                p["sentiment"],
                                p["p_negative"],
                                p["p_neutral"],
                                p["p_positive"],
                                p["topic"],
                                p["topic_confidence"],
                            )
                            for (aid, _, _), p in zip(rows, preds)
                        ],
                        page_size=len(rows),
                        fetch=True,
                    )
            conn.commit()
            scored += len(inserted)
            rate = scored / max(time.monotonic() - t0, 1e-9)
            log.info("scored %d/%d stories (%.0f/s)", scored, todo, rate)
        remaining = pending_count(conn, version)
        conn.commit()
        return {
            "model_version": version,
            "scored": scored,
            "remaining": remaining,
            "seconds": round(time.monotonic() - t0, 2),
        }
    finally:
        conn.close()
