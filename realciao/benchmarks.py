"""Benchmark results as files: what a script in ``scripts/`` measured, kept as JSON that the
docs site renders as tables (``docs/benchmarks/*.json``, rendered by ``docs/hooks.py``).

A results file says what was run and where, so a figure never travels without its command
and its machine: the benchmark's name, the exact command line, the machine line
(``realciao.devices.describe_cpu()``, plus the GPU where one ran), the date, one or more
tables (columns, and one mapping per row; a cell is text, a number or null) and notes. The
scripts take ``--json PATH`` and write nothing without it.

Importing this module is cheap (no torch, no pydantic): benchmark scripts import it in the
child processes whose peak memory they measure. pydantic checks a file only when it is
written or read.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from realciao.files import atomic_write

Cell = Optional[Union[str, int, float]]
MISSING = "-"  # how a cell a row lacks is shown


# read by pydantic when a file is checked: an unknown key is an error
_FORBID_EXTRA = {"extra": "forbid"}


@dataclass(frozen=True)
class BenchmarkTable:
    __pydantic_config__ = _FORBID_EXTRA

    columns: list[str]
    rows: list[dict[str, Cell]] = field(default_factory=list)
    title: str = ""

    def __post_init__(self):
        for index, row in enumerate(self.rows):
            unknown = sorted(set(row) - set(self.columns))
            if unknown:
                raise ValueError(f"rows: row {index} has a column not in columns: {unknown[0]!r}")


@dataclass(frozen=True)
class BenchmarkResults:
    __pydantic_config__ = _FORBID_EXTRA

    benchmark: str  # the benchmark's name (the script's, or a name for one of its modes)
    command: str  # the command line that produced the figures, as typed
    machine: str  # realciao.devices.describe_cpu(), and the GPU where one ran
    date: str  # when it ran: ISO 8601, local time with its offset
    tables: list[BenchmarkTable]
    notes: list[str] = field(default_factory=list)  # what the tables need to be read right


def command_line(argv: list[str] | None = None) -> str:
    """``python scripts/bench_x.py --flag value``: the running script's command, its path
    relative to the working folder where it lies inside it."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0])
    try:
        argv[0] = str(script.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        argv[0] = str(script)
    return shlex.join(["python", *argv])


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        metavar="PATH",
        type=Path,
        default=None,
        help="also write the results to PATH as JSON (docs/benchmarks/NAME.json: the docs site's "
        "benchmarks page shows it); default: no file",
    )


def checked(data: object, file: str) -> BenchmarkResults:
    """``BenchmarkResults`` from loaded JSON; a mismatch is one line naming the file and the key."""
    from pydantic import TypeAdapter, ValidationError

    from realciao.typed import TypedFileError, key_path, raise_first

    if not isinstance(data, dict):
        raise TypedFileError(file, "", f"expected a mapping of results, got {type(data).__name__}")
    try:
        return TypeAdapter(BenchmarkResults).validate_python(data)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        if first["type"] == "unexpected_keyword_argument":
            raise TypedFileError(file, key_path(first["loc"]), "unknown key") from None
        raise_first(error, file, None)
    raise AssertionError("unreachable")


def write_results(
    path: str | Path,
    benchmark: str,
    tables: list[BenchmarkTable],
    notes: list[str] = (),
    machine: str | None = None,
    command: str | None = None,
) -> Path:
    """Write a results file atomically, after checking it reads back; ``machine`` defaults to
    the CPU line, ``command`` to this process's command line. Returns the path."""
    if machine is None:
        from realciao.devices import describe_cpu

        machine = describe_cpu()
    results = BenchmarkResults(
        benchmark=benchmark,
        command=command or command_line(),
        machine=machine,
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        tables=list(tables),
        notes=list(notes),
    )
    text = json.dumps(dataclasses.asdict(results), indent=1) + "\n"
    checked(json.loads(text), str(path))  # a file this writes is one the docs can read
    atomic_write(path, text.encode())
    return Path(path)


def read_results(path: str | Path) -> BenchmarkResults:
    """A results file, checked; a bad one is one line naming the file and the key."""
    from realciao.typed import TypedFileError

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise TypedFileError(str(path), "", f"cannot read the benchmark results ({error})") from None
    except json.JSONDecodeError as error:
        raise TypedFileError(str(path), "", f"not valid JSON at line {error.lineno} ({error.msg})") from None
    return checked(data, str(path))


def _cell_text(value: Cell) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        value = f"{value:.4g}"
    # a cell is one line of a Markdown table: no line breaks, no column breaks
    return " ".join(str(value).split()).replace("|", "\\|")


def table_markdown(table: BenchmarkTable) -> str:
    lines = [
        "| " + " | ".join(_cell_text(c) for c in table.columns) + " |",
        "| " + " | ".join("---" for _ in table.columns) + " |",
    ]
    lines += ["| " + " | ".join(_cell_text(row.get(c)) for c in table.columns) + " |" for row in table.rows]
    return "\n".join(lines)


def results_markdown(results: BenchmarkResults, heading: str = "###") -> str:
    """A results file as Markdown: its name, command, machine and date, then each table and the notes."""
    parts = [
        f"{heading} {results.benchmark}",
        f"```bash\n{results.command}\n```",
        f"Machine: {results.machine}  \nRun: {results.date}",
    ]
    for table in results.tables:
        if table.title:
            parts.append(f"**{table.title}**")
        parts.append(table_markdown(table))
    parts += list(results.notes)
    return "\n\n".join(parts) + "\n"
