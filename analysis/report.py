"""Turn an `Analysis` into files: figures/*.png, report.md, report.html, fit.json.

    from analysis.pipeline import analyze
    from analysis.report import write_report
    paths = write_report(analyze("results/default"), "results/default/report")

Three parts, one job each: `analysis.schema` (fit.json), `analysis.content` (what the report
says, as blocks) and `analysis.render` (Markdown, and HTML with the figures inlined);
the figures come from `analysis.figures`.
"""

from __future__ import annotations

import json
from pathlib import Path

from analysis.content import report_blocks
from analysis.figures import write_figures
from analysis.pipeline import Analysis
from analysis.render import render_html, render_markdown
from analysis.schema import fit_json, jsonable
from analysis.tables import write_tables

__all__ = ["write_report", "fit_json", "jsonable", "render_html", "render_markdown"]


def write_report(
    a: Analysis, out_dir: str | Path, json_path: str | Path | None = None
) -> dict[str, Path]:
    """Write figures/, report.md, report.html and fit.json; returns what was written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = write_figures(a, out / "figures")
    blocks = report_blocks(a, figs)
    (out / "report.md").write_text(render_markdown(blocks, out), encoding="utf-8")
    (out / "report.html").write_text(render_html(blocks), encoding="utf-8")
    jpath = Path(json_path) if json_path else out / "fit.json"
    jpath.parent.mkdir(parents=True, exist_ok=True)
    jpath.write_text(json.dumps(fit_json(a), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return {
        "report.md": out / "report.md",
        "report.html": out / "report.html",
        "fit.json": jpath,
        **{f"figures/{k}.png": p for k, p in figs.items()},
        **write_tables(a, out),  # trials.csv, trials.parquet, epochs.parquet, best_lr.csv
    }
