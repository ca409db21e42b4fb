"""The package's import graph has layers and no circles (read from the sources with ``ast``, so a function-level
import counts as much as one at the top of a module).

The layers, bottom to top: the core (ops, the model, checkpoints, the network's options and summary, the NumPy
reference, the safetensors and .pth formats) <- ``data`` <- the inference commands (``evaluate``, ``predict``,
``weights``, ``export``) <- ``train`` <- ``analysis`` <- the entry modules of the commands whose code lives in a
subpackage. A module may import its own layer and the layers below it, never one above, and no chain of imports may
come back to where it started.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "alexnet_cuda"
MISSING = "?"  # marks an import of a module that does not exist (it would fail when its line runs)
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# The modules outside the core, by the layer they belong to (a name ending in '.' means the whole subpackage).
LAYERS = [
    ("core", ()),
    ("data", ("data.",)),
    ("inference", ("evaluate", "predict", "weights", "export")),
    ("train", ("train.",)),
    ("analysis", ("analysis.",)),
    ("entry", ("__main__", "report", "study", "figure1")),
]


def module_files() -> dict[str, Path]:
    """Every module of the package by its dotted name relative to the package ('' for its __init__)."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def layer_of(module: str) -> int:
    for index, (_, members) in enumerate(LAYERS):
        for m in members:
            if module == m or (m.endswith(".") and (module + ".").startswith(m)):
                return index
    return 0


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``module`` imports, wherever in the file the import stands."""
    is_package = path.name == "__init__.py"
    here = module.split(".") if module else []
    base_parts = here if is_package else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name == PACKAGE or a.name.startswith(PACKAGE + ".")]
            names = [t[len(PACKAGE) + 1:] if t != PACKAGE else "" for t in targets]
            found.update(n for n in names if n in known)
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0:
            if node.module != PACKAGE and not (node.module or "").startswith(PACKAGE + "."):
                continue
            parent = node.module[len(PACKAGE) + 1:] if node.module != PACKAGE else ""
        else:
            up = base_parts[:len(base_parts) - (node.level - 1)] if node.level > 1 else base_parts
            parent = ".".join(up + ([node.module] if node.module else []))
        for alias in node.names:
            child = f"{parent}.{alias.name}" if parent else alias.name
            # `from . import x` imports the submodule x when there is one, else a name of the package's __init__.
            if child in known:
                found.add(child)
            elif parent in known:
                found.add(parent)
            else:
                found.add(MISSING + child)
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files) | {"_C"}
    return {m: imports_of(m, p, known) for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def depth(graph: dict[str, set[str]]) -> int:
    """The longest chain of imports (modules on it), for the record."""
    memo: dict[str, int] = {}

    def d(m: str, seen: frozenset = frozenset()) -> int:
        if m in seen:  # a circle: count it once
            return 0
        if m not in memo:
            memo[m] = 1 + max((d(n, seen | {m}) for n in graph.get(m, ()) if n in graph), default=0)
        return memo[m]

    return max(d(m) for m in graph)


def name(module: str) -> str:
    return f"{PACKAGE}.{module}" if module else PACKAGE


def test_every_import_of_the_package_resolves():
    """Function-level imports fail only when they run: a module moved away must not leave one behind."""
    missing = [f"{name(m)} imports {name(n[1:])}" for m, targets in sorted(import_graph().items())
               for n in sorted(targets) if n.startswith(MISSING)]
    assert not missing, "imports of modules that do not exist:\n" + "\n".join(missing)


def test_no_import_circles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(name(m) for m in cycle)


def test_no_upward_imports():
    graph = import_graph()
    upward = [f"{name(m)} ({LAYERS[layer_of(m)][0]}) imports {name(n)} ({LAYERS[layer_of(n)][0]})"
              for m, targets in sorted(graph.items()) for n in sorted(targets) if layer_of(n) > layer_of(m)]
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_the_checker_sees_a_circle_and_an_upward_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("train.loop") > layer_of("data.loader") > layer_of("model")


if __name__ == "__main__":
    g = import_graph()
    print(f"{len(g)} modules, import depth {depth(g)}, a circle: {find_cycle(g)}")
    for m, targets in sorted(g.items()):
        for n in sorted(targets):
            if n.startswith(MISSING):
                print(f"missing: {name(m)} -> {n}")
            elif layer_of(n) > layer_of(m):
                print(f"upward: {name(m)} -> {name(n)}")
