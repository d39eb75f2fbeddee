"""Who is using the dashboard: an internal tool's authentication, testable here.

Three sources, first match wins:

1. **A trusted header from an auth proxy** (oauth2-proxy, an ingress with SSO):
   ``FINSENT_AUTH_HEADER`` names it (e.g. ``X-Forwarded-User``). It is
   believed only when the dashboard listens on loopback or on an address listed
   in ``FINSENT_AUTH_TRUSTED_BIND`` (one only the proxy can reach); otherwise
   anyone could send the header.
2. **Streamlit's OIDC login** (``st.login``), when ``.streamlit/secrets.toml``
   configures ``[auth]``: the user's e-mail or name.
3. **A local developer** (``FINSENT_DASHBOARD_DEV_USER``), honoured only on an
   explicit loopback bind (``server.address`` 127.0.0.1, ::1 or localhost; unset
   means every interface): for ``make dashboard`` on one's own machine and for tests.

Without any of them the dashboard is read-only: nobody can acknowledge.
Acknowledging never silences an alert's email; it only records who looked.
"""

from __future__ import annotations

import os
import re
import unicodedata

import streamlit as st

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
MAX_NAME = 80
_NAME = re.compile(r"^[\w .@'+-]+$")


class BadUserName(ValueError):
    """A user name that is empty, too long or carries characters a name never has."""


def check_name(who: object) -> str:
    """The name to record for an acknowledgement: 1-80 printable word characters, spaces, . @ ' + -."""
    if not isinstance(who, str):
        raise BadUserName("the user name must be text")
    name = who.strip()
    if not name or len(name) > MAX_NAME:
        raise BadUserName(f"the user name must be 1 to {MAX_NAME} characters")
    if any(unicodedata.category(c)[0] == "C" for c in name) or not _NAME.match(name):
        raise BadUserName("the user name may hold letters, digits, spaces and . @ ' + - only")
    return name


def _bound_address() -> str:
    return str(st.get_option("server.address") or "")


def _trusted_bind() -> bool:
    extra = {a.strip() for a in os.environ.get("FINSENT_AUTH_TRUSTED_BIND", "").split(",") if a.strip()}
    return _bound_address() in LOOPBACK | extra


def current_user() -> tuple[str | None, str]:
    """(authenticated name or None, how it was established or why not)."""
    header = os.environ.get("FINSENT_AUTH_HEADER", "").strip()
    if header:
        value = st.context.headers.get(header) if st.context.headers else None
        if value and _trusted_bind():
            try:
                return check_name(value), f"auth proxy header {header}"
            except BadUserName:
                return None, f"the auth proxy header {header} holds an unusable name"
        if value:
            return None, f"header {header} ignored: the dashboard is not bound to loopback or a trusted address"
    try:
        if getattr(st.user, "is_logged_in", False):
            return check_name(st.user.get("email") or st.user.get("name") or ""), "OIDC login"
    except (BadUserName, AttributeError, KeyError):
        pass
    dev = os.environ.get("FINSENT_DASHBOARD_DEV_USER", "").strip()
    if dev and _bound_address() in LOOPBACK:  # unset means every interface: never a developer's own machine
        try:
            return check_name(dev), "local developer (FINSENT_DASHBOARD_DEV_USER)"
        except BadUserName:
            return None, "FINSENT_DASHBOARD_DEV_USER holds an unusable name"
    return None, "not signed in: set up the auth proxy header or OIDC login (docs/security.md)"
