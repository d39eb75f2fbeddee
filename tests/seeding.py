"""Synthetic scored traffic for alert and dashboard tests (rows straight into PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg2
from psycopg2.extras import execute_values

UTC = UTC
H = datetime(2026, 8, 10, 14, tzinfo=UTC)  # the surge hour
MODEL = "test-model"
HOSTILE = '<script>alert("x")</script> Refinery **fire** [click](javascript:alert(1))'


def seed(url: str, traffic: list[tuple[datetime, str, int, int]], feed_name: str = "wire") -> None:
    """Stories with scores: (hour, topic, stories, negatives) rows; the model row is created active."""
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO feeds (name, url, last_status) VALUES (%s, 'file:wire', 'ok') ON CONFLICT (name) DO NOTHING",
            (feed_name,),
        )
        cur.execute("SELECT id FROM feeds WHERE name = %s", (feed_name,))
        feed = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO models (version, path, method, base_model, data_sha256, training, created_at, is_active,"
            " promoted_at, metrics) VALUES (%s, '/nowhere', 'heads', 'test', 'x', '{}', now(), true, now(), %s)"
            " ON CONFLICT DO NOTHING",
            (
                MODEL,
                '{"sentiment": {"macro_f1": 0.5, "accuracy": 0.6, "n": 2388}, '
                '"topic": {"macro_f1": 0.4, "accuracy": 0.7, "n": 4117}}',
            ),
        )
        arts, negs = [], []
        for hour, topic, n, k in traffic:
            for i in range(n):
                title = HOSTILE if (i == 0 and k and hour == H) else f"{topic} story {uuid.uuid4().hex[:8]}"
                arts.append(
                    (
                        feed,
                        uuid.uuid4().hex,
                        f"https://news.example/{uuid.uuid4().hex}",
                        None,
                        title,
                        hour + timedelta(minutes=i % 60),
                        hour + timedelta(minutes=59),
                        uuid.uuid4().hex,
                        uuid.uuid4().hex,
                    )
                )
                negs.append((topic, i < k))
        ids = execute_values(
            cur,
            "INSERT INTO articles (feed_id, guid, url, canonical_url, title, published_at, fetched_at,"
            " content_hash, title_hash) VALUES %s RETURNING id",
            arts,
            page_size=5000,
            fetch=True,
        )
        execute_values(
            cur,
            "INSERT INTO scores (article_id, model_version, sentiment, p_negative, p_neutral, p_positive,"
            " topic, topic_confidence) VALUES %s",
            [
                (
                    i,
                    MODEL,
                    "negative" if neg else "neutral",
                    0.9 if neg else 0.1,
                    0.1 if neg else 0.8,
                    0.0 if neg else 0.1,
                    topic,
                    0.9,
                )
                for (i,), (topic, neg) in zip(ids, negs)
            ],
            page_size=5000,
        )
    conn.commit()
    conn.close()


def week_of_normal(end: datetime, topics=("Energy | Oil", "Earnings")) -> list:
    return [(end - timedelta(hours=h), t, 50, 10) for h in range(1, 7 * 24 + 1) for t in topics]


def window(hour: datetime) -> dict:
    return {"start": hour.isoformat(), "end": (hour + timedelta(hours=1)).isoformat()}
