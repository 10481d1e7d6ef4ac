"""What an evaluation writes: per-image and mean tables (CSV, JSON, Markdown), a plot per
metric of every method's per-image scores, side-by-side crops, an overview picture, and one
HTML report that opens offline (no scripts, no external fonts or styles; every picture it
shows is a file beside it).

    OUTDIR/per_image.csv  means.csv  results.json  results.md  report.html  overview.png
    OUTDIR/plots/<dataset>_x<scale>_<metric>.png
    OUTDIR/crops/<dataset>_x<scale>_<image>_p<place>_<method>.png
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from realciao.evaluation.methods import Method, safe_name
from realciao.evaluation.plots import compose_overview, plot_scores
from realciao.evaluation.results import ID_COLUMNS, Results, ScoreRow
from realciao.files import atomic_write
from realciao.html_page import escape, file_link, write_page

HIGHER_BETTER = ("psnr", "ssim", "psnr_rgb", "ssim_rgb")
OUTPUT_FILES = ("per_image.csv", "means.csv", "results.json", "results.md", "report.html")
MEAN_ID_COLUMNS = ("dataset", "kind", "scale", "method", "images")


@dataclass
class MeanRow:
    """One method's mean of each metric on one (dataset, kind, scale), over the images it could measure."""

    dataset: str
    kind: str
    scale: float
    method: str
    images: int
    scores: dict[str, float] = field(default_factory=dict)  # NaN: no image measurable
    measured: dict[str, int] = field(default_factory=dict)  # images measured, where fewer than ``images``

    def as_dict(self) -> dict[str, object]:
        """As the outputs write it: each metric followed by ``<metric>_n`` where some image was not measured."""
        row: dict[str, object] = {name: getattr(self, name) for name in MEAN_ID_COLUMNS}
        for column, value in self.scores.items():
            row[column] = value
            if column in self.measured:
                row[f"{column}_n"] = self.measured[column]
        return row

    def cell(self, column: str) -> str:
        """The table cell: the mean, and how many images it is over where not all."""
        text = _cell(column, self.scores.get(column, float("nan")))
        return text + (f" ({self.measured[column]}/{self.images})" if column in self.measured else "")


@dataclass(frozen=True)
class Plot:
    """One per-image plot: a metric on one (dataset, kind, scale)."""

    dataset: str
    kind: str
    scale: float
    metric: str
    lower_better: bool
    file: str  # relative to the output folder


def columns_of(records: list[dict[str, object]], leave_out: tuple[str, ...]) -> list[str]:
    """The keys of ``records`` in the order they first appear, but those in ``leave_out``."""
    return [key for key in dict.fromkeys(key for record in records for key in record) if key not in leave_out]


def metric_columns(rows: list[ScoreRow]) -> list[str]:
    return list(dict.fromkeys(column for row in rows for column in row.scores))


def lower_is_better(column: str, lower_better: dict[str, bool]) -> bool:
    return lower_better.get(column, column not in HIGHER_BETTER)


def groups(rows: list[ScoreRow]) -> dict[tuple[str, str, float], list[ScoreRow]]:
    """Rows by (dataset, kind, scale), in the order the run made them."""
    grouped: dict[tuple[str, str, float], list[ScoreRow]] = {}
    for row in rows:
        grouped.setdefault((row.dataset, row.kind, row.scale), []).append(row)
    return grouped


def score_table(members: list[ScoreRow], column: str) -> tuple[list[str], list[str], dict[str, list[float]]]:
    """(images, methods, method -> its ``column`` on each image (NaN where it has none))."""
    images = list(dict.fromkeys(row.image for row in members))
    methods = list(dict.fromkeys(row.method for row in members))
    by_key = {(row.method, row.image): row for row in members}
    nan = float("nan")
    series = {m: [float(by_key[m, i].scores.get(column, nan)) if (m, i) in by_key else nan for i in images]
              for m in methods}  # fmt: skip
    return images, methods, series


