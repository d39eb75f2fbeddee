"""A model's way into service: train, evaluate on the held-out sets, fit the entity head, register, promote.

It sits above ``classify`` and ``entities`` (it drives both), so neither imports the other upwards. The
CLI (``train``), the demo and the training DAG all call these, so the
steps and the gate are written once.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline import db
from pipeline.classify.release import registry

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
    args, targs=None, evaluate: bool = True, promote: bool = True, force: bool = False, entity_head: bool = False
) -> dict:
    """Train (``RecipeArguments``, ``TrainingArguments``), evaluate on the held-out sets, fit the entity head if
    asked, register, and promote through the gate (which asks for entity figures only when the active model's
    company rule uses its entity head)."""
    from pipeline.classify.evaluation.evaluate import evaluate as run_eval
    from pipeline.classify.training.train import train

    model_dir = train(args, targs)
    out: dict = {"model_dir": str(model_dir)}
    if evaluate:
        out["held_out"] = run_eval(model_dir)["summary"]
    if entity_head:
        from pipeline.classify.model import modeldir
        from pipeline.classify.release import shipped
        from pipeline.entities.train_head import gate_summary, train_head

        out["entity"] = gate_summary(train_head(model_dir))
        # the company rule in use (a measured choice, not trained) comes with a new head, as with a re-ship
        meta = shipped.carry_entity_rule(modeldir.read_meta(shipped.SHIPPED_DIR), modeldir.read_meta(model_dir))
        modeldir.write_meta(model_dir, meta)
    out.update(register_and_promote(model_dir, promote=promote, force=force))
    return out


def ship(
    model_dir: str | Path, out_dir: str | Path | None = None, base: str | None = None, entity_head: bool = False
) -> Path:
    """Export the delta, rebuild the model from it, evaluate *that* (the form users get) and attach its report;
    with ``entity_head``, fit the company head on the same rebuild and ship it too."""
    from pipeline.classify.evaluation.evaluate import evaluate
    from pipeline.classify.release import shipped
    from pipeline.entities.train_head import train_head

    out_dir = shipped.export(model_dir, out_dir, base)
    rebuilt = shipped.materialize(out_dir, base=base)
    evaluate(rebuilt)
    shipped.attach_report(rebuilt, out_dir)
    if entity_head:
        train_head(rebuilt)
        shipped.attach_entity_head(rebuilt, out_dir)
    return out_dir


def install_shipped(promote: bool = True, if_none_active: bool = False) -> dict:
    """Materialise the committed model (data/model), register it with its committed report, promote it.

    ``if_none_active`` (a deployment's init job, run on every start): do nothing when a model is active, so a
    model promoted since is never demoted.
    """
    from pipeline.classify.release import shipped

    if if_none_active:
        url = db.database_url()
        db.migrate(url)
        with db.transaction(url) as conn:
            current = registry.active(conn)
        if current:
            return {"active": current["version"], "installed": False}
    model_dir = shipped.materialize()
    out = {"model_dir": str(model_dir)}
    out.update(register_and_promote(model_dir, promote=promote))
    return out


def reproduce_shipped(promote: bool = True) -> dict:
    """``make model``: replay the shipped model's training stages from scratch, evaluate, fit the entity head (as
    shipped), register and promote through the gate.

    A stage that warm-starts from a shipped (``-delta``) form of its parent starts here from the same form of the
    reproduced parent. Finished stages are recorded under ``.state/runs/``, so an interrupted run resumes at the
    stage it was in (and each stage resumes from its own checkpoints).
    """
    import hashlib
    import json

    from pipeline import config
    from pipeline.classify.model import modeldir
    from pipeline.classify.release import shipped
    from pipeline.classify.training.arguments import NOT_RECIPE, parse
    from pipeline.classify.training.train import train, training_stages

    stages = training_stages(modeldir.read_meta(shipped.SHIPPED_DIR))  # read at call time (tests point it elsewhere)
    key = hashlib.sha256(json.dumps(stages, sort_keys=True, default=str).encode()).hexdigest()[:16]
    progress_file = config.state_dir() / "runs" / f"reproduce-{key}.json"
    done: list[str] = json.loads(progress_file.read_text()) if progress_file.is_file() else []
    parent: Path | None = None
    for i, stage in enumerate(stages):
        if i < len(stages) - 1 and i < len(done) and (Path(done[i]) / modeldir.META_FILE).is_file():
            parent = Path(done[i])
            log.info("stage %d/%d already reproduced: %s", i + 1, len(stages), parent)
            continue
        args, targs = parse({k: v for k, v in stage.items() if k not in NOT_RECIPE})
        if i and args.init_model and parent is not None:
            if Path(args.init_model).name.endswith("-delta"):  # it started from its parent's shipped form
                parent = shipped.materialize(shipped.export(parent, progress_file.with_suffix(f".stage{i}")))
            args.init_model = str(parent)
        log.info("reproducing stage %d/%d of the shipped recipe: %s", i + 1, len(stages), args)
        if i == len(stages) - 1:
            return train_and_register(args, targs, evaluate=True, promote=promote, entity_head=True)
        parent = train(args, targs)
        done = [*done[:i], str(parent)]
        progress_file.parent.mkdir(parents=True, exist_ok=True)
        progress_file.write_text(json.dumps(done))
    raise ValueError("the shipped model records no training stage")
