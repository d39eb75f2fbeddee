"""Helpers shared by the test modules: data paths, a free port, a one-shot query, direct inserts."""

from __future__ import annotations

import email
import sys
import time
import uuid
from datetime import UTC
from email import policy
from pathlib import Path

import psycopg2

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
FEEDS = DATA / "feeds"
REAL = FEEDS / "real"
FIXTURES = FEEDS / "feedparser-fixtures"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def run_py(code: str, env: dict, timeout: int = 600):
    """Run Python in a fresh interpreter (Airflow reads its config at import)."""
    import subprocess

    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)


def seed_articles(url: str, titles: list[str]) -> list[int]:
    """Insert stories directly (one feed) and return their ids."""
    from datetime import datetime

    from pipeline.ingest import normalize

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO feeds (name, url) VALUES ('seed', 'file:seed') ON CONFLICT (name) DO UPDATE SET name = 'seed' RETURNING id"
            )
            feed_id = cur.fetchone()[0]
            ids = []
            for _i, title in enumerate(titles):
                cur.execute(
                    "INSERT INTO articles (feed_id, guid, url, canonical_url, title, summary, published_at, fetched_at,"
                    " content_hash, title_hash) VALUES (%s, %s, %s, %s, %s, '', %s, %s, %s, %s) RETURNING id",
                    (
                        feed_id,
                        f"seed-{uuid.uuid4().hex}",
                        None,
                        None,
                        title,
                        datetime(2026, 8, 10, 12, tzinfo=UTC),
                        datetime(2026, 8, 10, 12, 5, tzinfo=UTC),
                        normalize.content_hash(title, ""),
                        normalize.title_hash(title),
                    ),
                )
                ids.append(cur.fetchone()[0])
        conn.commit()
        return ids
    finally:
        conn.close()


class SMTPServer:
    def __init__(self, port: int) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.EmailMessage] = []
        self.rcpts: list[list[str]] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                outer.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
                outer.rcpts.append(list(envelope.rcpt_tos))
                return "250 Message accepted"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


def slack_limits_broken(payload: dict) -> str:
    """Why Slack would refuse ``payload`` by its documented Block Kit limits (empty: it would accept it):
    at most 50 blocks, a section's text 3,000 characters, a header's 150, a context element's 2,000."""
    blocks = payload.get("blocks") or []
    if len(blocks) > 50:
        return f"{len(blocks)} blocks"
    for b in blocks:
        limit = {"section": 3000, "header": 150}.get(b.get("type"))
        if limit and len(b["text"]["text"]) > limit:
            return f"{b['type']} of {len(b['text']['text'])} characters"
        for el in b.get("elements") or []:
            if len(el.get("text", "")) > 2000:
                return f"context element of {len(el['text'])} characters"
    if len(payload.get("text") or "") > 40000:
        return "text over 40,000 characters"
    return ""


class WebhookServer:
    """A real HTTP server on 127.0.0.1 that takes Slack-style webhook posts (JSON), answering ``ok``; a payload
    over Slack's documented limits is refused with 400 ``invalid_blocks`` (listed in ``refused``).

    ``fail`` makes it answer 500 until it is set back to False, as a chat service in an outage would;
    ``hang_s`` makes it read the post and then say nothing for that long (a hung service).
    """

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.posts: list[dict] = []
        self.refused: list[str] = []
        self.fail = False
        self.hang_s = 0.0
        self.hung = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if outer.hang_s:
                    outer.hung += 1
                    time.sleep(outer.hang_s)
                    return
                if outer.fail:
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"server_error")
                    return
                payload = json.loads(body)
                refused = slack_limits_broken(payload)
                if refused:  # as Slack answers a payload over its documented limits
                    outer.refused.append(refused)
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(b"invalid_blocks")
                    return
                outer.posts.append({"path": self.path, "json": payload})
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/test"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
