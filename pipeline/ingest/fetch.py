"""HTTP (and local file) download of one feed, with limits, conditional GET and an outbound policy.

Guarantees, whatever the server does:

* one deadline covers the whole exchange, from connecting through response
  headers and every redirect to the last body byte: a watchdog shuts the
  sockets down when it passes, so neither trickled headers nor a trickled
  body can hold a worker;
* the decoded body is capped (``max_bytes``), which also stops gzip bombs;
* every hop, the first URL and each redirect, passes :mod:`pipeline.ingest.policy`
  before any connection is made (no loopback, private, link-local or metadata
  addresses unless allowed; ``file:`` only under allowed folders);
* header values are cleaned of NUL and control characters before anyone stores them.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from pipeline.digits import ascii_int
from pipeline.ingest import policy
from pipeline.ingest.model import FetchResult
from pipeline.ingest.normalize import (
    clean_field,  # header text: no NUL (PostgreSQL rejects it), control chars or surrogates
)

ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.5"
MAX_REDIRECTS = 10
_CHUNK = 64 * 1024
_REDIRECTS = {301, 302, 303, 307, 308}


class _Deadline(Exception):
    pass


def fetch(
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    timeout_s: float = 20.0,
    max_bytes: int = 10 * 1024 * 1024,
    user_agent: str = "finsent",
    allow_hosts: Iterable[str] = (),
    file_roots: Iterable[Path] = (),
) -> FetchResult:
    """Download a feed; never raises for network, HTTP or policy trouble (see ``error``)."""
    start = time.monotonic()
    if urlsplit(url).scheme.lower() == "file":
        return _read_file(url, max_bytes, start, file_roots)
    result = FetchResult(status="error", final_url=url)
    adapter = _TrackingAdapter()
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    watchdog = threading.Timer(timeout_s, adapter.abort)
    watchdog.daemon = True
    watchdog.start()
    try:
        resp = _follow(
            session,
            url,
            result,
            start,
            timeout_s,
            _request_headers(user_agent, etag, last_modified),
            tuple(allow_hosts),
        )
        with resp:
            _record_response(result, resp)
            if not (_status_ends_it(result, resp) or _declared_too_large(result, resp, max_bytes)):
                body = _read_body(resp, result, max_bytes)
                if body is not None:
                    result.body, result.status = body, "ok"
    except policy.PolicyRefused as exc:
        result.error = f"refused by outbound policy: {exc}"
    except _Deadline:
        result.error = f"timeout: no complete response within {timeout_s:g}s"
    except requests.Timeout:
        result.error = f"timeout: no response within {timeout_s:g}s"
    except requests.TooManyRedirects as exc:
        result.error = f"too many redirects: {exc}"
    except requests.exceptions.ContentDecodingError as exc:
        result.error = f"bad content encoding: {_short(exc)}"
    except (requests.RequestException, OSError, ValueError) as exc:
        if time.monotonic() - start >= timeout_s:
            result.error = f"timeout: download exceeded {timeout_s:g}s"
        else:
            result.error = f"{type(exc).__name__}: {_short(exc)}"
    finally:
        watchdog.cancel()
        session.close()
    if result.error is None and time.monotonic() - start > timeout_s:
        result.status, result.body, result.error = "error", b"", f"timeout: download exceeded {timeout_s:g}s"
    return _done(result, start)


def _follow(
    session: requests.Session,
    url: str,
    result: FetchResult,
    start: float,
    timeout_s: float,
    headers: dict[str, str],
    allow_hosts: tuple[str, ...],
) -> requests.Response:
    """GET ``url``, following redirects by hand so that each hop passes the policy first."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        policy.check_url(current, allow_hosts)
        remaining = timeout_s - (time.monotonic() - start)
        if remaining <= 0:
            raise _Deadline
        resp = session.get(
            current, headers=headers, timeout=(min(10.0, remaining), remaining), stream=True, allow_redirects=False
        )
        location = resp.headers.get("location")
        if resp.status_code not in _REDIRECTS or not location:
            return resp
        result.redirects.append(f"{resp.status_code} {current}")
        resp.close()
        current = urljoin(current, clean_field(location))
        result.final_url = current
    raise requests.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")


class _TrackingAdapter(HTTPAdapter):
    """Remembers every connection it hands out, so the watchdog can shut them all down at the deadline."""

    def __init__(self) -> None:
        super().__init__(max_retries=0)
        self._conns: list = []
        self._lock = threading.Lock()

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        pool = super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
        if not getattr(pool, "_finsent_tracked", False):
            get_conn = pool._get_conn

            def tracked(timeout=None):
                conn = get_conn(timeout=timeout)
                with self._lock:
                    self._conns.append(conn)
                return conn

            pool._get_conn = tracked
            pool._finsent_tracked = True
        return pool

    def abort(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            sock = getattr(conn, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _request_headers(user_agent: str, etag: str | None, last_modified: str | None) -> dict[str, str]:
    headers = {"User-Agent": user_agent, "Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def _record_response(result: FetchResult, resp: requests.Response) -> None:
    result.http_status = resp.status_code
    result.headers = {clean_field(k).lower(): clean_field(v)[:2000] for k, v in resp.headers.items()}


def _status_ends_it(result: FetchResult, resp: requests.Response) -> bool:
    """304 is success with no body; any other non-2xx status is the feed's error."""
    if resp.status_code == 304:
        result.status = "not_modified"
        return True
    if resp.status_code >= 300:
        extra = " (redirect without Location)" if 300 <= resp.status_code < 400 else ""
        result.error = f"HTTP {resp.status_code} {clean_field(resp.reason or '')[:200]}{extra}".strip()
        return True
    return False


def _declared_too_large(result: FetchResult, resp: requests.Response, max_bytes: int) -> bool:
    declared = resp.headers.get("Content-Length")
    if (ascii_int(declared, max_digits=64) or 0) > max_bytes:
        result.error = f"body too large: Content-Length {declared} > limit {max_bytes}"
        return True
    return False


def _read_body(resp: requests.Response, result: FetchResult, max_bytes: int) -> bytes | None:
    """The decoded body within the size cap, or None with ``result.error`` set (the watchdog owns the deadline)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_content(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            result.error = f"body too large: over limit {max_bytes} bytes"
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _read_file(url: str, max_bytes: int, start: float, roots: Iterable[Path]) -> FetchResult:
    result = FetchResult(status="error", final_url=url)
    try:
        path = policy.check_file(url, roots)
        with path.open("rb") as fh:
            body = fh.read(max_bytes + 1)
        if len(body) > max_bytes:
            result.error = f"body too large: over limit {max_bytes} bytes"
        else:
            result.body = body
            result.headers = {"content-type": "application/xml"}  # let the XML declaration decide
            result.status = "ok"
    except policy.PolicyRefused as exc:
        result.error = f"refused by outbound policy: {exc}"
    except OSError as exc:
        result.error = f"cannot read {url}: {exc.strerror or exc}"
    return _done(result, start)


def _done(result: FetchResult, start: float) -> FetchResult:
    result.elapsed_s = time.monotonic() - start
    return result


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "…"
