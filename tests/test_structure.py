"""The house rules, checked: no import cycles (module-level or hidden in functions), no private
names imported across modules, no module over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "policysearch"
LIMIT = 400


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def imports(tree: ast.Module, name: str) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``from policysearch... import`` in the module, anywhere."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("policysearch"):
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("policysearch")]
    return found


def test_no_import_cycles() -> None:
    trees = modules()
    graph: dict[str, set[str]] = {}
    for name, tree in trees.items():
        targets = set()
        for module, names in imports(tree, name):
            for imported in names or [""]:
                full = f"{module}.{imported}"
                targets.add(full if full in trees else module)
        graph[name] = {t for t in targets if t in trees and t != name
                       and not name.startswith(t + ".")}  # a package's own modules

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return path + [start]
                if nxt not in path:
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [c for c in (cycle_from(n) for n in graph) if c]
    assert not cycles, " -> ".join(min(cycles, key=len))


def test_no_private_names_across_modules() -> None:
    bad = [(name, module, n) for name, tree in modules().items()
           for module, names in imports(tree, name) for n in names
           if n.startswith("_") and not n.startswith("__") and module != name]
    assert not bad, bad


def test_modules_stay_small() -> None:
    sizes = {p.relative_to(PACKAGE.parent).as_posix(): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert not {k: v for k, v in sizes.items() if v > LIMIT}


LAYERS: list[set[str]] = [
    {"errors", "paths", "_version"},       # foundations
    {"data", "augment"},                   # images and the op table
    {"policy"},                            # the policy, its file, its layer, transform, exporters
    {"config"},                            # experiments, samplers and pruners as data
    {"training", "study"},                 # the trainer; the study record, storage, spaces
    {"tracking"},                          # the MLflow view of a study
    {"evidence"},                          # statistics, fidelity, validate, bench
    {"search"},                            # workers, the race, the whole run, the proof
    {"cli", "__main__", "policysearch"},   # the command line and the public face
]
"""The rooms of ``policysearch/``, bottom first: a module imports only from its own room or a
lower one (README.md, Layout, says the same in words)."""


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "policysearch"


def rank(module: str) -> int:
    name = room(module)
    for i, layer in enumerate(LAYERS):
        if name in layer:
            return i
    raise AssertionError(f"{module}: room {name!r} is in no layer of LAYERS")


def test_every_room_is_placed_and_the_root_is_short() -> None:
    rooms = {room(m) for m in modules()}
    assert rooms <= set().union(*LAYERS), rooms - set().union(*LAYERS)
    root_files = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert root_files == ["__init__.py", "__main__.py", "_version.py", "errors.py", "paths.py"]


def test_imports_run_down_the_layers() -> None:
    upward = []
    for name, tree in modules().items():
        for module, _ in imports(tree, name):
            if rank(module) > rank(name):
                upward.append(f"{name} -> {module}")
    assert not upward, upward
