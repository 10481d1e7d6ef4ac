"""realciao's modules import one another one way: no cycle, lazy imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import realciao

PACKAGE = Path(realciao.__file__).parent


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str], root: Path) -> set[str]:
    """realciao modules ``path`` imports anywhere (in functions too), but under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                      for alias in node.names}  # fmt: skip
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return (found & modules) - {module_name(path, root)}


def cycles(folder: Path, root: Path = PACKAGE.parent) -> list[list[str]]:
    """Groups of modules under ``folder`` (named from ``root``) that import each other, directly
    or around a loop."""
    files = {module_name(path, root): path for path in folder.rglob("*.py")}
    graph = {name: imports(path, set(files), root) for name, path in files.items()}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for target in graph[todo.pop()] - seen:
                seen.add(target)
                todo.append(target)
        return seen

    reachable = {name: reach(name) for name in graph}
    loops = {frozenset(n for n in graph if n in reachable[name] and name in reachable[n]) for name in graph}
    return sorted(sorted(loop) for loop in loops if loop)


def test_evaluation_has_no_import_cycle():
    assert cycles(PACKAGE / "evaluation") == []


def test_a_lazy_import_back_is_a_cycle_and_a_typing_one_is_not(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "rows.py").write_text("X = 1\n")
    (package / "report.py").write_text("from pkg.protocols import run\nfrom pkg.rows import X\n")
    (package / "protocols.py").write_text("def run():\n    from pkg.report import X\n")
    assert cycles(package, tmp_path) == [["pkg.protocols", "pkg.report"]]
    (package / "protocols.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.report import X\n"
    )
    assert cycles(package, tmp_path) == []


def test_the_package_has_no_import_cycle():
    assert cycles(PACKAGE) == []


def test_a_cycle_is_found(tmp_path):
    """The check is not vacuous: two modules importing each other lazily are a cycle."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg import b\n")
    (package / "b.py").write_text("from pkg.a import f\n")
    assert cycles(package, root=tmp_path) == [["pkg.a", "pkg.b"]]
