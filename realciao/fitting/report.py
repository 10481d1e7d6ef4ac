"""The fit's report: one offline HTML page (no scripts, fonts or links outside the folder)
beside its PNGs: patches of the photos above patches of the base and the fitted recipe at
the same size, one histogram per measurement (photos, base, fitted), and the distance of
every candidate the optimiser tried."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from realciao.fitting.fit import FitResult, base_choice_text, recipe_header
from realciao.fitting.measure import MEASUREMENTS
from realciao.fitting.space import quantities
from realciao.html_page import escape, file_link, write_page
from realciao.plotting import chart, pixel_figure, save, show_image, show_text

GRID_COLUMNS = 8
GRID_ZOOM = 2  # each LR pixel drawn as 2 x 2 (nearest), the same for every row
_GAP = 4
_LABEL_WIDTH = 120
_COLOURS = {"photos": "#555555", "base": "#d95f02", "fitted": "#1b9e77"}
STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
    "figure{display:inline-block;margin:4px}img{image-rendering:pixelated}pre{background:#f6f6f6;padding:0.5em;"
    "overflow-x:auto}"
)


def _row(patches: list[np.ndarray], side: int) -> np.ndarray:
    cells = []
    for index in range(GRID_COLUMNS):
        cell = np.full((side, side, 3), 255, dtype=np.uint8)
        if index < len(patches):
            patch = patches[index][:side, :side]
            cell[: patch.shape[0], : patch.shape[1]] = patch
        cells.append(cell.repeat(GRID_ZOOM, 0).repeat(GRID_ZOOM, 1))
        cells.append(np.full((side * GRID_ZOOM, _GAP, 3), 255, dtype=np.uint8))
    return np.concatenate(cells[:-1], axis=1)


def write_grid(path: Path, rows: list[tuple[str, list[np.ndarray]]], side: int) -> None:
    """Rows of patches (uint8, side x side), each labelled on the left."""
    strips = [_row(patches, side) for _, patches in rows]
    height = sum(s.shape[0] for s in strips) + _GAP * (len(strips) - 1)
    canvas = np.full((height, _LABEL_WIDTH + strips[0].shape[1], 3), 255, dtype=np.uint8)
    figure = pixel_figure(canvas.shape[1], canvas.shape[0])
    top = 0
    for (label, _), strip in zip(rows, strips):
        canvas[top : top + strip.shape[0], _LABEL_WIDTH:] = strip
        show_text(figure, label, 6, top + strip.shape[0] // 2 - 6, size=8)
        top += strip.shape[0] + _GAP
    show_image(figure, canvas, 0, 0)
    save(figure, path)


def write_histogram(
    path: Path, name: str, unit: str, sets: dict[str, np.ndarray], terms: dict[str, float]
) -> None:
    figure = chart(5.0, 3.2)
    axes = figure.add_subplot()
    pooled = np.concatenate([v for v in sets.values() if v.size])
    low, high = np.percentile(pooled, [1, 99])
    if high <= low:
        low, high = low - 0.5, high + 0.5
    bins = np.linspace(low, high, 31)
    for label, values in sets.items():
        if not values.size:
            continue
        clipped = np.clip(values, low, high)
        if label == "photos":
            axes.hist(
                clipped,
                bins=bins,
                density=True,
                color=_COLOURS[label],
                alpha=0.35,
                label=f"{label} ({values.size})",
            )
        else:
            axes.hist(
                clipped,
                bins=bins,
                density=True,
                histtype="step",
                linewidth=1.8,
                color=_COLOURS[label],
                label=f"{label} ({values.size}; term {terms.get(label, float('nan')):.2f})",
            )
    axes.set_xlabel(f"{name} ({unit}; clipped to the 1-99 % range)")
    axes.set_ylabel("density")
    axes.legend(fontsize=8)
    save(figure, path)


def write_history(path: Path, result: FitResult) -> None:
    figure = chart(5.0, 2.8)
    axes = figure.add_subplot()
    history = np.asarray(result.history)
    axes.plot(np.arange(1, history.size + 1), history, ".", color="#999999", label="candidate")
    axes.plot(
        np.arange(1, history.size + 1),
        np.minimum.accumulate(history),
        color=_COLOURS["fitted"],
        label="best so far",
    )
    axes.axhline(history[0], color=_COLOURS["base"], linestyle="--", linewidth=1, label="base recipe")
    axes.set_xlabel("candidate")
    axes.set_ylabel("distance + prior")
    axes.set_ylim(0, max(float(np.percentile(history, 95)), history[0]) * 1.05)
    axes.legend(fontsize=8)
    save(figure, path)


def write_report(result: FitResult, folder: str | Path, recipe_path: str | Path | None = None) -> Path:
    """Write ``index.html`` and its PNGs into ``folder``; returns the HTML's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    side = result.photos.patch
    write_grid(
        folder / "grid.png",
        [
            ("photos", result.photos.patches),
            (f"base: {result.base.name}", result.base_set.patches),
            ("fitted", result.fitted_set.patches),
        ],
        side,
    )
    write_history(folder / "history.png", result)
    units = {m.name: m.unit for m in MEASUREMENTS}
    rows, figures = [], []
    for name in result.reference.values:
        sets = {
            "photos": result.reference.values[name],
            "base": result.base_set.valid(name),
            "fitted": result.fitted_set.valid(name),
        }
        terms = {"base": result.base_distance.terms[name], "fitted": result.fitted_distance.terms[name]}
        file = f"hist_{name}.png"
        write_histogram(folder / file, name, units[name], sets, terms)
        figures.append(
            f"<figure><img src='{file_link(file)}' alt='{escape(name)}'><figcaption>{escape(name)}</figcaption></figure>"
        )
        cells = "".join(f"<td>{_summary(values)}</td>" for values in sets.values())
        rows.append(
            f"<tr><th>{escape(name)}</th><td>{escape(units[name])}</td>{cells}"
            f"<td>{terms['base']:.3f}</td><td>{terms['fitted']:.3f}</td></tr>"
        )
    base_values = {q.name: q for q in quantities(result.base, p_at_one=True)}  # a JPEG's p: 1 in the base
    values = "".join(
        f"<tr><td>{escape(q.label)}</td><td>{escape(base_values[q.name].text() if q.name in base_values else '?')}"
        f"</td><td>{escape(q.text())}</td><td>{_margin(result.widened.get(q.name))}</td></tr>"
        for q in quantities(result.recipe)
    )
    settings = result.settings
    recipe_line = f" Recipe: <code>{escape(str(recipe_path))}</code>." if recipe_path else ""
    chosen = f" ({escape(base_choice_text(result.base_choice))})" if result.base_choice else ""
    parts = [
        "<h1>Degradation recipe fitted to photos</h1>",
        f"<p>{result.photos.photos} photos ({len(result.photos)} patches of {side} px) from "
        f"<code>{escape(result.photos.folder)}</code>; base recipe <b>{escape(result.base.name)}</b>{chosen}; "
        f"synthesised from {escape(result.hr_label)} at x{settings.scale:g} ({settings.samples} patches, "
        f"seed {settings.seed}); {settings.budget} candidates searched, {result.evaluations} evaluated in all."
        f"{recipe_line}</p>",
        f"<p>Distance to the photos: base <b>{result.base_distance.total:.3f}</b>, fitted "
        f"<b>{result.fitted_distance.total:.3f}</b>; on check crops (other HR crops and draws) "
        f"{result.check_distance:.3f}. The selected candidate scored {result.selected_distance:.3f} in the search; "
        f"{len(result.widened)} of its ranges were then widened where the photos allow (see the fitted values). "
        "The distance is the sum "
        "over measurements of the 1-D Wasserstein distance between the photos' and the synthesised patches' values, "
        "each on its comparison scale and divided by the photos' spread; 0 means equal distributions.</p>",
        "<h2>Photos and synthesised patches, same size</h2>",
        f"<p>Rows: photos, base recipe, fitted recipe; each pixel drawn {GRID_ZOOM} x {GRID_ZOOM}.</p>",
        "<img src='grid.png' alt='patches'>",
        "<h2>Measurements</h2><p>median [10 %, 90 %] of each set; the last two columns are the distance's terms.</p>",
        "<table><tr><th>measurement</th><th>unit</th><th>photos</th><th>base</th><th>fitted</th>"
        "<th>term, base</th><th>term, fitted</th></tr>",
        *rows,
        "</table>",
        *figures,
        *_validation(result),
        "<h2>Search</h2><img src='history.png' alt='distance per candidate'>",
        "<h2>Fitted values</h2><table><tr><th>quantity</th><th>base</th><th>fitted</th><th>margin added</th></tr>",
        values,
        "</table>",
        "<h2>Recipe header</h2><pre>",
        escape(recipe_header(result)),
        "</pre>",
    ]
    if result.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in result.notes) + "</ul>")
    return write_page(folder / "index.html", "realciao-fit-recipe report", STYLE, parts)


