"""The layers run one way: the library ``serendipity/`` imports no job or repository package (only the
application layer ``serendipity/app/`` does), and its modules import each other without a cycle.

Read from the source with ``ast``: every ``import`` and ``from`` statement counts, at module level and
inside functions alike (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LIBRARY = REPO_ROOT / "serendipity"
APP = LIBRARY / "app"
# The job and repository packages above the library: only the application layer may import them.
UPPER_PACKAGES = frozenset({"features", "spark_jobs", "ray_jobs", "serving"})


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    """Every module of the ``serendipity`` package, by dotted name."""
    return {_module_name(path): path for path in sorted(LIBRARY.rglob("*.py"))}


def _imported(name: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything the module imports; ``from a import b`` yields ``a`` and ``a.b``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def _in_app(path: Path) -> bool:
    return path == APP or APP in path.parents


def test_the_library_imports_no_job_or_repository_package() -> None:
    offending = sorted(
        f"{path.relative_to(REPO_ROOT)}:{line} imports {imported}"
        for name, path in _modules().items()
        if not _in_app(path)
        for line, imported in _imported(name, path)
        if imported.split(".")[0] in UPPER_PACKAGES
    )
    assert offending == [], "only serendipity/app/ may import " + ", ".join(sorted(UPPER_PACKAGES))


def _import_graph() -> dict[str, set[str]]:
    """Module -> the ``serendipity`` modules it imports (a name resolves to the deepest module it names)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for _, imported in _imported(name, path):
            parts = imported.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts and ".".join(parts) != name:
                targets.add(".".join(parts))
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected component of the graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan; the graph is a few hundred modules deep at most
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_through(component, graph) for component in components]


def _cycle_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path from the component's first module back to it, within the component."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & members):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    return component


def _packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same graph between the library's top-level modules and packages (``serendipity.eval``, ...)."""

    def top(name: str) -> str:
        return ".".join(name.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for source, targets in graph.items():
        packages.setdefault(top(source), set()).update(top(t) for t in targets if top(t) != top(source))
    return packages


def test_the_library_modules_import_each_other_without_a_cycle() -> None:
    cycles = [" -> ".join(cycle) for cycle in _cycles(_import_graph())]
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_the_library_packages_import_each_other_without_a_cycle() -> None:
    cycles = [" -> ".join(cycle) for cycle in _cycles(_packages(_import_graph()))]
    assert cycles == [], "import cycles between packages:\n" + "\n".join(cycles)


def test_the_checks_see_a_cycle_and_a_forbidden_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    # the rule reaches imports inside functions too
    stages = APP / "stages.py"
    assert any(
        imported.startswith("features.") for _, imported in _imported("serendipity.app.stages", stages)
    )


def test_every_job_stage_runs_a_job_module_of_its_name() -> None:
    """A Spark or Ray stage's ``run`` is ``run`` of ``spark_jobs/<stage>.py`` or ``ray_jobs/<stage>.py``,
    which also has the ``main`` that spark-submit and ray job submit call."""
    import importlib

    from serendipity.app.stages import Engine, default_stages

    packages = {Engine.SPARK: "spark_jobs", Engine.RAY: "ray_jobs"}
    for stage in default_stages():
        if stage.engine in packages:
            assert stage.job_module == f"{packages[stage.engine]}.{stage.name}", stage.name
            assert stage.run.__name__ == "run", stage.name
            assert callable(importlib.import_module(stage.job_module).main), stage.name
        else:
            assert stage.job_module.split(".")[0] == "serendipity", stage.name
