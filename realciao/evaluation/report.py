"""What an evaluation writes: per-image and mean tables (CSV, JSON, Markdown) and an HTML
report of the methods, their means and side-by-side crops, readable offline."""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path

import numpy as np

from realciao.evaluation.protocols import Results

ID_COLUMNS = ("dataset", "kind", "scale", "method", "image")


def metric_columns(rows: list[dict]) -> list[str]:
    columns = []
    for row in rows:
        for key in row:
            if key not in ID_COLUMNS and key != "note" and key not in columns:
                columns.append(key)
    return columns


def mean_rows(rows: list[dict]) -> list[dict]:
    """Mean of each metric per (dataset, scale, method), over the images it could measure."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["kind"], row["scale"], row["method"]), []).append(row)
    means = []
    for (dataset, kind, scale, method), members in groups.items():
        mean = {"dataset": dataset, "kind": kind, "scale": scale, "method": method, "images": len(members)}
        for column in metric_columns(members):
            values = [r[column] for r in members if column in r and math.isfinite(r[column])]
            mean[column] = float(np.mean(values)) if values else float("nan")
            if len(values) < len(members):
                mean[f"{column}_n"] = len(values)
        means.append(mean)
    return means


def _fmt(value) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "" if math.isnan(value) else str(value)
        return f"{value:.4f}"
    return str(value)


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _fmt(row.get(c, "")) if row.get(c, "") != "" else "" for c in columns})


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def markdown_table(means: list[dict], metrics_lower_better: dict[str, bool]) -> str:
    lines = []
    for dataset, kind, scale in dict.fromkeys((m["dataset"], m["kind"], m["scale"]) for m in means):
        group = [m for m in means if (m["dataset"], m["kind"], m["scale"]) == (dataset, kind, scale)]
        columns = [c for c in metric_columns(group) if c != "images" and not c.endswith("_n")]
        arrows = [" (lower better)" if metrics_lower_better.get(c, c not in ("psnr", "ssim", "psnr_rgb", "ssim_rgb"))
                  else " (higher better)" for c in columns]
        lines.append(f"### {dataset} x{scale:g} ({kind}, {group[0]['images']} images)\n")
        lines.append("| method | " + " | ".join(c.upper() + a for c, a in zip(columns, arrows)) + " |")
        lines.append("| --- |" + " --- |" * len(columns))
        for m in group:
            cells = []
            for c in columns:
                cell = f"{m[c]:.2f}" if c.startswith("psnr") else f"{m[c]:.4f}" if c.startswith("ssim") else f"{m[c]:.3f}"
                cell = "n/a" if not math.isfinite(m[c]) else cell
                if f"{c}_n" in m:
                    cell += f" ({m[f'{c}_n']}/{m['images']})"
                cells.append(cell)
            lines.append(f"| {m['method']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_html(path: Path, results: Results, means_md: str, methods) -> None:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>realciao-eval report</title>",
        "<style>body{font-family:sans-serif} figure{display:inline-block;margin:4px;text-align:center}"
        " img{width:256px;image-rendering:pixelated} pre{background:#f4f4f4;padding:8px}</style></head><body>",
        "<h1>realciao-eval report</h1><h2>Methods</h2><ul>",
        *[f"<li><b>{html.escape(m.name)}</b>: {html.escape(m.description)}</li>" for m in methods],
        "</ul><h2>Means</h2><pre>", html.escape(means_md), "</pre>",
    ]
    for entry in results.crops:
        parts.append(f"<h3>{html.escape(entry['dataset'])} x{entry['scale']:g} — {html.escape(entry['image'])}</h3><div>")
        for method, name in entry["crops"].items():
            parts.append(f"<figure><img src='crops/{html.escape(name)}'><figcaption>{html.escape(method)}</figcaption></figure>")
        parts.append("</div>")
    if results.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in results.notes) + "</ul>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts))


def write_outputs(outdir: Path, results: Results, config: dict, lower_better: dict[str, bool],
                  methods) -> dict[str, Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    means = mean_rows(results.rows)
    metric_cols = metric_columns(results.rows)
    paths = {name: outdir / name for name in ("per_image.csv", "means.csv", "results.json", "results.md", "report.html")}
    write_csv(paths["per_image.csv"], results.rows, [*ID_COLUMNS, *metric_cols, "note"])
    mean_cols = ["dataset", "kind", "scale", "method", "images"] + [
        c for c in metric_columns(means) if c != "images"
    ]
    write_csv(paths["means.csv"], means, mean_cols)
    document = {
        "config": config,
        "means": [{k: _json_value(v) for k, v in m.items()} for m in means],
        "per_image": [{k: _json_value(v) for k, v in r.items()} for r in results.rows],
        "seconds": results.seconds,
        "notes": results.notes,
    }
    paths["results.json"].write_text(json.dumps(document, indent=2))
    table = markdown_table(means, lower_better)
    notes = "".join(f"- {n}\n" for n in results.notes)
    described = "".join(f"- **{m.name}**: {m.description}\n" for m in methods)
    paths["results.md"].write_text("# realciao-eval results\n\n## Methods\n\n" + described + "\n" + table
                                   + ("\n## Notes\n\n" + notes if notes else ""))
    write_html(paths["report.html"], results, table, methods)
    return paths