def mean_rows(rows: list[ScoreRow]) -> list[MeanRow]:
    """Mean of each metric per (dataset, kind, scale, method), over the images it could measure."""
    grouped: dict[tuple[str, str, float, str], list[ScoreRow]] = {}
    for row in rows:
        grouped.setdefault((row.dataset, row.kind, row.scale, row.method), []).append(row)
    means = []
    for (dataset, kind, scale, method), members in grouped.items():
        mean = MeanRow(dataset, kind, scale, method, len(members))
        for column in metric_columns(members):
            values = [
                r.scores[column] for r in members if column in r.scores and math.isfinite(r.scores[column])
            ]
            mean.scores[column] = float(np.mean(values)) if values else float("nan")
            if len(values) < len(members):
                mean.measured[column] = len(values)
        means.append(mean)
    return means


def _fmt(value) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "" if math.isnan(value) else str(value)
        return f"{value:.4f}"
    return str(value)


def _cell(column: str, value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if column.startswith("psnr"):
        return f"{value:.2f}"
    return f"{value:.4f}" if column.startswith("ssim") else f"{value:.3f}"


def write_csv(path: Path, records: list[dict[str, object]], columns: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        writer.writerow({c: _fmt(record.get(c, "")) if record.get(c, "") != "" else "" for c in columns})
    atomic_write(path, buffer.getvalue().encode("utf-8"))


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _mean_groups(means: list[MeanRow]):
    for key in dict.fromkeys((m.dataset, m.kind, m.scale) for m in means):
        group = [m for m in means if (m.dataset, m.kind, m.scale) == key]
        columns = list(dict.fromkeys(column for m in group for column in m.scores))
        yield key, group, columns


def _best(group: list[MeanRow], column: str, lower: bool) -> float | None:
    values = [m.scores[column] for m in group if math.isfinite(m.scores.get(column, float("nan")))]
    return (min(values) if lower else max(values)) if len(values) > 1 else None


def _count(images: int) -> str:
    return f"{images} image" if images == 1 else f"{images} images"


def _direction(column: str, lower_better: dict[str, bool]) -> str:
    return "lower better" if lower_is_better(column, lower_better) else "higher better"


def markdown_table(means: list[MeanRow], lower_better: dict[str, bool]) -> str:
    lines = []
    for (dataset, kind, scale), group, columns in _mean_groups(means):
        lines.append(f"### {dataset} x{scale:g} ({kind}, {_count(group[0].images)})\n")
        lines.append(
            "| method | " + " | ".join(f"{c.upper()} ({_direction(c, lower_better)})" for c in columns) + " |"
        )
        lines.append("| --- |" + " --- |" * len(columns))
        for m in group:
            lines.append(f"| {m.method} | " + " | ".join(m.cell(c) for c in columns) + " |")
        lines.append("")
    return "\n".join(lines)


def how_table(
    methods: list[Method], made: dict[str, dict[str, list[str]]]
) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(scales, [(method, [how at each scale])]): how each method made its outputs."""
    scales = list(dict.fromkeys(scale for m in methods for scale in made.get(m.name, {})))
    rows = [
        (m.name, ["; ".join(made.get(m.name, {}).get(scale, [])) or "-" for scale in scales]) for m in methods
    ]
    return scales, rows


# ---------------------------------------------------------------------------------------
# Plots and the overview picture
# ---------------------------------------------------------------------------------------


def write_plots(outdir: Path, rows: list[ScoreRow], lower_better: dict[str, bool]) -> list[Plot]:
    """One PNG per (dataset, scale, metric): every method's score on every image."""
    plots = []
    for (dataset, kind, scale), members in groups(rows).items():
        for column in metric_columns(members):
            images, _, series = score_table(members, column)
            lower = lower_is_better(column, lower_better)
            name = f"{safe_name(dataset)}_x{scale:g}_{safe_name(column)}.png"
            title = f"{column.upper()} per image, {dataset} x{scale:g}"
            plot_scores(outdir / "plots" / name, title, images, series, lower)
            plots.append(Plot(dataset, kind, scale, column, lower, f"plots/{name}"))
    return plots


def write_overview(outdir: Path, results: Results, plots: list[Plot]) -> Path | None:
    """The first report image's crops, every place, above the plot of its first metric."""
    if not results.crops:
        return None
    entry = results.crops[0]
    rows = [
        (
            f"{entry.image}, x{entry.scale:g}, place {i + 1} (most detail first)",
            {label: outdir / "crops" / name for label, name in place.crops.items()},
        )
        for i, place in enumerate(entry.places)
    ]
    plot = next(
        (outdir / p.file for p in plots if (p.dataset, p.scale) == (entry.dataset, entry.scale)), None
    )
    title = f"realciao-eval: {entry.dataset} x{entry.scale:g}"
    return compose_overview(outdir / "overview.png", title, rows, plot)


# ---------------------------------------------------------------------------------------
# Markdown and HTML
# ---------------------------------------------------------------------------------------


def settings_line(config: dict) -> str:
    tile = config.get("tile")
    tile_text = "from free memory" if tile is None else "whole image" if tile == 0 else f"{tile} px"
    return (
        f"device {config.get('device', '?')}, {config.get('precision', '?')} (asked: "
        f"{config.get('precision_asked', config.get('precision', '?'))}), {config.get('threads', '?')} thread(s), "
        f"{config.get('processes', 1)} process(es), tiles {tile_text}"
    )


def write_markdown(
    path: Path, results: Results, config: dict, table: str, methods: list[Method], plots: list[Plot]
) -> None:
    scales, how_rows = how_table(methods, results.made)
    lines = ["# realciao-eval results", "", settings_line(config), "", "## Methods", ""]
    lines += [f"- **{m.name}**: {m.description}" for m in methods]
    lines += ["", "## How each output was made", ""]
    lines += ["| method | " + " | ".join(scales) + " |", "| --- |" + " --- |" * len(scales)]
    lines += [f"| {name} | " + " | ".join(ways) + " |" for name, ways in how_rows]
    lines += ["", "## Means", "", table]
    if plots:
        lines += ["## Per-image plots", ""]
        lines += [
            f"- {p.dataset} x{p.scale:g} {p.metric.upper()} "
            f"({'lower' if p.lower_better else 'higher'} is better): [{p.file}]({quote(p.file)})"
            for p in plots
        ]
        lines.append("")
    lines += ["Per-image values: per_image.csv, results.json; crops and plots: report.html.", ""]
    if results.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in results.notes] + [""]
    atomic_write(path, "\n".join(lines).encode("utf-8"))


STYLE = (
    "body{font-family:sans-serif;margin:16px;color:#1e1e1e} table{border-collapse:collapse;margin:6px 0 14px}"
    " td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} td:first-child,th:first-child{text-align:left}"
    " figure{display:inline-block;margin:3px;text-align:center;font-size:12px}"
    " figure img{width:192px;image-rendering:pixelated} .plot{max-width:100%} .how td{text-align:left}"
    " details{margin:6px 0}"
)


def html_means(means: list[MeanRow], lower_better: dict[str, bool]) -> list[str]:
    parts = []
    for (dataset, kind, scale), group, columns in _mean_groups(means):
        parts.append(
            f"<h3>{escape(dataset)} x{scale:g} ({kind}, {_count(group[0].images)})</h3><table><tr><th>method</th>"
            + "".join(f"<th>{escape(c.upper())} ({_direction(c, lower_better)})</th>" for c in columns)
            + "</tr>"
        )
        best = {c: _best(group, c, lower_is_better(c, lower_better)) for c in columns}
        for m in group:
            cells = []
            for c in columns:
                bold = best[c] is not None and m.scores.get(c) == best[c]
                cells.append(f"<td><b>{m.cell(c)}</b></td>" if bold else f"<td>{m.cell(c)}</td>")
            parts.append(f"<tr><td>{escape(m.method)}</td>{''.join(cells)}</tr>")
        parts.append("</table>")
    return parts


def html_per_image(rows: list[ScoreRow], lower_better: dict[str, bool], plots: list[Plot]) -> list[str]:
    parts = []
    plot_of = {(p.dataset, p.scale, p.metric): p for p in reversed(plots)}  # the first of each
    for (dataset, _kind, scale), members in groups(rows).items():
        parts.append(f"<h3>{escape(dataset)} x{scale:g}</h3>")
        for column in metric_columns(members):
            images, methods, series = score_table(members, column)
            plot = plot_of.get((dataset, scale, column))
            if plot is not None:
                parts.append(
                    f"<img class='plot' src='{file_link(plot.file)}' alt='{escape(column)} per image'>"
                )
            parts.append(
                f"<details><summary>{escape(column.upper())} per image ({_direction(column, lower_better)})"
                "</summary><table><tr><th>image</th>"
                + "".join(f"<th>{escape(m)}</th>" for m in methods)
                + "</tr>"
            )
            for i, image in enumerate(images):
                cells = "".join(f"<td>{_cell(column, series[m][i])}</td>" for m in methods)
                parts.append(f"<tr><td>{escape(image)}</td>{cells}</tr>")
            parts.append("</table></details>")
    return parts


def write_html(
    path: Path,
    results: Results,
    config: dict,
    means: list[MeanRow],
    lower_better: dict[str, bool],
    methods: list[Method],
    plots: list[Plot],
    overview: Path | None,
) -> None:
    scales, how_rows = how_table(methods, results.made)
    parts = [
        "<h1>realciao-eval report</h1>",
        f"<p>{escape(settings_line(config))}. Files: "
        + ", ".join(
            f"<a href='{file_link(name)}'>{name}</a>" for name in OUTPUT_FILES if name != "report.html"
        )
        + ".</p>",
        "<h2>Methods</h2><table class='how'><tr><th>method</th><th>model</th>"
        + "".join(f"<th>{escape(s)}: how the output was made</th>" for s in scales)
        + "</tr>",
    ]
    descriptions = {m.name: m.description for m in methods}
    for name, ways in how_rows:
        parts.append(
            f"<tr><td><b>{escape(name)}</b></td><td>{escape(descriptions[name])}</td>"
            + "".join(f"<td>{escape(w)}</td>" for w in ways)
            + "</tr>"
        )
    parts.append("</table><h2>Means</h2>")
    parts += html_means(means, lower_better)
    parts.append("<h2>Per image</h2>")
    parts += html_per_image(results.rows, lower_better, plots)
    if results.crops:
        parts.append(
            "<h2>Crops</h2><p>The same places for every method, where the LR image has most detail "
            "(mean gradient); the LR is shown with nearest-neighbour pixels.</p>"
        )
    for entry in results.crops:
        for place_index, place in enumerate(entry.places):
            top, left, height, width = place.box
            parts.append(
                f"<h3>{escape(entry.dataset)} x{entry.scale:g}, {escape(entry.image)}, place "
                f"{place_index + 1}: {width}x{height} at ({left}, {top})</h3><div>"
            )
            for label, name in place.crops.items():
                parts.append(
                    f"<figure><img src='{file_link('crops/' + name)}' alt='{escape(label)}'>"
                    f"<figcaption>{escape(label)}</figcaption></figure>"
                )
            parts.append("</div>")
    if overview is not None:
        parts.append(
            f"<h2>Overview</h2><p><img class='plot' src='{file_link(overview.name)}' alt='overview'></p>"
        )
    if results.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in results.notes) + "</ul>")
    write_page(path, "realciao-eval report", STYLE, parts)


