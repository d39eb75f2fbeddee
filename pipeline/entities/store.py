"""The catalogue, story links and per-entity scores in PostgreSQL.

* ``sync`` loads the validated catalogue and watchlists in one transaction
  (nothing half-loaded) and records the catalogue's fingerprint;
* ``link_pending`` links every story whose links were made with another
  catalogue or mention tagger (new stories, and all stories after either
  changed): the new link set replaces the old per story, so re-running is a
  no-op and a changed alias re-links the past. Company names the tagger found
  that no entry holds go to ``story_names`` (as written, with a folded key);
* ``score_pending`` labels each linked (story, entity) pair that the model
  has not labeled, one forward pass per story (the entity head), or gives the
  pair the story's own label when the model has no entity head.
"""

from __future__ import annotations

import logging
import time

from psycopg2.extensions import connection
from psycopg2.extras import execute_values

from pipeline.entities.catalogue import Catalogue
from pipeline.entities.detect import Finder
from pipeline.entities.link import Linker, name_key

log = logging.getLogger(__name__)

_LOCK = "SELECT pg_advisory_xact_lock(hashtext('finsent.entities'), 0)"


def fingerprint(conn: connection) -> str | None:
    with conn.cursor() as cur:
        cur.execute("SELECT fingerprint FROM entity_catalogue_state")
        row = cur.fetchone()
    return row[0] if row else None


def sync(conn: connection, cat: Catalogue) -> dict:
    """Make the tables match the catalogue; returns what changed. Links are redone by ``link_pending``."""
    fp = cat.fingerprint()
    with conn.cursor() as cur:
        cur.execute(_LOCK)
        cur.execute("SELECT id FROM entities")
        before = {r[0] for r in cur.fetchall()}
        execute_values(
            cur,
            """INSERT INTO entities (id, name, aliases, tickers, sector, country, source) VALUES %s
               ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, aliases = EXCLUDED.aliases,
                 tickers = EXCLUDED.tickers, sector = EXCLUDED.sector, country = EXCLUDED.country,
                 source = EXCLUDED.source, updated_at = now()
               WHERE (entities.name, entities.aliases, entities.tickers, entities.sector, entities.country,
                      entities.source) IS DISTINCT FROM
                     (EXCLUDED.name, EXCLUDED.aliases, EXCLUDED.tickers, EXCLUDED.sector, EXCLUDED.country,
                      EXCLUDED.source)""",
            [
                (e.id, e.name, list(e.aliases), list(e.tickers), e.sector, e.country, e.source)
                for e in cat.entities.values()
            ],
            page_size=1000,
        )
        removed = sorted(before - set(cat.entities))
        if removed:
            cur.execute("DELETE FROM entities WHERE id = ANY(%s)", (removed,))
        cur.execute("DELETE FROM watchlists WHERE NOT (name = ANY(%s))", (list(cat.watchlists),))
        for w in cat.watchlists.values():
            cur.execute(
                "INSERT INTO watchlists (name, description) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, updated_at = now()",
                (w.name, w.description),
            )
            cur.execute(
                "DELETE FROM watchlist_entities WHERE watchlist = %s AND NOT (entity_id = ANY(%s))",
                (w.name, list(w.entities)),
            )
            execute_values(
                cur,
                "INSERT INTO watchlist_entities (watchlist, entity_id) VALUES %s ON CONFLICT DO NOTHING",
                [(w.name, e) for e in w.entities],
            )
        cur.execute(
            "INSERT INTO entity_catalogue_state (id, fingerprint) VALUES (true, %s) "
            "ON CONFLICT (id) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, synced_at = now()",
            (fp,),
        )
    conn.commit()
    out = {
        "entities": len(cat.entities),
        "added": len(set(cat.entities) - before),
        "removed": len(removed),
        "watchlists": len(cat.watchlists),
        "fingerprint": fp,
    }
    log.info("entity catalogue synced: %s", out)
    return out


_PENDING_LINKS = """
SELECT id, title FROM articles
WHERE linked_fingerprint IS DISTINCT FROM %s
ORDER BY id LIMIT %s
FOR UPDATE SKIP LOCKED
"""


