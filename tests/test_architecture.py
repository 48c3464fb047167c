"""lrjax's import graph: no import cycle between modules, and no module imports one on a higher
layer of the layering below.

Every module under ``lrjax/`` is parsed with ``ast``, nothing is imported: an import counts
wherever it is (module level, inside a function, under ``if TYPE_CHECKING``), relative imports
are resolved, and ``from lrjax.pkg import name`` counts as importing ``lrjax.pkg.name`` when that
is a submodule, else ``lrjax.pkg``. An import of a module that does not exist (one moved away, or
a name of the package ``lrjax`` itself, ``from lrjax import name``) is an error of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LRJAX = Path(__file__).resolve().parents[1] / "lrjax"

# The layering, lowest first. A room is a module, or a package with all its submodules; a module
# may import its own room and rooms on its own or a lower layer, never a higher one. A room listed
# here but absent from lrjax/ is fine (being written, or moved away).
# fmt: off
LAYERS: tuple[tuple[tuple[str, ...], str], ...] = (
    # (rooms, why they are on this layer), lowest first
    (("lrjax._validation",),
     "the argument checks and the ConfigError every module raises"),
    (("lrjax.data", "lrjax.models", "lrjax.features", "lrjax.distributed", "lrjax.checkpoint"),
     "foundations: datasets, networks, controller inputs, processes, checkpoints; no training"),
    (("lrjax.tasks", "lrjax.controller"),
     "a trainee (a dataset and a model); the controller transform (features and an actor)"),
    (("lrjax.engine", "lrjax.training"),
     "training many trainees at once, as one compiled program"),
    (("lrjax.mdp", "lrjax.env"),
     "training as a reinforcement-learning environment: episodes of trainee steps"),
    (("lrjax.baselines", "lrjax.algos", "lrjax.testing"),
     "what learns a controller or stands in for one; helpers to test them"),
    (("lrjax.evaluation", "lrjax.paper_b", "lrjax.pretrained"),
     "experiments with controllers: their evaluation, paper B's, the shipped controller"),
    (("lrjax.plots",),
     "figures of any of the above"),
    (("lrjax.cli",),
     "the command line, on top of everything"),
)
# fmt: on
EXEMPT = ("lrjax", "lrjax.__main__")
"""Not layered as importers: the package's lazy public names and ``python -m lrjax``."""
KNOWN_UPWARD: frozenset[tuple[str, str]] = frozenset()
"""(importer, imported) imports that go up today and are to be fixed: none."""


def find_modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, whether it is a package's ``__init__``), for ``root``'s
    package (``root`` is the package's folder)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if package else parts)] = (path, package)
    return modules


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """Module -> {module of ``root``'s package it imports: the first line that does}. A module
    that does not exist keeps its name (``from lrjax import name``: ``lrjax.name``)."""
    modules = find_modules(root)
    top = root.name

    graph = {}
    for name, (path, package) in modules.items():
        here = name if package else name.rpartition(".")[0]
        targets: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            found = []
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([base] if base else [])])
                found = [_from_target(base, a.name, modules, top) for a in node.names]
            for target in found:
                if target == top or target.startswith(top + "."):
                    if target != name:
                        targets[target] = min(targets.get(target, node.lineno), node.lineno)
        graph[name] = targets
    return graph


def _from_target(base: str, name: str, modules, top: str) -> str:
    """What ``from base import name`` imports: the submodule ``base.name`` if there is one, else
    ``base``; a name of the top package (its lazy public names) is ``top.name``, which is no
    module."""
    sub = f"{base}.{name}"
    return sub if sub in modules or base == top else base


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (``a -> b -> ... -> a``) per group of modules that import each other (the
    strongly connected components of the graph, by Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_through(group, graph) for group in sorted(groups)]


