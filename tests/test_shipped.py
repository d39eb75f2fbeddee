"""The shipped model: a compact delta over the base, checked against the base it was made for."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch

from pipeline import db, lifecycle
from pipeline.classify.model import lowrank, modeldir
from pipeline.classify.model.predict import Classifier
from pipeline.classify.release import registry, shipped


@pytest.fixture(scope="module")
def tiny_top(tiny_base, tmp_path_factory):
    """A tiny model whose fine-tune updated the top block of the 2-block tiny base (and the heads)."""
    from pipeline.classify.evaluation.evaluate import evaluate
    from pipeline.classify.training.train import train_from

    root = tmp_path_factory.mktemp("top")
    d = train_from(
        dict(
            base_model=str(tiny_base),
            method="finetune",
            train_layers=1,
            eval_steps=4,
            limit_per_task=96,
            epochs=1,
            batch_size=16,
            learning_rate=1e-3,
            output_root=str(root),
        )
    )
    evaluate(d, peer_names=("tfidf_lr",))
    return d


def test_a_top_block_fine_tune_trains_only_the_top_block_and_calibrates(tiny_top, tiny_base):
    meta = modeldir.read_meta(tiny_top)
    assert meta["method"] == "finetune" and meta["training"]["train_layers"] == 1
    assert meta["calibration"]["sentiment_temperature"] > 0 and "sentiment_val_ece_after" in meta["calibration"]
    assert set(meta["training_data"]["sources"]) == {"tfns_sentiment", "sentfin", "ecosent", "tfns_topic"}
    from transformers import AutoModel

    base = AutoModel.from_pretrained(tiny_base).state_dict()
    trained, _ = modeldir.load(tiny_top)
    changed = {k for k, v in trained.backbone.state_dict().items() if not torch.equal(v, base[k])}
    assert changed and all(k.startswith(("layers.1.", "norm.")) for k in changed), changed


def test_export_and_materialize_round_trip(tiny_top, tiny_base, tmp_path):
    out = shipped.export(tiny_top, tmp_path / "ship", base=str(tiny_base))
    meta = modeldir.read_meta(out)
    info = meta["shipped"]
    assert info["top_blocks"] == 1 and (out / shipped.DELTA_FILE).stat().st_size == info["delta_bytes"]
    assert meta["version"] == modeldir.read_meta(tiny_top)["version"] + "-delta" and meta["metrics"] is None
    assert not (out / "backbone").exists()  # only the delta ships
    rebuilt = shipped.materialize(out, tmp_path / "models", base=str(tiny_base))
    assert modeldir.read_meta(rebuilt)["version"] == meta["version"]
    texts = ["Shares slump after profit warning", "Company raises dividend", "Fed holds rates", "Oil rallies"] * 8
    a, b = Classifier.load(tiny_top).predict(texts), Classifier.load(rebuilt).predict(texts)
    assert np.abs(a.probs - b.probs).max() < 0.02  # fp16 storage of the blocks
    assert shipped.materialize(out, tmp_path / "models", base=str(tiny_base)) == rebuilt  # once per version


def test_a_different_base_or_damaged_delta_is_refused(tiny_top, tiny_base, tmp_path):
    from safetensors.torch import load_file, save_file

    out = shipped.export(tiny_top, tmp_path / "ship", base=str(tiny_base))
    other = tmp_path / "other-base"  # the same base with one weight nudged, edited in its file
    shutil.copytree(tiny_base, other)
    weights = other / "model.safetensors"
    tensors = load_file(str(weights))
    key = next(k for k in tensors if k.endswith("layers.0.mlp.up_proj.weight"))
    tensors[key] = tensors[key] + 0.01
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(shipped.ShippedModelError, match="not the ones this model was made for"):
        shipped.materialize(out, tmp_path / "m1", base=str(other))
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    data = (damaged / shipped.DELTA_FILE).read_bytes()
    (damaged / shipped.DELTA_FILE).write_bytes(data[:-10] + b"0123456789")
    with pytest.raises(shipped.ShippedModelError, match="damaged"):
        shipped.materialize(damaged, tmp_path / "m2", base=str(tiny_base))


def test_a_delta_over_the_size_limit_is_refused(tiny_top, tiny_base, tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "MAX_BYTES", 1024)
    with pytest.raises(shipped.ShippedModelError, match="over the 0 MB limit"):
        shipped.export(tiny_top, tmp_path / "ship", base=str(tiny_base))
    assert not (tmp_path / "ship").exists() and not list(tmp_path.glob(".shipped-*"))  # nothing half-written


def test_lowrank_factors_are_exact_for_a_low_rank_difference_and_refuse_a_full_rank_one():
    torch.manual_seed(0)
    diff = torch.randn(48, 3) @ torch.randn(3, 40) * 1e-3  # a merged rank-3 LoRA update
    a, b = lowrank.lowrank_factors(diff, 4)
    assert a.shape == (48, 4) and b.shape == (4, 40) and a.dtype == torch.float16
    assert torch.linalg.matrix_norm(diff - a.float() @ b.float()) <= 1e-3 * torch.linalg.matrix_norm(diff)
    assert lowrank.lowrank_factors(torch.randn(48, 40), 4) is None  # a block trained outright ships whole
    assert lowrank.lowrank_factors(diff, 0) is None and lowrank.lowrank_factors(torch.randn(40), 4) is None


def _blend_stage(init_model, output_root):
    """Stage 2 on a tiny model: its heads refitted and blended, warm-started from ``init_model``."""
    from pipeline.classify.training.train import train_from

    return train_from(
        dict(
            init_model=str(init_model),
            method="blend",
            head_blend=0.5,
            limit_per_task=64,
            output_root=str(output_root),
        )
    )


def test_installing_the_shipped_model_registers_its_committed_report(
    tiny_top, tiny_base, tmp_path, db_url, monkeypatch
):

    monkeypatch.setenv("FINSENT_BASE_MODEL", str(tiny_base))
    monkeypatch.setenv("FINSENT_HOME", str(tmp_path / "state"))
    # export, rebuild, evaluate the rebuild; fit the company head on that rebuild and ship it
    out = lifecycle.ship(tiny_top, tmp_path / "ship", base=str(tiny_base), entity_head=True)
    assert (out / "report.md").is_file() and (out / "MODEL_CARD.md").is_file()
    meta = modeldir.read_meta(out)
    assert meta["metrics"]["news"]["n"] == 841 + 166 + 1590
    head = (out / shipped.ENTITY_HEAD).read_bytes()
    assert meta["entity_head"]["sha256"] == hashlib.sha256(head).hexdigest()
    assert meta["metrics"]["entity"]["macro_f1"] > 0
    assert "## Company-level sentiment (entity head)" in (out / "MODEL_CARD.md").read_text()
    monkeypatch.setattr(shipped, "SHIPPED_DIR", out)
    shutil.rmtree(tmp_path / "state" / "models")  # a fresh install: rebuilt from the delta, report reused
    result = lifecycle.install_shipped()
    assert result["promotion"]["promoted"]
    conn = db.connect(db_url)
    try:
        active = registry.active(conn)
    finally:
        conn.close()
    assert active["version"] == modeldir.read_meta(out)["version"]
    assert active["metrics"] == modeldir.read_meta(out)["metrics"]


def test_a_fine_tune_resumes_after_an_interruption(tiny_base, tmp_path, caplog):
    """A run stopped after its first steps, restarted with the same work folder, continues from its checkpoint."""
    import logging

    from pipeline.classify.datasets.data import load_task
    from pipeline.classify.model import base as base_model
    from pipeline.classify.model.architecture import DualHeadClassifier
    from pipeline.classify.training.arguments import parse
    from pipeline.classify.training.finetune import finetune

    def run(max_steps: int) -> dict:
        args, targs = parse(
            dict(
                base_model=str(tiny_base),
                method="finetune",
                train_layers=1,
                epochs=1,
                batch_size=16,
                eval_steps=2,
                learning_rate=1e-3,
                max_steps=max_steps,
            )
        )
        sent, topic = load_task("sentiment", 0.1, 42, 64), load_task("topic", 0.1, 42, 64)
        backbone, tok, _ = base_model.load(args.base_model)
        torch.manual_seed(0)
        model = DualHeadClassifier(backbone, 3, 20)
        return finetune(model, tok, sent, topic, args, targs, torch.device("cpu"), tmp_path)

    first = run(2)  # "interrupted" after two steps: its checkpoint stays
    assert first["steps"] == 2 and list(tmp_path.glob("checkpoint-2"))
    with caplog.at_level(logging.INFO, logger="pipeline.classify.training.finetune"):
        second = run(-1)
    assert "resuming from" in caplog.text and "checkpoint-2" in caplog.text
    assert second["steps"] > first["steps"]


def test_the_committed_model_applies_to_the_packaged_base_and_reads_news(smollm2_dir, tmp_path):
    """The delta in data/model fits the real packaged SmolLM2 (hash checked) and labels clear headlines."""
    meta = modeldir.read_meta(shipped.SHIPPED_DIR)
    assert sum(f.stat().st_size for f in shipped.SHIPPED_DIR.iterdir()) <= shipped.MAX_BYTES  # 30 MB in all
    assert meta["metrics"]["news"]["macro_f1"] > 0 and (shipped.SHIPPED_DIR / "MODEL_CARD.md").is_file()
    model_dir = shipped.materialize(shipped.SHIPPED_DIR, tmp_path / "models")
    clf = Classifier.load(model_dir)
    preds = clf.predict(
        [
            "Shares plunge 20% after the company slashes its profit forecast and cuts jobs",
            "Company beats earnings estimates, raises full-year guidance; stock jumps to a record",
            "Board to meet on Tuesday to consider the quarterly results",
        ]
    )
    assert preds.sentiment == ["negative", "positive", "neutral"], preds.rows()
    assert np.allclose(preds.probs.sum(1), 1.0, atol=1e-5)


def test_make_model_replays_every_stage_of_a_two_stage_shipped_model(
    tiny_top, tiny_base, tmp_path, db_url, monkeypatch
):
    """``make model`` on a model made in two stages (a fine-tune, then a blend warm-started from its shipped
    form): stage 1 is trained again, shipped and rebuilt the same way, and stage 2 starts from that rebuild."""
    import json

    from pipeline import config

    monkeypatch.setenv("FINSENT_BASE_MODEL", str(tiny_base))
    monkeypatch.setenv("FINSENT_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("FINSENT_EVAL_PEERS", "tfidf_lr")
    stage1 = shipped.materialize(shipped.export(tiny_top, tmp_path / "s1"), tmp_path / "m", base=str(tiny_base))
    second = _blend_stage(stage1, tmp_path / "models")
    monkeypatch.setattr(shipped, "SHIPPED_DIR", shipped.export(second, tmp_path / "ship"))
    result = lifecycle.reproduce_shipped(promote=True)
    meta = modeldir.read_meta(result["model_dir"])
    replayed, recorded = meta["training_stages"], modeldir.read_meta(second)["training_stages"]
    assert [s["method"] for s in replayed] == ["finetune", "blend"]
    assert replayed[0] == recorded[0]  # stage 1: the same recipe, trained again
    new_parent = replayed[1].pop("init_model")
    assert new_parent.endswith("-delta") and new_parent != recorded[1].pop("init_model")
    assert replayed[1] == recorded[1]
    assert modeldir.read_meta(new_parent)["parent_version"] != modeldir.read_meta(stage1)["parent_version"]
    progress = list((config.state_dir() / "runs").glob("reproduce-*.json"))
    assert len(progress) == 1 and len(json.loads(progress[0].read_text())) == 1  # stage 1 done: a rerun skips it
    assert result["held_out"] and "entity" in result and result["promotion"]["promoted"]


def test_a_stage_stopped_by_its_time_budget_is_replayed_to_the_same_step():
    from transformers import TrainerControl, TrainerState

    from pipeline.classify.training.finetune import TimeBudget
    from pipeline.classify.training.train import replayable

    stage = {"method": "finetune", "max_minutes": 80, "epochs": 1}
    assert replayable(stage, {"steps": 1788}) == {
        "method": "finetune",
        "max_minutes": None,
        "epochs": 1,
        "max_steps": 1788,
    }
    assert replayable({"method": "top", "epochs": 2}, {"steps": 10}) == {"method": "top", "epochs": 2}
    budget, control = TimeBudget(steps=3), TrainerControl()
    for step in (1, 2):
        assert not budget.on_step_end(None, TrainerState(global_step=step), control).should_training_stop
    stopped = budget.on_step_end(None, TrainerState(global_step=3), control)
    assert stopped.should_training_stop and stopped.should_evaluate and stopped.should_save


# --- model folders from careless operators and attackers (issue 21) ---------------------------------------------


def _run_cli(args: list[str], capsys) -> tuple[int, str]:
    from pipeline import cli

    code = cli.main(args)
    return code, capsys.readouterr().err.strip()


def test_a_folder_that_cannot_load_is_never_registered_or_promoted(tiny_top, tmp_path, db_url, capsys, monkeypatch):
    import json

    monkeypatch.setenv("DATABASE_URL", db_url)
    only_meta = tmp_path / "only-meta"
    only_meta.mkdir()
    meta = modeldir.read_meta(tiny_top)
    (only_meta / modeldir.META_FILE).write_text(json.dumps({**meta, "version": "only-meta"}))
    code, err = _run_cli(["models", "register", str(only_meta)], capsys)
    assert code == 2 and "incomplete" in err and "\n" not in err
    no_field = shutil.copytree(tiny_top, tmp_path / "no-field")
    (no_field / modeldir.META_FILE).write_text(json.dumps({k: v for k, v in meta.items() if k != "created_at"}))
    code, err = _run_cli(["models", "register", str(no_field)], capsys)
    assert code == 2 and "'created_at' is missing" in err
    bad_version = shutil.copytree(tiny_top, tmp_path / "bad-version")
    (bad_version / modeldir.META_FILE).write_text(json.dumps({**meta, "version": "../evil"}))
    code, err = _run_cli(["models", "register", str(bad_version)], capsys)
    assert code == 2 and "not a valid model version" in err

    good = shutil.copytree(tiny_top, tmp_path / "good")  # registered whole, then damaged before promotion
    conn = db.connect(db_url)
    try:
        version = registry.register(conn, good)
        (good / "backbone" / "model.safetensors").unlink()
        with pytest.raises(registry.PromotionRefused, match="does not load"):
            registry.promote(conn, version, force=True)
        assert registry.active(conn) is None
        with conn.cursor() as cur:
            cur.execute("SELECT version FROM models")
            assert [r[0] for r in cur.fetchall()] == [version]  # only the whole one was ever registered
    finally:
        conn.close()


def test_a_shipped_version_cannot_leave_the_models_root(tiny_top, tiny_base, tmp_path):
    import json

    out = shipped.export(tiny_top, tmp_path / "ship", base=str(tiny_base))
    meta = modeldir.read_meta(out)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    root = tmp_path / "models"
    for version in ("../victim", "/tmp/abs", "a/b", "..", "x" * 200):
        (out / modeldir.META_FILE).write_text(json.dumps({**meta, "version": version}))
        with pytest.raises(modeldir.ModelDirError, match="not a valid model version"):
            shipped.materialize(out, root, base=str(tiny_base))
    assert (victim / "keep.txt").read_text() == "mine" and not list(tmp_path.glob("victim.partial"))
    assert not root.exists() or not any(root.iterdir())


def test_a_delta_that_inflates_past_the_cap_is_refused_in_bounded_memory(tiny_top, tiny_base, tmp_path, monkeypatch):
    import gzip
    import hashlib
    import json
    import resource

    out = shipped.export(tiny_top, tmp_path / "ship", base=str(tiny_base))
    bomb = out / shipped.DELTA_FILE
    with gzip.open(bomb, "wb", compresslevel=9) as fh:  # 64 MB of zeros in ~60 KB, its hash duly recorded
        for _ in range(64):
            fh.write(bytes(1 << 20))
    assert bomb.stat().st_size < 200_000
    meta = modeldir.read_meta(out)
    meta["shipped"]["delta_sha256"] = hashlib.sha256(bomb.read_bytes()).hexdigest()
    (out / modeldir.META_FILE).write_text(json.dumps(meta))
    monkeypatch.setattr(shipped, "MAX_INFLATED_BYTES", 8_000_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(shipped.ShippedModelError, match="inflates past 8 MB"):
        shipped.materialize(out, tmp_path / "models", base=str(tiny_base))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 40  # stopped at the cap, not after inflating all 64 MB
    assert not (tmp_path / "models").exists()


def test_a_reship_keeps_the_company_rule_the_shipped_model_was_measured_with():
    """The entity rule (``inherit``) is a benchmark's decision: a new model, head or replay carries it over."""
    previous = {"entity_head": {"C": 0.001, "rule": "inherit", "rule_chosen_by": "bench.entity_transfer"}}
    fresh = {"version": "new", "entity_head": {"C": 0.003, "sha256": "x"}}
    kept = shipped.carry_entity_rule(previous, fresh)
    assert kept["entity_head"] == {
        "C": 0.003,
        "sha256": "x",
        "rule": "inherit",
        "rule_chosen_by": "bench.entity_transfer",
    }
    assert fresh["entity_head"] == {"C": 0.003, "sha256": "x"}  # not mutated
    own = {"entity_head": {"rule": "head"}}
    assert shipped.carry_entity_rule(previous, own) == own  # a model that names its own rule keeps it
    assert shipped.carry_entity_rule({}, fresh) == fresh
    assert shipped.carry_entity_rule(previous, {"version": "v"})["entity_head"]["rule"] == "inherit"


