"""Surge thresholds per subject and alert routing, from one validated file (``config/alert_rules.yaml``).

``defaults`` apply to topics and the overall stream (the ``FINSENT_ALERT_*``
variables still override them), ``topics`` amend them per topic, and
``entities`` holds the rule for companies: a sparse series needs a longer
baseline, a trailing window of hours judged as one, and a minimum count.
``routing`` says who hears about which alert and where (email, Slack
channels, the daily digest; ``pipeline/alerts/routing.py``).
Unknown keys, wrong types and out-of-range values are errors that name
their place in the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from pipeline import config, safeyaml
from pipeline.alerts.routing import Routing, RoutingError
from pipeline.alerts.routing import parse as parse_routing
from pipeline.config import Thresholds
from pipeline.safeyaml import short

# A company is quiet most hours: judge its last day as one window against four weeks.
ENTITY_DEFAULTS = {
    "baseline_days": 28,
    "window_hours": 24,
    "pool_hours": 1,
    "min_stories": 5,
    "min_negatives": 3,
    "min_ratio": 2.0,
    "critical_ratio": 3.0,
    "warning_p": 0.01,  # python -m bench.alerts --entities: ~0.03-0.09 false alerts per company-week
    "critical_p": 1e-4,
}
_LIMITS = {
    "baseline_days": (1, 365),
    "min_stories": (1, 100_000),
    "min_negatives": (1, 100_000),
    "warning_p": (1e-12, 0.5),
    "critical_p": (1e-15, 0.5),
    "pool_hours": (1, 48),
    "window_hours": (1, 24 * 14),
    "min_ratio": (1.0, 100.0),
    "critical_ratio": (1.0, 100.0),
    "resolve_ratio": (1.0, 100.0),
    "prior_strength": (0.0, 10_000.0),
    "min_history_stories": (0, 10_000_000),
    "regime_days": (1, 30),
    "regime_baseline_days": (7, 730),
    "regime_min_baseline_days": (2, 730),
    "regime_min_day_stories": (1, 100_000),
    "regime_z": (0.5, 100.0),
    "regime_ratio": (1.0, 100.0),
    "regime_resolve_ratio": (1.0, 100.0),
}


class RulesError(ValueError):
    """The rules file is invalid; the message names the file and the place."""


@dataclass(frozen=True)
class Rules:
    defaults: Thresholds = field(default_factory=Thresholds)
    topics: dict[str, Thresholds] = field(default_factory=dict)
    entity_defaults: Thresholds = field(default_factory=lambda: replace(Thresholds(), **ENTITY_DEFAULTS))
    entities: dict[str, Thresholds] = field(default_factory=dict)
    routing: Routing = field(default_factory=Routing)

    def for_subject(self, dimension: str, key: str) -> Thresholds:
        if dimension == "entity":
            return self.entities.get(key, self.entity_defaults)
        if dimension == "topic":
            return self.topics.get(key, self.defaults)
        return self.defaults

    def describe(self) -> list[dict]:
        """Rows for the Alerts page: who is judged by which numbers."""
        rows = [{"applies to": "overall and topics (defaults)", **_public(self.defaults)}]
        rows += [{"applies to": f"topic: {k}", **_public(v)} for k, v in sorted(self.topics.items())]
        rows.append({"applies to": "watchlist companies (defaults)", **_public(self.entity_defaults)})
        rows += [{"applies to": f"company: {k}", **_public(v)} for k, v in sorted(self.entities.items())]
        return rows


def _public(th: Thresholds) -> dict:
    return {f.name: getattr(th, f.name) for f in fields(Thresholds)}


def _apply(base: Thresholds, doc, where: str) -> Thresholds:
    if doc is None:
        return base
    if not isinstance(doc, dict):
        raise RulesError(f"{where}: must be a mapping of threshold names to values")
    known = {f.name: f for f in fields(Thresholds)}
    changes = {}
    for name, value in doc.items():
        if name not in known:
            raise RulesError(f"{where}: unknown threshold {short(name)} (known: {', '.join(sorted(known))})")
        kind = type(known[name].default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (kind is int and not float(value).is_integer())
        ):
            raise RulesError(f"{where}.{name}: {short(value)} is not a {kind.__name__}")
        value = kind(value)
        lo, hi = _LIMITS[name]
        if not lo <= value <= hi:
            raise RulesError(f"{where}.{name}: {value} is outside {lo}..{hi}")
        changes[name] = value
    th = replace(base, **changes)
    if th.critical_p > th.warning_p:
        raise RulesError(f"{where}: critical_p ({th.critical_p}) must not exceed warning_p ({th.warning_p})")
    if th.min_negatives > th.min_stories:
        raise RulesError(f"{where}: min_negatives ({th.min_negatives}) exceeds min_stories ({th.min_stories})")
    return th


def _mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RulesError(f"{where}: must be a mapping (name: value), not a {type(value).__name__}")
    return value


def load(path: Path | None = None) -> Rules:
    """The rules file over the built-in defaults (and the env overrides); a missing file means defaults only."""
    path = Path(path) if path else config.alert_rules_file()
    base = config.alert_thresholds()
    if not path.exists():
        return Rules(defaults=base)
    try:
        doc = safeyaml.load_file(path) or {}
    except safeyaml.YamlFileError as exc:
        raise RulesError(str(exc)) from None
    if not isinstance(doc, dict):
        raise RulesError(f"{path}: the top level must be a mapping")
    unknown = set(doc) - {"defaults", "topics", "entities", "routing"}
    if unknown:
        raise RulesError(f"{path}: unknown sections {sorted(unknown)} (known: defaults, topics, entities, routing)")
    defaults = _apply(base, doc.get("defaults"), f"{path}: defaults")
    topics = {}
    for name, over in _mapping(doc.get("topics"), f"{path}: topics").items():
        from pipeline.classify.model.labels import TOPICS

        if name not in TOPICS:
            raise RulesError(f"{path}: topics: {short(name)} is not a topic (see pipeline/classify/model/labels.py)")
        topics[name] = _apply(defaults, over, f"{path}: topics[{short(name)}]")
    ent = doc.get("entities") or {}
    if not isinstance(ent, dict) or set(ent) - {"defaults", "per_entity"}:
        raise RulesError(f"{path}: entities must be a mapping with 'defaults' and/or 'per_entity'")
    entity_defaults = _apply(replace(defaults, **ENTITY_DEFAULTS), ent.get("defaults"), f"{path}: entities.defaults")
    entities = {
        str(k): _apply(entity_defaults, v, f"{path}: entities.per_entity[{short(k)}]")
        for k, v in _mapping(ent.get("per_entity"), f"{path}: entities.per_entity").items()
    }
    from pipeline.classify.model.labels import TOPICS

    try:
        routing = parse_routing(doc.get("routing"), f"{path}: routing", tuple(TOPICS))
    except RoutingError as exc:
        raise RulesError(str(exc)) from None
    return Rules(defaults, topics, entity_defaults, entities, routing)