def link_pending(
    conn: connection, finder: Finder | Linker, chunk_size: int = 2000, max_articles: int | None = None
) -> dict:
    """Link stories not yet linked with the synced catalogue (and this tagger); returns counts."""
    finder = finder if isinstance(finder, Finder) else Finder(finder)
    fp = fingerprint(conn)
    conn.commit()
    if fp is None:
        return {"linked": 0, "mentions": 0, "note": "no catalogue synced: run `python -m pipeline entities sync`"}
    if fp != finder.catalogue.fingerprint():
        raise RuntimeError("the linker's catalogue is not the synced one: sync first, then link")
    stamp = f"{fp}+{finder.tag}" if finder.tag else fp
    done = mentions = unlinked = 0
    t0 = time.monotonic()
    while max_articles is None or done < max_articles:
        with conn.cursor() as cur:
            cur.execute(_PENDING_LINKS, (stamp, chunk_size))
            rows = cur.fetchall()
            if not rows:
                conn.commit()
                break
            ids = [r[0] for r in rows]
            found = finder.find_many([title or "" for _, title in rows])
            links = [(aid, m) for (aid, _), ms in zip(rows, found) for m in ms if m.entity_id]
            names = [(aid, m) for (aid, _), ms in zip(rows, found) for m in ms if not m.entity_id]
            cur.execute("DELETE FROM story_entities WHERE article_id = ANY(%s)", (ids,))
            cur.execute("DELETE FROM story_names WHERE article_id = ANY(%s)", (ids,))
            if names:
                execute_values(
                    cur,
                    "INSERT INTO story_names (article_id, start_pos, end_pos, name, name_key, confidence) VALUES %s"
                    " ON CONFLICT DO NOTHING",
                    [(aid, m.start, m.end, m.span, name_key(m.span), m.confidence) for aid, m in names],
                    page_size=1000,
                )
            if links:
                execute_values(
                    cur,
                    "INSERT INTO story_entities (article_id, entity_id, start_pos, end_pos, matched, method, confidence)"
                    " VALUES %s ON CONFLICT DO NOTHING",
                    [(aid, m.entity_id, m.start, m.end, m.span, m.method, m.confidence) for aid, m in links],
                    page_size=1000,
                )
            # labels of pairs that are no longer linked go with the link
            cur.execute(
                "DELETE FROM entity_scores es WHERE es.article_id = ANY(%s) AND NOT EXISTS (SELECT 1 FROM "
                "story_entities se WHERE se.article_id = es.article_id AND se.entity_id = es.entity_id)",
                (ids,),
            )
            cur.execute("UPDATE articles SET linked_fingerprint = %s WHERE id = ANY(%s)", (stamp, ids))
        conn.commit()
        done += len(rows)
        mentions += len(links)
        unlinked += len(names)
        log.info(
            "linked %d stories, %d mentions, %d unlinked names (%.0f stories/s)",
            done,
            mentions,
            unlinked,
            done / max(1e-9, time.monotonic() - t0),
        )
    return {
        "linked": done,
        "mentions": mentions,
        "unlinked_names": unlinked,
        "tagger": finder.tag or "off",
        "seconds": round(time.monotonic() - t0, 2),
    }


_PENDING_PAIRS = """
SELECT a.id, a.title, array_agg(se.entity_id ORDER BY se.start_pos), array_agg(se.start_pos ORDER BY se.start_pos),
       array_agg(se.end_pos ORDER BY se.start_pos)
FROM articles a JOIN story_entities se ON se.article_id = a.id
WHERE NOT EXISTS (SELECT 1 FROM entity_scores es WHERE es.article_id = se.article_id
                  AND es.entity_id = se.entity_id AND es.model_version = %s)
  AND EXISTS (SELECT 1 FROM scores s WHERE s.article_id = a.id AND s.model_version = %s)
GROUP BY a.id, a.title
ORDER BY a.id LIMIT %s
"""


def score_pending(conn: connection, version: str, scorer=None, chunk_size: int = 256) -> dict:
    """Label linked pairs for ``version``. ``scorer`` is an EntityScorer, or None: then each pair gets its
    story's label (``method`` 'story_label') so company views work with any model."""
    from pipeline.entities.sentiment import Pair

    done = 0
    t0 = time.monotonic()
    while True:
        with conn.cursor() as cur:
            cur.execute(_PENDING_PAIRS, (version, version, chunk_size))
            rows = cur.fetchall()
            if not rows:
                conn.commit()
                break
            values = []
            if scorer is not None:
                pairs, keys = [], []
                for aid, title, ents, starts, ends in rows:
                    seen = set()
                    for e, s, en in zip(ents, starts, ends):
                        if e in seen:
                            continue  # first mention of an entity stands for the story's view of it
                        seen.add(e)
                        pairs.append(Pair(title, s, en))
                        keys.append((aid, e))
                for (aid, e), r in zip(keys, scorer.score(pairs)):
                    values.append(
                        (
                            aid,
                            e,
                            version,
                            r["sentiment"],
                            r["p_negative"],
                            r["p_neutral"],
                            r["p_positive"],
                            "entity_head",
                        )
                    )
            else:
                cur.execute(
                    "SELECT article_id, sentiment, p_negative, p_neutral, p_positive FROM scores "
                    "WHERE model_version = %s AND article_id = ANY(%s)",
                    (version, [r[0] for r in rows]),
                )
                story = {r[0]: r[1:] for r in cur.fetchall()}
                for aid, _, ents, _, _ in rows:
                    for e in dict.fromkeys(ents):
                        values.append((aid, e, version, *story[aid], "story_label"))
            execute_values(
                cur,
                "INSERT INTO entity_scores (article_id, entity_id, model_version, sentiment, p_negative, p_neutral,"
                " p_positive, method) VALUES %s ON CONFLICT DO NOTHING",
                values,
                page_size=1000,
            )
        conn.commit()
        done += len(values)
    log.info("labeled %d (story, entity) pairs with %s in %.1f s", done, version, time.monotonic() - t0)
    return {"pairs": done, "seconds": round(time.monotonic() - t0, 2)}
