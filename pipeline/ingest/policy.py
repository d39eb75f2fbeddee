"""Outbound policy for feed fetches: which hosts and files a registry entry may reach.

Feed URLs and the redirects they answer with are untrusted. A redirect to
``127.0.0.1``, a private network or the cloud metadata address would let a
hostile feed read internal pages into the database (SSRF). Every hop is
checked before any connection is made: the host is resolved and each address
must be globally routable, unless the host is listed in ``allow_hosts`` (per
feed in the registry, or globally through ``FINSENT_FETCH_ALLOW_HOSTS`` for
tests and the demo). ``file:`` URLs must name a regular file under one of the
allowed roots (the repository and the registry's own folder by default).

The resolver is a module attribute (:data:`resolve`) so that tests can stub it:
the one allowed stand-in, used to check refusals of non-loopback addresses
without sending traffic anywhere.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit


class PolicyRefused(ValueError):
    """The URL (or a redirect) points somewhere feeds may not go."""


def _system_resolve(host: str, port: int) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


resolve: Callable[[str, int], list[str]] = _system_resolve


def _norm_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def address_allowed(addr: str) -> bool:
    """Globally routable unicast only: no loopback, link-local (metadata), private, CGNAT, multicast, reserved."""
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, allow_hosts: Iterable[str] = (), file_roots: Iterable[Path] = ()) -> None:
    """Raise :class:`PolicyRefused` unless ``url`` may be fetched. Makes no connection (it may resolve DNS)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise PolicyRefused(f"malformed URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme == "file":
        check_file(url, file_roots)
        return
    if scheme not in ("http", "https"):
        raise PolicyRefused(f"scheme {scheme or '(none)'!r} is not allowed (http, https or file)")
    host = _norm_host(parts.hostname or "")
    if not host:
        raise PolicyRefused("URL has no host")
    allowed = {_norm_host(h) for h in allow_hosts}
    if host in allowed:
        return
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        addrs = [host]  # a literal address: checked as written, nothing to resolve
    except ValueError:
        addrs = None
    try:
        addrs = addrs or resolve(host, port or (443 if scheme == "https" else 80))
    except (OSError, UnicodeError) as exc:
        raise PolicyRefused(f"cannot resolve {host}: {exc}") from None
    if not addrs:
        raise PolicyRefused(f"cannot resolve {host}: no address")
    bad = [a for a in addrs if not address_allowed(a)]
    if bad:
        raise PolicyRefused(
            f"host {host} resolves to a non-public address ({', '.join(bad)}): refused; "
            "list it in the feed's allow_hosts to permit it"
        )


def check_file(url: str, roots: Iterable[Path]) -> Path:
    """The regular file a ``file:`` URL names, if it lies under one of ``roots``."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise PolicyRefused(f"file URL with a remote host {parts.netloc!r} is not allowed")
    return check_path(Path(unquote(parts.path)), roots)


def check_path(path: str | Path, roots: Iterable[Path], folder: bool = False) -> Path:
    """The regular file (or, with ``folder``, the folder) ``path`` names, resolved through links, if it lies under
    one of ``roots``; PolicyRefused otherwise. The message names the path, never anything read from it."""
    path = Path(path)
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise PolicyRefused(f"cannot read {path}: {getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    resolved_roots = [Path(r).resolve() for r in roots]
    if not any(real == r or r in real.parents for r in resolved_roots):
        raise PolicyRefused(f"{path} is outside the allowed folders ({', '.join(map(str, resolved_roots))})")
    if folder and not real.is_dir():
        raise PolicyRefused(f"{path} is not a folder")
    if not folder and not real.is_file():
        raise PolicyRefused(f"{path} is not a regular file")
    return real
