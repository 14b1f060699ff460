"""The import layering of kgc, graph_algos, kernels and pretrain_tasks (docs/architecture.md, "Layers").

Every ``import`` statement of every module is read with :mod:`ast` (module level and inside functions
alike: a lazy import is still a dependency), resolved to the repository module it names, and checked:

- a module imports only from its own layer or a lower one (:data:`LAYERS`, lowest first);
- the dependency graph has no cycle (a package's ``__init__`` counts as a module: a submodule that
  imports its own package is a cycle);
- nothing imports kgc's package root (``kgc/__init__.py`` is the public facade, re-exporting from
  :mod:`kgc.errors` and importing :mod:`kgc.api` lazily); every layer takes ``KGCError`` from
  :mod:`kgc.errors`.

Imports under ``if TYPE_CHECKING:`` never run and are left out. Every module is also imported for real.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("kgc", "graph_algos", "kernels", "pretrain_tasks")

#: lowest first; a module matches the first pattern that names it or a package above it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("errors", ("kgc.errors", "kgc._version")),
    ("foundation", ("kgc.utils", "kgc.resources", "kgc.config")),
    ("data", ("kgc.data",)),
    ("algorithms", ("graph_algos", "kernels")),
    ("vocabulary", ("kgc.vocab",)),
    ("signals", ("pretrain_tasks",)),
    ("models", ("kgc.models",)),
    ("evaluation", ("kgc.evaluation",)),
    ("training", ("kgc.training",)),
    ("runs", ("kgc.cli", "kgc.resolve", "kgc.finetune", "kgc.pretrain", "kgc.evaluate", "kgc.predict",
              "kgc.signals", "kgc.reports")),
    ("tools", ("kgc.api", "kgc.hpo", "kgc.ablation", "kgc.leaderboard", "kgc.__main__")),
    ("facade", ("kgc",)),
]


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def layer_of(module: str) -> int:
    for i, (_, patterns) in enumerate(LAYERS):
        for pat in patterns:
            if module == pat or (pat != "kgc" and module.startswith(pat + ".")):
                return i
    raise AssertionError(f"{module} is in no declared layer: add it to LAYERS (and docs/architecture.md)")


def _target(name: str, modules) -> str | None:
    """The repository module an imported dotted name lives in (``kgc.data.load_dataset`` -> ``kgc.data``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, source: str, modules) -> dict[str, int]:
    """``{imported repository module: first line}`` of ``source`` (the code of ``module``)."""
    is_pkg = MODULES.get(module, Path("x.py")).name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        target = _target(name, modules)
        if target is not None and target != module:
            found.setdefault(target, line)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, child.lineno)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    origin = ".".join(base + ([child.module] if child.module else []))
                else:
                    origin = child.module or ""
                for alias in child.names:
                    full = f"{origin}.{alias.name}"
                    add(full if full in modules else origin, child.lineno)
            visit(child)

    visit(ast.parse(source))
    return found


def import_graph(modules=None) -> dict[str, dict[str, int]]:
    modules = MODULES if modules is None else modules
    return {m: imports_of(m, p.read_text(), modules) for m, p in modules.items()}


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, {})):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = dfs(w)
                if found:
                    return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state:
            found = dfs(v)
            if found:
                return found
    return None


def violations(graph: dict[str, dict[str, int]]) -> list[str]:
    out = []
    for module, targets in sorted(graph.items()):
        for target, line in sorted(targets.items()):
            if target == "kgc":
                out.append(f"{module}:{line} imports kgc's package root (take KGCError from kgc.errors)")
            elif layer_of(target) > layer_of(module):
                out.append(f"{module}:{line} ({LAYERS[layer_of(module)][0]}) imports {target} "
                           f"({LAYERS[layer_of(target)][0]}), a higher layer")
    return out


def test_every_module_is_in_a_layer():
    assert {"kgc.resolve", "kgc.data.load", "kgc.reports.ablation", "kgc.errors"} <= set(MODULES)
    for module in MODULES:
        layer_of(module)


def test_no_import_from_a_lower_layer_to_a_higher_one():
    assert violations(import_graph()) == []


def test_no_import_cycles():
    assert find_cycle(import_graph()) is None


def test_graph_algos_kernels_and_pretrain_tasks_take_only_lower_parts_of_kgc():
    lower = {"kgc.errors", "kgc.config", "kgc.resources", "kgc.vocab"}
    for module, targets in import_graph().items():
        if module.split(".")[0] in ("graph_algos", "kernels", "pretrain_tasks"):
            for target in targets:
                if target.split(".")[0] == "kgc":
                    assert target in lower or target.startswith("kgc.utils."), f"{module} imports {target}"


def test_the_checker_sees_cycles_and_upward_imports():
    """The checks above must fail on a broken layering (a lazy import included)."""
    fake = {"kgc.data.dataset": Path("dataset.py"), "kgc.data.custom": Path("custom.py"), "kgc.models": Path("m.py"),
            "kgc": Path("__init__.py")}
    src = {"kgc.data.dataset": "def load():\n    from kgc.data import custom\n",
           "kgc.data.custom": "from kgc.data.dataset import KGDataset\n",
           "kgc.models": "from kgc import KGCError\nif TYPE_CHECKING:\n    from kgc.data.custom import X\n"}
    graph = {m: imports_of(m, src.get(m, ""), fake) for m in fake}
    assert graph["kgc.data.dataset"] == {"kgc.data.custom": 2}
    assert find_cycle(graph) in (["kgc.data.custom", "kgc.data.dataset", "kgc.data.custom"],
                                 ["kgc.data.dataset", "kgc.data.custom", "kgc.data.dataset"])
    assert violations(graph) == ["kgc.models:1 imports kgc's package root (take KGCError from kgc.errors)"]
    upward = {"kgc.data.dataset": {"kgc.evaluation.filter": 9}}
    assert violations(upward) == ["kgc.data.dataset:9 (data) imports kgc.evaluation.filter (evaluation), a higher layer"]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.endswith("__main__")))
def test_every_module_imports(module):
    importlib.import_module(module)
