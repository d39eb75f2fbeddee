"""Secrets out of anything stored or printed: credentials in URLs and token-like query parameters.

Feed URLs may carry a password (``https://user:pass@host/``) or an API key in
the query (``?token=...``). The registry file keeps them; the database, run
summaries, logs and CLI output get this redacted form, so the dashboard role
and anyone reading a summary never see them.
"""

from __future__ import annotations

import re

MASK = "***"
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/?#@\s]*)@")
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:[a-z0-9_.-]*(?:token|key|secret|password|passwd|pwd|auth|signature|sig|session|credential)"
    r"[a-z0-9_.-]*)=)([^&;#\s\"'<>]+)"
)

# libpq key=value connection strings ("host=db password='s e' user=x"): quoted values may hold spaces and \'
_KEYWORD_SECRET = re.compile(r"(?i)(?<![\w.-])((?:ssl)?(?:password|passwd|pwd)\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s'&;]+)")


def redact(text: str | None) -> str | None:
    """``text`` with URL userinfo, secret-looking query values and libpq ``password=`` values replaced by ``***``.

    The one redaction for every connection string the project prints or stores, in each form libpq accepts
    (URI with userinfo, URI with ``?password=``, key=value string).
    """
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{_user(m.group(2))}@", text)
    text = _SECRET_PARAM.sub(lambda m: m.group(1) + MASK, text)
    return _KEYWORD_SECRET.sub(lambda m: m.group(1) + MASK, text)


def _user(userinfo: str) -> str:
    user = userinfo.split(":", 1)[0]
    return f"{user}:{MASK}" if user else MASK
