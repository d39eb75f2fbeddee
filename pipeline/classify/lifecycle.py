"""A model's way into service: train, evaluate on the held-out sets, register, promote through the gate.

The CLI (``train``), the demo and the training DAG all call these, so the
steps and the gate are written once.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline import db
from pipeline.classify import registry

log = logging.getLogger(__name__)


def register_and_promote(model_dir: str | Path, promote: bool = True, force: bool = False) -> dict:
    """Register the model directory; promote it unless told not to. A refusal by the gate is an answer, not an error."""
    url = db.database_url()
    db.migrate(url)
    with db.transaction(url) as conn:
        version = registry.register(conn, Path(model_dir))
        out: dict = {"version": version}
        if promote:
            try:
                out["promotion"] = registry.promote(conn, version, force=force)
            except registry.PromotionRefused as exc:
                log.warning("not promoted: %s", exc)
                out["promotion"] = {"promoted": False, "version": version, "reason": str(exc)}
    return out


def train_and_register(
    train_args, evaluate: bool = True, promote: bool = True, force: bool = False, entity_head: bool = False
) -> dict:
    """Train (``TrainArguments``), evaluate on the held-out sets, fit the entity head if asked, register, and
    promote through the gate (which refuses a model without the entity head when the active one has it)."""
    from pipeline.classify.evaluate import evaluate as run_eval
    from pipeline.classify.train import train

    model_dir = train(train_args)
    out: dict = {"model_dir": str(model_dir)}
    if evaluate:
        out["held_out"] = run_eval(model_dir)["summary"]
    if entity_head:
        from pipeline.entities.train_head import gate_summary, train_head

        out["entity"] = gate_summary(train_head(model_dir))
    out.update(register_and_promote(model_dir, promote=promote, force=force))
    return out


def install_shipped(promote: bool = True) -> dict:
    """Materialise the committed model (data/model), register it with its committed report, promote it."""
    from pipeline.classify import shipped

    model_dir = shipped.materialize()
    out = {"model_dir": str(model_dir)}
    out.update(register_and_promote(model_dir, promote=promote))
    return out


def reproduce_shipped(promote: bool = True) -> dict:
    """``make model``: train the shipped recipe from scratch, evaluate, fit the entity head (as shipped), register
    and promote through the gate."""
    from pipeline.classify import modeldir, shipped
    from pipeline.classify.train import NOT_RECIPE, TrainArguments

    recipe = modeldir.read_meta(shipped.SHIPPED_DIR)["training"]  # read at call time (tests point it elsewhere)
    fields = TrainArguments.__dataclass_fields__
    args = TrainArguments(**{k: v for k, v in recipe.items() if k in fields and k not in NOT_RECIPE})
    log.info("reproducing the shipped recipe: %s", args)
    return train_and_register(args, evaluate=True, promote=promote, entity_head=True)
