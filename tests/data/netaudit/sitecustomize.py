"""Loaded by a test's subprocess (PYTHONPATH): refuses and records every socket call that would leave loopback.

An audit hook sees ``socket.connect`` and ``socket.getaddrinfo`` before they happen and raises, so a
process that tries to call out is caught without one packet leaving the machine. Records go to
``$FINSENT_NET_AUDIT`` as one line each.
"""

import ipaddress
import os
import sys

_LOG = os.environ.get("FINSENT_NET_AUDIT")
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _is_local(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip("[]").split("%")[0]
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hook(event, args):
    if event == "socket.connect":
        address = args[1]
        host = address[0] if isinstance(address, tuple) else None  # a Unix socket path is local
    elif event == "socket.getaddrinfo":
        host = args[0]
    else:
        return
    if _is_local(host):
        return
    with open(_LOG, "a", encoding="utf-8") as fh:
        fh.write(f"{event} {host!r}\n")
    raise OSError(f"test network audit: {event} to {host!r} refused")


if _LOG:
    sys.addaudithook(_hook)