def test_delta_rank_follows_the_recipe():
    assert shipped.delta_rank([{"method": "finetune", "train_layers": 1}]) == 0  # its top block ships whole
    stages = [
        {"method": "finetune", "train_layers": 0},
        {"method": "compress", "compress_rank": 32},
        {"method": "blend"},
    ]
    assert shipped.delta_rank(stages) == 32
    from pipeline.classify.evaluation.modelcard import _recipe

    card = _recipe({"training_stages": [{"method": "finetune", "train_layers": 0}, *stages[1:]]})
    assert card.startswith("`finetune` (all blocks) then `compress` (the difference from the base kept at rank 32")


def test_an_all_layer_fine_tune_ships_after_its_compress_stage(tiny_models, tiny_base, tmp_path):
    """compress: every weight matrix's difference from the base at rank r, vectors and the sentiment head kept,
    the topic head refitted; it then ships as exact rank-r factors (an all-layer fine-tune alone does not)."""
    from pipeline.classify.model import base as base_model
    from pipeline.classify.training.train import train_from, training_stages

    parent = tiny_models[1]  # every layer fine-tuned
    pmeta = modeldir.read_meta(parent)
    common = dict(method="compress", init_model=str(parent), max_length=pmeta["max_length"], limit_per_task=120)
    out = train_from(dict(**common, compress_rank=2, output_root=str(tmp_path / "models")))
    p, _ = modeldir.load(parent)
    c, meta = modeldir.load(out)
    base, _, _ = base_model.load(str(tiny_base))
    b, ps, cs = base.state_dict(), p.backbone.state_dict(), c.backbone.state_dict()
    matrices = [n for n, t in cs.items() if t.ndim == 2]
    for name in matrices:
        sv = torch.linalg.svdvals(cs[name].float() - b[name].float())
        assert sv[2:].max() <= 1e-4 * sv[0]  # rank 2
        assert not torch.equal(cs[name], ps[name])  # the parent's difference was not rank 2
    for name in (n for n, t in cs.items() if t.ndim == 1):
        assert torch.equal(cs[name], ps[name])
    assert torch.equal(c.sentiment_head.weight, p.sentiment_head.weight)
    assert not torch.allclose(c.topic_head.weight, p.topic_head.weight)
    d = meta["training_details"]
    assert d["compress_rank"] == 2 and d["matrices"] == len(matrices) and 0 < d["energy_kept"] < 1
    assert training_stages(meta)[-1]["method"] == "compress"

    ship = shipped.export(out, tmp_path / "ship", base=str(tiny_base))
    info = modeldir.read_meta(ship)["shipped"]
    assert info["rank"] == 2 and info["lowrank_tensors"] == len(matrices) and info["top_blocks"] == 0
    rebuilt = modeldir.load(shipped.materialize(ship, tmp_path / "rebuilt", base=str(tiny_base)))[0]
    name = "layers.0.mlp.down_proj.weight"
    assert torch.allclose(rebuilt.backbone.state_dict()[name], cs[name], atol=1e-4)
    with pytest.raises(ValueError, match="compress_rank"):
        train_from(dict(**common))  # no rank given
    with pytest.raises(ValueError, match="compress_rank"):
        train_from(dict(method="blend", init_model=str(parent), head_blend=0.5, compress_rank=4))