def _cycle_through(group: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """A shortest cycle from the group's first module back to it, inside the group."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node]):
                if nxt == start:
                    return [*paths[node], start]
                if nxt in members and nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise AssertionError(f"no cycle through {group}")  # pragma: no cover - Tarjan found one


def room_of(module: str) -> tuple[str, int] | None:
    """The module's room and its layer (None: not in the layering)."""
    matches = [
        (room, layer)
        for layer, (rooms, _) in enumerate(LAYERS)
        for room in rooms
        if module == room or module.startswith(room + ".")
    ]
    return max(matches, key=lambda m: len(m[0])) if matches else None


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    """Each import from a module to a room on a higher layer, in words (``lrjax`` itself, the
    package's ``__init__``, counts as above every layer)."""
    found = []
    for module, targets in sorted(graph.items()):
        if module in EXEMPT or room_of(module) is None:
            continue
        room, layer = room_of(module)
        for target, line in sorted(targets.items()):
            if target not in graph:  # no such module: test_every_import_names_a_module
                continue
            target_room, target_layer = room_of(target) or (target, len(LAYERS))
            if target_room != room and target_layer > layer:
                if (module, target) not in KNOWN_UPWARD:
                    found.append(
                        f"{module} (layer {layer}) imports {target} (layer {target_layer}) "
                        f"at line {line}"
                    )
    return found


@pytest.fixture(scope="module")
def graph():
    return import_graph(LRJAX)


def test_every_module_is_on_a_layer(graph):
    missing = [m for m in sorted(graph) if m not in EXEMPT and room_of(m) is None]
    assert not missing, (
        f"{', '.join(missing)}: not in the layering; add each (or its package) to LAYERS in "
        "tests/test_architecture.py, on the lowest layer above everything it imports."
    )


def test_every_import_names_a_module(graph):
    dangling = [
        f"{module} imports {target} at line {line}"
        for module, targets in sorted(graph.items())
        for target, line in sorted(targets.items())
        if target not in graph
    ]
    assert not dangling, (
        "imports of modules that do not exist (moved? a name of the package lrjax: import it "
        "from the module that defines it):\n" + "\n".join(dangling)
    )


def test_no_import_cycle(graph):
    cycles = [" -> ".join(cycle) for cycle in find_cycles(graph)]
    assert not cycles, "import cycles (move what both need into a module of its own):\n" + (
        "\n".join(cycles)
    )


def test_no_module_imports_a_higher_layer(graph):
    upward = upward_imports(graph)
    assert not upward, "imports up the layering of tests/test_architecture.py:\n" + (
        "\n".join(upward)
    )


def test_known_exceptions_still_exist(graph):
    """An exception that was fixed comes out of KNOWN_UPWARD."""
    stale = [pair for pair in sorted(KNOWN_UPWARD) if pair[1] not in graph.get(pair[0], {})]
    assert not stale, f"no longer imported, remove from KNOWN_UPWARD: {stale}"


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """The parser on a made-up package: relative imports, ``from pkg import submodule``, an
    import inside a function, imports of what is no module, and the cycle a function-level
    import closes."""
    files = {
        "__init__.py": "from lrjax.a import f\n",
        "a.py": "from . import b\nfrom .sub import thing\n",
        "b.py": "import lrjax.sub.deep as d\nimport numpy\n",
        "sub/__init__.py": "thing = 1\n",
        "sub/deep.py": "def later():\n    from lrjax.sub.c import g\n",
        "sub/c.py": "from ..b import x\nfrom lrjax import sub, name\nfrom .gone import y\n",
    }
    for name, text in files.items():
        path = tmp_path / "lrjax" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    graph = import_graph(tmp_path / "lrjax")
    assert graph == {
        "lrjax": {"lrjax.a": 1},
        "lrjax.a": {"lrjax.b": 1, "lrjax.sub": 2},
        "lrjax.b": {"lrjax.sub.deep": 1},
        "lrjax.sub": {},
        "lrjax.sub.c": {"lrjax.b": 1, "lrjax.sub": 2, "lrjax.name": 2, "lrjax.sub.gone": 3},
        "lrjax.sub.deep": {"lrjax.sub.c": 2},
    }
    assert find_cycles(graph) == [["lrjax.b", "lrjax.sub.deep", "lrjax.sub.c", "lrjax.b"]]
