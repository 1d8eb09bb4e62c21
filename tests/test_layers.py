"""The import graph keeps its layers: each module imports only from its own layer or below, and nothing imports
in a cycle. The layers are the README's picture, bottom up."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Bottom up. A module may import any module of a lower layer, and modules of its own layer.
LAYERS: list[set[str]] = [
    {"seed_story.config", "seed_story.storage", "seed_story.provenance"},
    {"seed_story.presets", "seed_story.tokenizer", "seed_story.models", "seed_story.interleave"},
    {"seed_story.checkpoints", "seed_story.describe"},
    {"seed_story.components"},
    {"seed_story.generation"},  # the engine: writing and drawing
    {"seed_story.runstore", "seed_story.data", "seed_story.registry"},  # what a run stores; training data; models
    {"seed_story.storyworld", "seed_story.render"},  # the synthetic worlds and their judge; storybooks
    {"seed_story.batch", "seed_story.training"},  # library stages
    {"seed_story.examples"},
    {"tasks"},  # Prefect tasks: thin wrappers of the stages
    {"flows"},  # Prefect flows: compose tasks
    {"seed_story.cli"},  # the command line starts flows
]


def _unit(module: str) -> str | None:
    """The layer unit of a dotted module name: its package (``seed_story.batch``) or top-level name (``tasks``)."""
    parts = module.split(".")
    if parts[0] in ("tasks", "flows"):
        return parts[0]
    if parts[0] == "seed_story" and len(parts) > 1:
        return ".".join(parts[:2])
    return None


def _layer(unit: str) -> int:
    (index,) = [i for i, units in enumerate(LAYERS) if unit in units]
    return index


def _imports() -> dict[str, set[str]]:
    """Module -> the project modules it imports (at any depth: a lazy import is still a dependency)."""
    found: dict[str, set[str]] = {}
    for root in ("seed_story", "tasks", "flows"):
        for path in (REPO / root).rglob("*.py"):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            targets = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    targets.add(node.module)
                elif isinstance(node, ast.Import):
                    targets.update(alias.name for alias in node.names)
            found[module] = {t for t in targets if _unit(t) is not None}
    return found


def test_every_package_has_a_layer():
    units = {_unit(m) for m in _imports()} - {None, "seed_story.__init__"}
    unplaced = sorted(u for u in units if not any(u in layer for layer in LAYERS))
    assert not unplaced, f"place these in LAYERS: {unplaced}"


def test_no_module_imports_from_a_layer_above_it():
    upward = []
    for module, targets in _imports().items():
        if (unit := _unit(module)) is None or unit == "seed_story.__init__":
            continue
        upward += [f"{module} -> {t}" for t in targets if _layer(_unit(t)) > _layer(unit)]
    assert not upward, "\n".join(sorted(upward))


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for module, targets in _imports().items():
        if (unit := _unit(module)) is not None:
            graph.setdefault(unit, set()).update(u for t in targets if (u := _unit(t)) != unit)
    seen: set[str] = set()

    def visit(unit: str, path: tuple[str, ...]) -> None:
        assert unit not in path, "import cycle: " + " -> ".join((*path[path.index(unit) :], unit))
        if unit in seen:
            return
        for nxt in sorted(graph.get(unit, ())):
            visit(nxt, (*path, unit))
        seen.add(unit)

    for unit in sorted(graph):
        visit(unit, ())
