"""Each piece of shared numerics is written once: a second copy in the package or its scripts fails here.

The search is textual on purpose: a copy pasted under another name still carries its constants.
"""

from __future__ import annotations

import re
from pathlib import Path

import realciao

PACKAGE = Path(realciao.__file__).parent
SOURCES = sorted([*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "scripts").rglob("*.py")])


def places(pattern: str, allowed: set[str]) -> list[str]:
    """file:line of every match of ``pattern`` outside the files named in ``allowed`` (relative to the repo)."""
    found = []
    for path in SOURCES:
        name = path.relative_to(PACKAGE.parent).as_posix()
        if name in allowed:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{name}:{number}: {line.strip()}")
    return found


def test_the_sources_are_found():
    names = {path.relative_to(PACKAGE.parent).as_posix() for path in SOURCES}
    assert {"realciao/color.py", "realciao/tiling.py", "scripts/bench_generator.py"} <= names


def test_luma_weights_are_written_once():
    """BT.601 (and its studio-range and rounded forms) live in realciao/color.py only."""
    luma = r"(?<![\d.])(0\.299|0\.2989|0\.587|0\.114|65\.481|128\.553|24\.966)(?!\d)"
    assert places(luma, {"realciao/color.py"}) == []
    assert re.search(luma, (PACKAGE / "color.py").read_text())  # the pattern does find them


def test_the_tile_planner_is_written_once():
    """CiaoSR's tiles and the peers' come from realciao.tiling.plan_axis; no module plans its own."""
    planner = r"^\s*(def (plan_axis|split_cores|with_context)\b|class _?Axis(Span|Tile)\b)"
    assert places(planner, {"realciao/tiling.py"}) == []
    assert re.search(planner, (PACKAGE / "tiling.py").read_text(), re.MULTILINE)


def test_html_pages_are_written_and_escaped_in_one_place():
    """Every report page goes through realciao.html_page (write_page, escape, file_link)."""
    by_hand = r"html\.escape|<!doctype html>"
    assert places(by_hand, {"realciao/html_page.py"}) == []
    writers = {
        path.relative_to(PACKAGE.parent).as_posix() for path in SOURCES if "write_page(" in path.read_text()
    }
    assert {
        "realciao/evaluation/report.py",
        "realciao/fitting/report.py",
        "realciao/prepare/quality.py",
    } <= writers


def test_psnr_is_computed_in_one_place():
    """Scripts and modules call realciao.metrics.psnr / psnr_per_image."""
    assert places(r"log10\(", {"realciao/metrics/fullref.py"}) == []
