"""Development tooling stays out of the installed library: ``devtools`` (shared by tests/ and bench/) is not
packaged, and no installed module imports it, Selenium or the benchmarks; benchmarks need no path edits."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

INSTALLED_ROOTS = ("serendipity", "serving", "spark_jobs", "ray_jobs", "features")
DEV_ONLY = frozenset({"devtools", "selenium", "bench"})


def imported_roots(path: Path) -> set[str]:
    """The top-level package of every absolute import in ``path`` (lazy imports inside functions too)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("root", INSTALLED_ROOTS)
def test_installed_code_imports_no_dev_tooling(repo_root: Path, root: str) -> None:
    modules = sorted((repo_root / root).rglob("*.py"))
    assert modules, f"no modules under {root}/"
    offenders = [
        f"{path.relative_to(repo_root)}: {sorted(found)}"
        for path in modules
        if (found := imported_roots(path) & DEV_ONLY)
    ]
    assert offenders == []


def test_devtools_is_not_packaged(repo_root: Path) -> None:
    pyproject = tomllib.loads((repo_root / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert include, "pyproject lists the installed packages"
    assert not [pattern for pattern in include if re.fullmatch(pattern.replace("*", ".*"), "devtools")]
    assert not [pattern for pattern in include if re.fullmatch(pattern.replace("*", ".*"), "bench")]
    assert (repo_root / "devtools" / "__init__.py").is_file()


def test_benchmarks_edit_no_import_path(repo_root: Path) -> None:
    """Benchmarks run from the repository root as ``python -m bench.NAME``: no ``sys.path`` edits."""
    offenders = [
        str(path.relative_to(repo_root))
        for path in sorted((repo_root / "bench").rglob("*.py"))
        if "sys.path" in path.read_text()
    ]
    assert offenders == []
