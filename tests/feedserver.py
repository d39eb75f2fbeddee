"""A real HTTP server on 127.0.0.1 serving feed files the way publishers do.

Shared by the tests and bench/ingest.py. It honours the ``Header:`` lines at
the top of feedparser's fixtures (status codes, Location, ETag,
Last-Modified, Content-Type), answers conditional GETs with 304, serves
``.gz``/``.z`` fixtures with their Content-Encoding, and has a few hostile
endpoints under ``/-/`` (500, slow, trickle, oversized, generated feeds).
"""

from __future__ import annotations

import email.utils
import hashlib
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

_HEADER_RE = re.compile(rb"^\s*Header:\s*([A-Za-z-]+):\s?(.*?)\s*$", re.M)
_COMMENT_RE = re.compile(rb"<!--(.*?)-->", re.S)


def fixture_headers(body: bytes) -> list[tuple[str, str]]:
    """The ``Header: Name: value`` lines in the first XML comment of a fixture."""
    m = _COMMENT_RE.search(body[:4096])
    if not m:
        return []
    return [(k.decode(), v.decode("latin-1")) for k, v in _HEADER_RE.findall(m.group(1))]


def synthetic_feed(feed: int, items: int, stamp: str = "Mon, 10 Aug 2026 12:00:00 GMT") -> bytes:
    """An RSS 2.0 document with ``items`` distinct stories (for benchmarks)."""
    parts = [
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Feed {feed}</title>'
        f"<link>https://example.com/{feed}</link><description>synthetic</description>"
    ]
    for i in range(items):
        parts.append(
            f"<item><title>Company {feed}-{i} shares move after quarterly results {i * 7919 % 1000}</title>"
            f"<link>https://example.com/{feed}/story/{i}?utm_source=rss</link>"
            f'<guid isPermaLink="false">feed{feed}-item{i}</guid>'
            f"<description>&lt;p&gt;Story {i} of feed {feed}: revenue &amp;amp; margins.&lt;/p&gt;</description>"
            f"<pubDate>{stamp}</pubDate></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode()


class FeedServer:
    def __init__(self, root: Path, conditional: bool = True) -> None:
        self.root = Path(root)
        self.conditional = conditional
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.static: dict[str, tuple[int, list[tuple[str, str]], bytes]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                with server.lock:
                    server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                try:
                    server.handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def add(self, path: str, body: bytes, status: int = 200, headers: list[tuple[str, str]] | None = None) -> str:
        """Serve ``body`` at ``path`` (a test's own document, e.g. hostile items or an "internal" page)."""
        self.static["/" + path.lstrip("/")] = (status, headers or [("Content-Type", "application/rss+xml")], body)
        return self.url(path)

    # -- request handling -------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        if path in self.static:
            status, headers, body = self.static[path]
            return self.send(h, status, body, headers)
        if path.startswith("/-/"):
            return self.special(h, path[3:], query)
        file = (self.root / path.lstrip("/")).resolve()
        if self.root.resolve() not in file.parents or not file.is_file():
            return self.send(h, 404, b"not found", [("Content-Type", "text/plain")])
        body = file.read_bytes()
        headers = fixture_headers(body)
        status = 200
        out: list[tuple[str, str]] = []
        for name, value in headers:
            if name.lower() == "status":
                status = int(value)
            elif name.lower() == "location":  # fixture URLs assume their tree is served at /
                rel = path.lstrip("/")
                tree = rel[: rel.index("tests/")] if "tests/" in rel else ""
                out.append(
                    (
                        name,
                        value.replace("http://localhost:8097/tests/", f"{self.base}/{tree}tests/").replace(
                            "http://localhost:8097/", f"{self.base}/"
                        ),
                    )
                )
            else:
                out.append((name, value))
        names = {n.lower() for n, _ in out}
        if not headers:  # a real publisher: validators
            out.append(("ETag", '"' + hashlib.sha1(body).hexdigest()[:16] + '"'))
            out.append(("Last-Modified", email.utils.formatdate(file.stat().st_mtime, usegmt=True)))
        if "content-type" not in names:  # as http.server's guess would (feedparser's harness)
            charset = _declared_charset(body)
            out.append(("Content-Type", "application/xml" + (f"; charset={charset}" if charset else "")))
        if file.suffix == ".gz":
            out.append(("Content-Encoding", "gzip"))
        elif file.suffix == ".z":
            out.append(("Content-Encoding", "deflate"))
        if status == 200 and self.conditional and self._not_modified(h, dict((n.lower(), v) for n, v in out)):
            return self.send(h, 304, b"", [(n, v) for n, v in out if n.lower() in ("etag", "last-modified")])
        if status in (301, 302, 303, 307, 308, 404, 410, 500):
            body = b"" if status != 404 else b"not found"
        self.send(h, status, body, out)

    def _not_modified(self, h: BaseHTTPRequestHandler, headers: dict[str, str]) -> bool:
        inm, ims = h.headers.get("If-None-Match"), h.headers.get("If-Modified-Since")
        if inm and headers.get("etag") and inm == headers["etag"]:
            return True
        return bool(not inm and ims and headers.get("last-modified") and ims == headers["last-modified"])

    def special(self, h: BaseHTTPRequestHandler, name: str, q: dict[str, str]) -> None:
        if name == "return-304.xml":
            return self.send(h, 304, b"", [])
        if name.startswith("status/"):
            code = int(name.split("/", 1)[1])
            return self.send(h, code, b"server error", [("Content-Type", "text/plain")])
        if name == "slow":  # headers only after a delay
            time.sleep(float(q.get("seconds", "5")))
            return self.send(h, 200, synthetic_feed(0, 1), [("Content-Type", "application/rss+xml")])
        if name == "slow-header-lines":  # the status line at once, then one header line per interval
            h.wfile.write(b"HTTP/1.1 200 OK\r\n")
            h.wfile.flush()
            for i in range(int(q.get("lines", "30"))):
                time.sleep(float(q.get("interval", "2")))
                h.wfile.write(f"X-Slow-{i}: {i}\r\n".encode())
                h.wfile.flush()
            body = synthetic_feed(0, 1)
            h.wfile.write(f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            h.close_connection = True
            return None
        if name == "redirect":  # /-/redirect?to=URL[&code=302]
            return self.send(h, int(q.get("code", "302")), b"", [("Location", q.get("to", "/"))])
        if name == "trickle":  # headers at once, then one byte per interval
            body = synthetic_feed(0, 3)
            h.send_response(200)
            h.send_header("Content-Type", "application/rss+xml")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            for i in range(len(body)):
                h.wfile.write(body[i : i + 1])
                h.wfile.flush()
                time.sleep(float(q.get("interval", "0.05")))
            return None
        if name == "big":  # chunked, no Content-Length: only a running count can stop it
            size = int(q.get("bytes", str(20 * 1024 * 1024)))
            h.send_response(200)
            h.send_header("Content-Type", "application/rss+xml")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            chunk = b"<!-- padding -->" * 4096
            sent = 0
            while sent < size:
                h.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
            h.wfile.write(b"0\r\n\r\n")
            return None
        if name == "big-declared":
            h.send_response(200)
            h.send_header("Content-Type", "application/rss+xml")
            h.send_header("Content-Length", str(50 * 1024 * 1024))
            h.end_headers()
            h.wfile.write(b"<rss>")
            return None
        if name.startswith("synthetic/"):  # /-/synthetic/<feed>?items=M
            feed = int(name.split("/", 1)[1].removesuffix(".xml"))
            time.sleep(float(q.get("delay", "0")))  # simulated network latency
            body = synthetic_feed(feed, int(q.get("items", "50")))
            return self.send(h, 200, body, [("Content-Type", "application/rss+xml; charset=utf-8")])
        return self.send(h, 404, b"no such endpoint", [("Content-Type", "text/plain")])

    @staticmethod
    def send(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        h.send_response(status)
        for name, value in headers:
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if body and h.command != "HEAD":
            h.wfile.write(body)


def _declared_charset(body: bytes) -> str | None:
    m = re.search(rb'encoding=["\']([A-Za-z0-9_.-]+)["\']', body[:200])
    return m.group(1).decode() if m else None
