"""The hourly entity step: sync a changed catalogue, link new stories, label linked pairs with the active model.

A broken ``config/entities.yaml`` never stops story scoring or topic alerts:
the step logs the validation error (naming the entry), links nothing, and the
stories wait; they are linked on the first run after the file is fixed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline import db
from pipeline.classify.release import registry
from pipeline.entities import catalogue, store
from pipeline.entities.catalogue import CatalogueError
from pipeline.entities.detect import Finder
from pipeline.entities.link import Linker
from pipeline.entities.sentiment import HEAD_FILE

log = logging.getLogger(__name__)
_LINKERS: dict[str, Linker] = {}
_DETECTORS: dict[str, object] = {}


def linker_for(cat: catalogue.Catalogue) -> Linker:
    """One automaton per catalogue version per process (a worker runs many tasks)."""
    fp = cat.fingerprint()
    if fp not in _LINKERS:
        _LINKERS.clear()
        _LINKERS[fp] = Linker(cat)
    return _LINKERS[fp]


def score_and_link(database_url: str, **score_args) -> dict:
    """The one step after ingest (hourly, fast lane, rescore, replay): score the stories the active model has
    not scored, then link and label the companies they name. Raises NoActiveModel when none is active."""
    from pipeline.classify.score import score_pending

    scored = score_pending(database_url, **score_args)
    return {**scored, "entities": link_and_score(database_url, scored["model_version"])}


def link_and_score(database_url: str | None = None, version: str | None = None, device: str | None = None) -> dict:
    """Returns counts; ``skipped`` says why nothing was linked (invalid catalogue file)."""
    conn = db.connect(database_url or db.database_url())
    try:
        try:
            cat = catalogue.load()
        except CatalogueError as exc:
            log.error("entity catalogue not loaded, stories not linked this run: %s", exc)
            return {"skipped": str(exc)}
        out: dict = {}
        if store.fingerprint(conn) != cat.fingerprint():
            out["sync"] = store.sync(conn, cat)
        model = registry.active(conn) if version is None else (registry.model(conn, version) or {"version": version})
        finder = Finder(linker_for(cat), detector_for(model.get("path") if model else None, device))
        out["links"] = store.link_pending(conn, finder)
        if model is None:
            return out
        scorer = None
        if model.get("path") and (Path(model["path"]) / HEAD_FILE).is_file() and not _inherits(Path(model["path"])):
            from pipeline.entities.sentiment import EntityScorer

            scorer = EntityScorer.load(model["path"], device=device)
        out["labels"] = store.score_pending(conn, model["version"], scorer)
        out["labels"]["method"] = "entity_head" if scorer else "story_label"
        return out
    finally:
        conn.close()


def detector_for(model_path: str | None, device: str | None = None):
    """The active model's mention tagger, loaded once per model per process; None (rules alone, logged) when the
    model has none (``entities train-detector`` fits one) or it cannot be read."""
    from pipeline.entities.detect import HEAD_FILE as TAGGER
    from pipeline.entities.detect import MentionDetector

    if not model_path or not (Path(model_path) / TAGGER).is_file():
        if model_path:
            log.info("model %s has no mention tagger: companies linked by the catalogue's rules alone", model_path)
        return None
    if model_path not in _DETECTORS:
        _DETECTORS.clear()
        _DETECTORS[model_path] = MentionDetector.load(model_path, device=device)
    return _DETECTORS[model_path]


def _inherits(model_dir: Path) -> bool:
    """The model's entity rule says companies take their headline's label: no second pass is needed."""
    from pipeline.classify.model import modeldir

    return (modeldir.read_meta(model_dir).get("entity_head") or {}).get("rule") == "inherit"
