"""The house's floors: no module imports one on a higher floor (docs/layout.md draws them).

Floors, lowest first: the foundation (configuration, database, safe readers, windows); ingest and classify;
entities and alerts, which build on classified stories; the orchestration (tasks, CLI, lifecycle, replay, demo);
the DAGs and the dashboard. Inside ``classify`` the wings stack the same way: model and datasets (one floor: the
data readers use the label names and text normalisation, and the int8 export calibrates on training texts), then
training, evaluation, release, and ``score`` (the scoring step) on top. An import reaching up a floor is how a layout rots: a
newcomer can no longer read a room without the rooms above it. Benches and tests sit outside and may import
anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOUNDATION = {"config", "db", "safeyaml", "csvio", "digits", "redact", "logs", "windows"}
CLASSIFY_WINGS = {"model": 0, "datasets": 0, "training": 1, "evaluation": 2, "release": 3, "score": 4}


def floor(module: str) -> tuple[int, int]:
    """(floor, room within the floor) of a module of this project."""
    parts = module.split(".")
    if parts[0] in ("dags", "dashboard"):
        return (4, 0)
    if len(parts) == 1 or parts[1] in FOUNDATION:
        return (0, 0)
    room = parts[1]
    if room == "ingest":
        return (1, 0)
    if room == "classify":
        return (1, CLASSIFY_WINGS.get(parts[2], 0) if len(parts) > 2 else 0)
    if room in ("entities", "alerts"):
        return (2, 0)
    return (3, 0)  # the orchestration: pipeline's own top-level modules


def imports(path: Path) -> list[tuple[str, int]]:
    """Every project module a file imports, with its line (``from pkg import mod`` counts as ``pkg.mod``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in ("pipeline", "dags", "dashboard"):
                continue
            base = ROOT / node.module.replace(".", "/")
            mods = [f"{node.module}.{a.name}" for a in node.names if (base / f"{a.name}.py").is_file()]
            found += [(m, node.lineno) for m in mods or [node.module]]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] in ("pipeline", "dashboard")]
    return found


def modules() -> dict[str, Path]:
    out = {}
    for top in ("pipeline", "dags", "dashboard"):
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(p for p in rel.parts if p != "__init__")
            out[name] = path
    return out


def test_the_floor_map_places_the_rooms():
    assert floor("pipeline.config") == (0, 0) and floor("pipeline.ingest.fetch") == (1, 0)
    assert floor("pipeline.classify.model.predict") == floor("pipeline.classify.datasets.data")
    assert floor("pipeline.classify.model.predict") < floor("pipeline.classify.training.train")
    assert (
        floor("pipeline.classify.release.shipped") < floor("pipeline.classify.score") < floor("pipeline.entities.run")
    )
    assert floor("pipeline.alerts.run") < floor("pipeline.tasks") < floor("dags.finsent_hourly")
    assert floor("pipeline.replay") == floor("pipeline.entities_cli") == floor("pipeline.lifecycle") == (3, 0)


def test_no_module_imports_one_on_a_higher_floor():
    upward = []
    for name, path in sorted(modules().items()):
        for target, line in imports(path):
            if floor(target) > floor(name):
                upward.append(f"{path.relative_to(ROOT)}:{line} {name} -> {target}")
    assert not upward, "\n".join(upward)


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The check can fail: a foundation module importing the orchestration is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from pipeline import tasks\nfrom pipeline.classify.release import shipped\n")
    got = [t for t, _ in imports(bad)]
    assert "pipeline.tasks" in got and "pipeline.classify.release.shipped" in got
    assert floor("pipeline.tasks") > floor("pipeline.config")


def test_entities_and_alerts_do_not_lean_on_each_other():
    """Two rooms on one floor: companies and alerts each read classified stories, never each other."""
    crossing = []
    for name, path in modules().items():
        room = name.split(".")[1] if name.startswith("pipeline.") and name.count(".") >= 1 else ""
        other = {"entities": "pipeline.alerts", "alerts": "pipeline.entities"}.get(room)
        crossing += [f"{name} -> {t}" for t, _ in imports(path) if other and t.startswith(other)]
    assert not crossing, crossing