def write_outputs(
    outdir: Path, results: Results, config: dict, lower_better: dict[str, bool], methods: list[Method]
) -> dict[str, Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    means = mean_rows(results.rows)
    paths = {name: outdir / name for name in OUTPUT_FILES}
    per_image = [row.as_dict() for row in results.rows]
    write_csv(paths["per_image.csv"], per_image, [*ID_COLUMNS, *metric_columns(results.rows), "note"])
    mean_records = [m.as_dict() for m in means]
    write_csv(
        paths["means.csv"], mean_records, [*MEAN_ID_COLUMNS, *columns_of(mean_records, MEAN_ID_COLUMNS)]
    )
    plots = write_plots(outdir, results.rows, lower_better)
    overview = write_overview(outdir, results, plots)
    document = {
        "config": config,
        "means": [{k: _json_value(v) for k, v in m.items()} for m in mean_records],
        "per_image": [{k: _json_value(v) for k, v in r.items()} for r in per_image],
        "seconds": results.seconds,
        "plots": [asdict(p) for p in plots],
        "crops": [entry.as_dict() for entry in results.crops],
        "notes": results.notes,
    }
    atomic_write(paths["results.json"], json.dumps(document, indent=2).encode("utf-8"))
    write_markdown(paths["results.md"], results, config, markdown_table(means, lower_better), methods, plots)
    write_html(paths["report.html"], results, config, means, lower_better, methods, plots, overview)
    if overview is not None:
        paths["overview.png"] = overview
    return paths