def _validation(result: FitResult) -> list[str]:
    """The held-out families, the values on the search's bounds and the compensating pairs."""
    parts = ["<h2>Held out, one measurement family at a time</h2>"]
    if result.held_out:
        parts += [
            "<p>For each family, the search's best candidate by the other families alone (with the same prior), "
            "and the left-out family's distance on check crops (other HR crops and draws). Lower than the base: "
            "what the other measurements say carries over to this one. The candidates are the search's own, "
            "which every family guided.</p>",
            "<table><tr><th>family</th><th>measurements</th><th>base</th><th>chosen without it</th>"
            "<th>fitted (every family)</th></tr>",
            *(f"<tr><td>{escape(h.family)}</td><td>{escape(', '.join(h.measurements))}</td><td>{h.base:.3f}</td>"
              f"<td>{h.chosen:.3f}</td><td>{h.fitted:.3f}</td></tr>" for h in result.held_out),
            "</table>",
        ]
    else:
        parts.append("<p>Fewer than two measurement families were measured on the photos: nothing to hold out.</p>")
    parts.append("<h2>On the search's bounds</h2>")
    parts.append("<ul>" + "".join(f"<li>{escape(line)}</li>" for line in result.on_bounds) + "</ul>"
                 if result.on_bounds else "<p>None.</p>")
    parts.append("<h2>Parameters that move together</h2><p>Among the best quarter of the candidates, pairs whose "
                 "values correlate (|r| &ge; 0.7): the photos cannot tell these settings apart.</p>")
    parts.append("<ul>" + "".join(f"<li>{escape(a)} ~ {escape(b)}: r = {r:+.2f}</li>"
                                  for a, b, r in result.compensation) + "</ul>"
                 if result.compensation else "<p>None.</p>")
    return parts


def _margin(margin: float | None) -> str:
    return f"{margin:.1%} of its search bounds on each side" if margin else ""


def _summary(values: np.ndarray) -> str:
    if not values.size:
        return "-"
    low, median, high = np.percentile(values, [10, 50, 90])
    return f"{median:.3g} [{low:.3g}, {high:.3g}]"
