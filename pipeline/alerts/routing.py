"""Who hears about which alert, and where: the ``routing`` section of ``config/alert_rules.yaml``.

Pure: parsing, validation and matching; nothing here sends. Email always
exists as a channel (the SMTP connection); Slack channels exist only when
named under ``slack`` with the Airflow connection that holds their webhook,
so Slack is off until an operator configures it. A route with no selector
(``topics``, ``watchlists``, ``companies``) matches every alert; with
selectors it matches an alert that any of them names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.safeyaml import short

SEVERITIES = ("warning", "critical")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_ROUTE_KEYS = {"name", "topics", "watchlists", "companies", "min_severity", "email", "slack"}


class RoutingError(ValueError):
    """The routing section is invalid; the message names the place."""


@dataclass(frozen=True)
class Route:
    name: str
    topics: tuple[str, ...] = ()  # topic names, or "overall" for the whole stream
    watchlists: tuple[str, ...] = ()
    companies: tuple[str, ...] = ()  # entity ids
    min_severity: str = "warning"
    email: tuple[str, ...] = ()
    slack: tuple[str, ...] = ()

    def matches(self, alert: dict) -> bool:
        if SEVERITIES.index(alert["severity"]) < SEVERITIES.index(self.min_severity):
            return False
        if not (self.topics or self.watchlists or self.companies):
            return True
        dim, key = alert["dimension"], alert["key"]
        if dim in ("topic", "overall") and ("overall" if dim == "overall" else key) in self.topics:
            return True
        if dim == "entity":
            return key in self.companies or bool(set(alert.get("watchlists") or ()) & set(self.watchlists))
        return False


@dataclass(frozen=True)
class Routing:
    slack: dict[str, str] = field(default_factory=dict)  # channel name -> Airflow connection id
    routes: tuple[Route, ...] = ()
    digest_email: tuple[str, ...] = ()
    digest_slack: tuple[str, ...] = ()

    def deliveries(self, alert: dict) -> dict[str, str]:
        """{channel: target} for one alert: ``email`` -> comma-separated recipients, ``slack:NAME`` -> connection."""
        people: list[str] = []
        chats: list[str] = []
        for route in self.routes:
            if route.matches(alert):
                people += route.email
                chats += route.slack
        out = {"email": ", ".join(dict.fromkeys(people))} if people else {}
        out.update({f"slack:{c}": self.slack[c] for c in dict.fromkeys(chats)})
        return out

    def digest_deliveries(self) -> dict[str, str]:
        out = {"email": ", ".join(self.digest_email)} if self.digest_email else {}
        out.update({f"slack:{c}": self.slack[c] for c in self.digest_slack})
        return out

    def describe(self) -> list[dict]:
        """Rows for the Alerts page: which alerts go where (connection ids only; secrets live in Airflow)."""
        rows = [
            {
                "route": r.name,
                "alerts": _selector_text(r),
                "min severity": r.min_severity,
                "email": ", ".join(r.email),
                "slack": ", ".join(f"{c} (connection {self.slack[c]})" for c in r.slack),
            }
            for r in self.routes
        ]
        if self.digest_email or self.digest_slack:
            rows.append(
                {
                    "route": "daily digest",
                    "alerts": "a summary of the previous UTC day",
                    "min severity": "",
                    "email": ", ".join(self.digest_email),
                    "slack": ", ".join(f"{c} (connection {self.slack[c]})" for c in self.digest_slack),
                }
            )
        return rows


def _selector_text(r: Route) -> str:
    parts = [f"topics: {', '.join(r.topics)}"] if r.topics else []
    parts += [f"watchlists: {', '.join(r.watchlists)}"] if r.watchlists else []
    parts += [f"companies: {', '.join(r.companies)}"] if r.companies else []
    return "; ".join(parts) or "every alert"


def _strings(value, where: str, check=None, what: str = "entry") -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list):
        raise RoutingError(f"{where}: must be a list")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise RoutingError(f"{where}[{i}]: {short(item)} is not a non-empty string")
        item = item.strip()
        if check and not check(item):
            raise RoutingError(f"{where}[{i}]: {short(item)} is not a valid {what}")
        out.append(item)
    return tuple(dict.fromkeys(out))


def parse(doc, where: str, topics: tuple[str, ...], watchlists: set[str] | None = None) -> Routing:
    """Validate the ``routing`` section. ``watchlists``: the names that exist (None: not checked)."""
    if doc is None:
        return Routing()
    if not isinstance(doc, dict) or set(doc) - {"slack", "routes", "digest"}:
        raise RoutingError(f"{where}: must be a mapping with 'slack', 'routes' and/or 'digest'")
    slack = {}
    declared = doc.get("slack") or {}
    if not isinstance(declared, dict):
        raise RoutingError(f"{where}.slack: must be a mapping of channel name to {{conn_id: ...}}, not a list")
    for name, spec in declared.items():
        at = f"{where}.slack[{short(name)}]"
        if not isinstance(name, str) or not _NAME.match(name):
            raise RoutingError(f"{at}: channel names are lower-case letters, digits, '-' and '_'")
        if not isinstance(spec, dict) or set(spec) != {"conn_id"}:
            raise RoutingError(f"{at}: must be {{conn_id: AIRFLOW_CONNECTION_ID}} (the webhook URL stays in Airflow)")
        if not isinstance(spec["conn_id"], str) or not _CONN_ID.match(spec["conn_id"]):
            raise RoutingError(f"{at}.conn_id: {short(spec['conn_id'])} is not an Airflow connection id")
        slack[name] = spec["conn_id"]

    def channels(value, at: str) -> tuple[str, ...]:
        names = _strings(value, at)
        for name in names:
            if name not in slack:
                raise RoutingError(f"{at}: Slack channel {short(name)} is not declared under {where}.slack")
        return names

    routes = []
    raw = doc.get("routes") or []
    if not isinstance(raw, list):
        raise RoutingError(f"{where}.routes: must be a list of routes")
    for i, r in enumerate(raw):
        at = f"{where}.routes[{i}]"
        if not isinstance(r, dict) or set(r) - _ROUTE_KEYS:
            raise RoutingError(f"{at}: a route is a mapping of {', '.join(sorted(_ROUTE_KEYS))}")
        name = r.get("name", f"route {i + 1}")
        if not isinstance(name, str) or not name.strip() or len(name) > 80:
            raise RoutingError(f"{at}.name: {short(name)} is not a short name")
        at = f"{at} ({short(name)})"
        chosen = _strings(r.get("topics"), f"{at}.topics")
        for t in chosen:
            if t != "overall" and t not in topics:
                raise RoutingError(
                    f"{at}.topics: {short(t)} is not a topic (or 'overall'; see pipeline/classify/model/labels.py)"
                )
        lists = _strings(r.get("watchlists"), f"{at}.watchlists")
        if watchlists is not None:
            for w in lists:
                if w not in watchlists:
                    raise RoutingError(f"{at}.watchlists: no watchlist {short(w)} in the entities file")
        severity = r.get("min_severity", "warning")
        if severity not in SEVERITIES:
            raise RoutingError(f"{at}.min_severity: {short(severity)} is not one of {', '.join(SEVERITIES)}")
        route = Route(
            name=name.strip(),
            topics=chosen,
            watchlists=lists,
            companies=_strings(r.get("companies"), f"{at}.companies"),
            min_severity=severity,
            email=_strings(r.get("email"), f"{at}.email", _EMAIL.match, "email address"),
            slack=channels(r.get("slack"), f"{at}.slack"),
        )
        if not (route.email or route.slack):
            raise RoutingError(f"{at}: sends nowhere (give email and/or slack)")
        routes.append(route)
    digest = doc.get("digest") or {}
    if not isinstance(digest, dict) or set(digest) - {"email", "slack"}:
        raise RoutingError(f"{where}.digest: must be a mapping with 'email' and/or 'slack'")
    return Routing(
        slack=slack,
        routes=tuple(routes),
        digest_email=_strings(digest.get("email"), f"{where}.digest.email", _EMAIL.match, "email address"),
        digest_slack=channels(digest.get("slack"), f"{where}.digest.slack"),
    )
