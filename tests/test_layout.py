"""The package's layering, read from the import statements: the library sits below the
commands, and training does not depend on the evaluation code."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "realciao"


def imported_modules(path: Path) -> set[str]:
    """Every realciao module a file imports, at any depth of the file (lazy imports too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "realciao" or name.startswith("realciao.")}


def modules_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def test_nothing_outside_the_commands_imports_the_commands():
    offenders = []
    for path in modules_under(PACKAGE):
        if PACKAGE / "cli" in path.parents:
            continue
        bad = sorted(m for m in imported_modules(path) if m == "realciao.cli" or m.startswith("realciao.cli."))
        if bad:
            offenders.append(f"{path.relative_to(PACKAGE.parent)}: {bad}")
    assert not offenders, offenders


def test_training_imports_nothing_from_the_evaluation_code():
    forbidden = ("realciao.evaluation", "realciao.cli")
    offenders = []
    for path in modules_under(PACKAGE / "train"):
        bad = sorted(m for m in imported_modules(path) if m.startswith(forbidden))
        if bad:
            offenders.append(f"{path.relative_to(PACKAGE.parent)}: {bad}")
    assert not offenders, offenders


def test_the_import_reader_sees_lazy_imports(tmp_path):
    """The check can fail: an import inside a function is found."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from realciao.cli.upscale import main\n    return main\n")
    assert "realciao.cli.upscale" in imported_modules(module)
