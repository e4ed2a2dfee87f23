"""The import graph between edgepipe's parts points one way: down the layers below, never up, never in a cycle.

Read from the source with ast (imports inside functions count too: a lazy import is still a dependency).
`make lint` runs this file.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "edgepipe"

# Bottom to top. A part may import its own layer's parts (without a cycle) and any layer below.
LAYERS = [
    # edgepipe: the package's own __init__ (its version); device: the standalone device runtime (imports no edgepipe)
    {"errors", "trust", "progress", "defaults", "device", "cache", "child", "edgepipe", "limits", "diskspace"},
    {"artifacts", "recipe", "targets"},
    {"run", "rundir", "bundles"},
    {"data", "models", "tasks", "checkpoint", "complexity", "onnx_export", "trt", "runners", "timing", "foreign"},
    {"training", "distillation", "pruning", "quant", "preflight", "check", "bench", "doctor", "report", "infer"},
    {"stages"},
    {"cli", "__main__"},
]
RANK = {part: rank for rank, layer in enumerate(LAYERS) for part in layer}


def _part(module: str) -> str:
    """edgepipe.quant.tracks -> quant; edgepipe.run -> run; edgepipe -> edgepipe."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "edgepipe"


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """part -> the parts it imports (edgepipe's own only)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        module = _module(path)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    targets = [".".join([*base, node.module] if node.module else base)]
                else:
                    targets = [node.module or ""]
            else:
                continue
            for target in targets:
                if target == "edgepipe" or target.startswith("edgepipe."):
                    if _part(target) != _part(module):
                        graph[_part(module)].add(_part(target))
    return graph


def test_every_part_has_a_layer():
    parts = {_part(_module(path)) for path in PACKAGE.rglob("*.py")}
    assert parts - set(RANK) == set(), "new part: give it a layer in LAYERS"


def test_no_part_imports_a_layer_above_it():
    upward = sorted(f"{source} -> {target}" for source, targets in import_graph().items() for target in targets
                    if RANK[target] > RANK[source])
    assert upward == []


def test_domain_packages_never_import_stages_or_cli():
    offenders = sorted(f"{source} -> {target}" for source, targets in import_graph().items()
                       for target in targets & {"stages", "cli"} if source not in ("stages", "cli", "__main__"))
    assert offenders == []


def test_no_cycles_between_parts():
    graph = import_graph()
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path, node, target]
            if target not in state:
                found = visit(target, [*path, node])
                if found:
                    return found
        state[node] = 2
        return None

    cycles = [cycle for node in sorted(graph) if node not in state for cycle in [visit(node, [])] if cycle]
    assert cycles == []


def test_the_graph_is_read_from_lazy_imports_too():
    # The check must be able to fail: stages imports pruning only inside functions.
    assert "pruning" in import_graph()["stages"]
