"""HTTP (and local file) download of one feed, with limits and conditional GET."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests

from pipeline.ingest.model import FetchResult

ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.5"
_CHUNK = 64 * 1024


def fetch(
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    timeout_s: float = 20.0,
    max_bytes: int = 10 * 1024 * 1024,
    user_agent: str = "finsent",
    session: requests.Session | None = None,
) -> FetchResult:
    """Download a feed; never raises for network or HTTP trouble (see ``error``).

    ``timeout_s`` bounds the whole download, not just each socket read, so a
    server that trickles bytes cannot hold a worker. ``max_bytes`` caps the
    decoded body, which also stops gzip bombs.
    """
    start = time.monotonic()
    if urlsplit(url).scheme == "file":
        return _read_file(url, max_bytes, start)
    http = session or requests
    result = FetchResult(status="error", final_url=url)
    try:
        with http.get(
            url,
            headers=_request_headers(user_agent, etag, last_modified),
            timeout=(min(10.0, timeout_s), timeout_s),
            stream=True,
            allow_redirects=True,
        ) as resp:
            _record_response(result, resp)
            if _status_ends_it(result, resp) or _declared_too_large(result, resp, max_bytes):
                return _done(result, start)
            body = _read_body(resp, result, start, timeout_s, max_bytes)
            if body is not None:
                result.body, result.status = body, "ok"
    except requests.Timeout:
        result.error = f"timeout: no response within {timeout_s:g}s"
    except requests.TooManyRedirects as exc:
        result.error = f"too many redirects: {exc}"
    except requests.exceptions.ContentDecodingError as exc:
        result.error = f"bad content encoding: {_short(exc)}"
    except requests.RequestException as exc:
        result.error = f"{type(exc).__name__}: {_short(exc)}"
    return _done(result, start)


def _request_headers(user_agent: str, etag: str | None, last_modified: str | None) -> dict[str, str]:
    headers = {"User-Agent": user_agent, "Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def _record_response(result: FetchResult, resp: requests.Response) -> None:
    result.http_status = resp.status_code
    result.final_url = resp.url
    result.redirects = [f"{h.status_code} {h.url}" for h in resp.history]
    result.headers = {k.lower(): v for k, v in resp.headers.items()}


def _status_ends_it(result: FetchResult, resp: requests.Response) -> bool:
    """304 is success with no body; any other non-2xx status is the feed's error."""
    if resp.status_code == 304:
        result.status = "not_modified"
        return True
    if resp.status_code >= 300:
        extra = " (redirect without Location)" if 300 <= resp.status_code < 400 else ""
        result.error = f"HTTP {resp.status_code} {resp.reason or ''}{extra}".strip()
        return True
    return False


def _declared_too_large(result: FetchResult, resp: requests.Response, max_bytes: int) -> bool:
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        result.error = f"body too large: Content-Length {declared} > limit {max_bytes}"
        return True
    return False


def _read_body(
    resp: requests.Response, result: FetchResult, start: float, timeout_s: float, max_bytes: int
) -> bytes | None:
    """The decoded body within the deadline and size cap, or None with ``result.error`` set.

    A read blocks until a whole chunk arrives, so a server trickling bytes
    would never reach a deadline check: a watchdog shuts the socket down when
    the time is up.
    """
    watchdog = threading.Timer(max(0.0, start + timeout_s - time.monotonic()), _abort, (resp,))
    watchdog.daemon = True
    watchdog.start()
    try:
        chunks: list[bytes] = []
        size = 0
        for chunk in resp.iter_content(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                result.error = f"body too large: over limit {max_bytes} bytes"
                return None
            chunks.append(chunk)
    except (requests.RequestException, OSError, ValueError):
        if time.monotonic() - start < timeout_s:
            raise
        result.error = f"timeout: download exceeded {timeout_s:g}s"
        return None
    finally:
        watchdog.cancel()
    if time.monotonic() - start > timeout_s:
        result.error = f"timeout: download exceeded {timeout_s:g}s"
        return None
    return b"".join(chunks)


def _abort(resp: requests.Response) -> None:
    conn = getattr(resp.raw, "_connection", None) or getattr(resp.raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _read_file(url: str, max_bytes: int, start: float) -> FetchResult:
    path = Path(unquote(urlsplit(url).path))
    result = FetchResult(status="error", final_url=url)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            result.error = f"body too large: {size} > limit {max_bytes}"
        else:
            result.body = path.read_bytes()
            result.headers = {"content-type": "application/xml"}  # let the XML declaration decide
            result.status = "ok"
    except OSError as exc:
        result.error = f"cannot read {path}: {exc.strerror or exc}"
    return _done(result, start)


def _done(result: FetchResult, start: float) -> FetchResult:
    result.elapsed_s = time.monotonic() - start
    return result


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "…"
