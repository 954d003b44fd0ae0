"""The package layers of DESIGN §2: imports run downward only. `python tests/test_layers.py` prints the import
graph between bl2's packages (every import, top-level or inside a function, found with `ast`).

    cli  ->  workflows  ->  distill  ->  cache, eval  ->  runs, data, model  ->  leaves

Units are bl2's packages (each must have a layer below) and its top-level modules (each a leaf).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "bl2"
PACKAGES = sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").is_file())
LEAVES = sorted(p.stem for p in SRC.glob("*.py") if p.stem not in ("__init__", "__main__"))
LAYER = {"leaf": 0, "runs": 1, "data": 1, "model": 1, "cache": 2, "eval": 2, "distill": 3, "workflows": 4, "cli": 5}
# Same-layer packages that must not import each other (DESIGN §2: cache and eval are independent).
INDEPENDENT = {("cache", "eval"), ("eval", "cache"), ("data", "model"), ("model", "data"), ("runs", "model"),
               ("model", "runs")}


def unit_of(module: str) -> str:
    """'bl2.cache.reader' -> 'cache'; 'bl2.errors' -> 'errors'; 'bl2' -> 'bl2'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "bl2"


def layer_of(unit: str) -> str:
    if unit in LEAVES or unit == "bl2":
        return "leaf"
    if unit == "__main__":
        return "cli"
    return unit


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p) for p in SRC.rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """Every bl2 module imported anywhere in the file (absolute imports only: bl2 uses no relative ones)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "bl2"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bl2":
            assert node.level == 0, f"{path}: relative import"
            # `from bl2.pkg import submodule` imports the submodule, not the package's __init__
            subs = {f"{node.module}.{a.name}" for a in node.names} & MODULES
            found |= subs or {node.module}
    return found


def unit_graph() -> dict[str, set[str]]:
    """unit -> the other units it imports (units: packages data, model, cache, ... and the leaf modules)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in sorted(SRC.rglob("*.py")):
        src = unit_of(module_name(path))
        for target in imports_of(path):
            dst = unit_of(target)
            if dst != src:
                graph[src].add(dst)
    return graph


def violations() -> list[str]:
    bad = []
    for src, targets in unit_graph().items():
        for dst in sorted(targets):
            a, b = layer_of(src), layer_of(dst)
            if LAYER[b] > LAYER[a] or (a, b) in INDEPENDENT or (a == b == "leaf" and dst not in ("errors", "bl2")):
                bad.append(f"{src} ({a}) imports {dst} ({b})")
    return bad


def module_cycles() -> list[str]:
    """Pairs of modules that import each other (directly)."""
    edges = {}
    for path in sorted(SRC.rglob("*.py")):
        edges[module_name(path)] = imports_of(path)
    return sorted(f"{a} <-> {b}" for a, targets in edges.items() for b in targets
                  if a < b and a in edges.get(b, set()))


def test_every_package_has_a_layer():
    assert [p for p in PACKAGES if p not in LAYER] == [], "give the new package a layer in LAYER"


def test_imports_run_downward():
    assert violations() == []


def test_no_mutual_imports():
    assert module_cycles() == []


if __name__ == "__main__":
    graph = unit_graph()
    for src in sorted(graph, key=lambda u: (-LAYER[layer_of(u)], u)):
        print(f"{src:>11} [{layer_of(src)}] -> {', '.join(sorted(graph[src]))}")
    for line in violations() + module_cycles():
        print("VIOLATION:", line)
