"""The front door and the docs site: the README stays a page with the two commands, the site
builds strictly, its generated sections cover the code they describe, and benchmark results
files (``realciao/benchmarks.py``) are written atomically and rendered as tables."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from realciao import benchmarks
from realciao.benchmarks import BenchmarkTable, read_results, results_markdown, write_results
from realciao.typed import TypedFileError

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_LIMIT = 250
# what a new user copies on a fresh machine, exactly as .ci/run runs it
INSTALL_AND_TRAIN = 'pip install -e ".[dev]" && python train_realciao.py -opt options/quickstart.yml'
RUN_THE_TESTS = "python -m pytest -q"


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = load_hooks()


def leaf_options(model, prefix: str = "") -> list[str]:
    """Every option key of the typed options, walked from the models themselves."""
    from pydantic import BaseModel

    keys = []
    for name, field in model.model_fields.items():
        nested = field.annotation if isinstance(field.annotation, type) else None
        if nested is not None and issubclass(nested, BaseModel):
            keys += leaf_options(nested, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return [page for item in nav for page in nav_pages(item)]


# ----------------------------------------------------------------------------- README
def test_readme_is_one_page_with_the_two_commands_on_its_first_screen():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_LIMIT, f"README.md has {len(lines)} lines; the limit is {README_LIMIT}"
    blocks = re.findall(r"```bash\n(.*?)\n```", "\n".join(lines), re.S)
    assert blocks[:2] == [INSTALL_AND_TRAIN, RUN_THE_TESTS]
    assert "\n".join(lines[:30]).count("```bash") >= 2  # on the first screen


def test_ci_runs_the_readme_commands_and_builds_the_docs_strictly():
    ci = (ROOT / ".ci" / "run").read_text()
    assert INSTALL_AND_TRAIN.replace("pip", "python3 -m pip").replace("python train", "python3 train") in ci
    assert "python3 -m pytest -q" in ci
    assert re.search(r"mkdocs build --strict --site-dir", ci)


def test_readme_links_point_at_pages_that_exist():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", text)
    assert targets
    missing = sorted({t for t in targets if not (ROOT / t).is_file()})
    assert not missing, missing


# ----------------------------------------------------------------------------- the site
def test_every_page_in_docs_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = set(nav_pages(config["nav"]))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages == listed, {"not in the nav": sorted(pages - listed), "no such page": sorted(listed - pages)}


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[dev]' installs it)")
    pytest.importorskip(
        "material", reason="mkdocs-material is not installed (pip install -e '.[dev]' installs it)"
    )
    site = tmp_path_factory.mktemp("site")
    env = {
        **os.environ,
        "NO_MKDOCS_2_WARNING": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return site


@pytest.mark.slow
def test_mkdocs_build_strict_succeeds_and_fills_the_generated_sections(built_site):
    from realciao.degradations.specs import STAGE_TYPES
    from realciao.train.config import TrainConfig

    options = (built_site / "training" / "options" / "index.html").read_text()
    missing = [key for key in leaf_options(TrainConfig) if f"<code>{key}</code>" not in options]
    assert not missing, missing
    recipes = (built_site / "degradations" / "reference" / "index.html").read_text()
    for stage in STAGE_TYPES:
        assert f'id="{stage.model_fields["op"].default}"' in recipes
    assert "generated:" not in (built_site / "benchmarks" / "index.html").read_text()  # every marker replaced


# ----------------------------------------------------------------------------- generated sections
def test_the_options_reference_lists_every_option_field():
    from realciao.train.config import TrainConfig

    page = hooks.options_reference()
    keys = leaf_options(TrainConfig)
    assert "data.lr_patch" in keys and "discriminator.optimizer.lr" in keys  # the walk reaches nested models
    missing = [key for key in keys if f"| `{key}` |" not in page]
    assert not missing, missing
    row = next(line for line in page.splitlines() if line.startswith("| `data.lr_patch` |"))
    assert "integer (>= 1)" in row and "`48`" in row and "LR patch side" in row


def test_the_recipe_reference_lists_every_op_and_its_fields():
    from realciao.degradations.ops import OP_KINDS
    from realciao.degradations.specs import OneOf, Shuffle

    page = hooks.recipe_ops_reference()
    for spec in [kind.spec for kind in OP_KINDS] + [OneOf, Shuffle]:
        name = spec.model_fields["op"].default
        section = page.split(f"\n### {name}\n", 1)[1].split("\n### ", 1)[0]
        for field, info in spec.model_fields.items():
            if not info.exclude:
                assert f"| `{field}` |" in section, (name, field)


def test_the_shipped_recipes_are_listed():
    from realciao.degradations import available_recipes

    page = hooks.shipped_recipes()
    assert available_recipes()
    for name in available_recipes():
        assert f"| `{name}` |" in page


def test_an_unknown_generated_section_stops_the_build():
    pytest.importorskip("mkdocs")
    from mkdocs.exceptions import PluginError

    class Page:
        class file:  # noqa: N801 (mkdocs' attribute)
            src_uri = "x.md"

    with pytest.raises(PluginError, match="x.md: unknown generated section 'nope'"):
        hooks.on_page_markdown("text\n<!-- generated: nope -->\n", Page, {"docs_dir": str(DOCS)}, None)


# ----------------------------------------------------------------------------- benchmark results files
def sample_tables() -> list[BenchmarkTable]:
    return [
        BenchmarkTable(
            title="speed",
            columns=["LR -> output", "seconds", "note"],
            rows=[
                {"LR -> output": "48x48 -> x4", "seconds": "1.64", "note": "a | b"},
                {"LR -> output": "128x128 -> x2", "seconds": 5.39},
            ],
        )
    ]


def test_a_results_file_renders_as_a_table_with_its_command_and_machine(tmp_path):
    folder = tmp_path / "benchmarks"
    write_results(
        folder / "generator.json",
        "generator",
        sample_tables(),
        ["median of 5 runs"],
        machine="CPU: a test CPU; 2 cores available",
        command="python scripts/bench_generator.py --configs 48x4",
    )
    page = hooks.benchmark_tables(folder)
    assert "`generator.json`" in page
    assert "```bash\npython scripts/bench_generator.py --configs 48x4\n```" in page
    assert "Machine: CPU: a test CPU; 2 cores available" in page
    lines = page.splitlines()
    header = lines.index("| LR -> output | seconds | note |")
    assert lines[header + 1] == "| --- | --- | --- |"
    assert lines[header + 2] == "| 48x48 -> x4 | 1.64 | a \\| b |"
    assert lines[header + 3] == "| 128x128 -> x2 | 5.39 | - |"
    assert "median of 5 runs" in page


def test_an_empty_or_missing_results_folder_says_there_is_none(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    for folder in (tmp_path / "benchmarks", tmp_path / "absent"):
        page = hooks.benchmark_tables(folder)
        assert page.startswith("No results files yet") and "|" not in page


def test_a_bad_results_file_stops_the_build_naming_it(tmp_path):
    pytest.importorskip("mkdocs")
    from mkdocs.exceptions import PluginError

    (tmp_path / "broken.json").write_text('{"benchmark": "x", "tables": []')
    with pytest.raises(PluginError, match=r"broken\.json: not valid JSON"):
        hooks.benchmark_tables(tmp_path)


def test_write_results_records_the_command_machine_and_date_and_reads_back(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", [str(ROOT / "scripts" / "bench_x.py"), "--sizes", "0.25 1"])
    path = write_results(tmp_path / "x.json", "x", sample_tables(), machine="CPU: test")
    results = read_results(path)
    assert results.command == "python scripts/bench_x.py --sizes '0.25 1'"
    assert results.machine == "CPU: test" and results.benchmark == "x"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$", results.date)
    assert results.tables == sample_tables()
    assert "| 48x48 -> x4 | 1.64 |" in results_markdown(results)


def test_write_results_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    write_results(path, "first", sample_tables(), machine="CPU: test")
    before = path.read_text()

    def interrupted(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", interrupted)  # the rename that completes an atomic write fails
    with pytest.raises(OSError, match="disk full"):
        write_results(path, "second", sample_tables(), machine="CPU: test")
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left behind


def test_write_results_refuses_a_row_with_an_unknown_column(tmp_path):
    with pytest.raises(ValueError, match="row 0 has a column not in columns: 'b'"):
        write_results(
            tmp_path / "x.json", "x", [BenchmarkTable(columns=["a"], rows=[{"b": 1}])], machine="CPU"
        )
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ({"benchmark": "x"}, "command: missing"),
        (
            {"benchmark": "x", "command": "c", "machine": "m", "date": "d", "tables": [], "extra": 1},
            "extra: unknown key",
        ),
        (
            {
                "benchmark": "x",
                "command": "c",
                "machine": "m",
                "date": "d",
                "tables": [{"columns": ["a"], "rows": [{"b": 1}]}],
            },
            r"tables\[0\].rows: row 0 has a column not in columns",
        ),
        ([1, 2], "expected a mapping of results"),
    ],
)
def test_a_bad_results_file_is_one_line_naming_the_file_and_key(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(TypedFileError, match=f"^{re.escape(str(path))}: .*{message}") as caught:
        read_results(path)
    assert "\n" not in str(caught.value)


def test_the_module_is_light_to_import():
    """Benchmark scripts import it in the child processes whose peak memory they measure."""
    code = "import sys, realciao.benchmarks; print(sorted({'torch', 'pydantic'} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.stdout.strip() == "[]"
    assert benchmarks.MISSING == "-"


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "scripts").glob("bench_*.py")))
def test_benchmark_scripts_take_json(script):
    """Each benchmark script can write its results for the docs: it takes --json and writes through
    realciao.benchmarks (read from the source: running them takes minutes)."""
    source = (ROOT / "scripts" / script).read_text()
    assert "add_json_argument(parser)" in source and "write_results(args.json" in source
