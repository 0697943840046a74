"""``sweep-report``, and what a finished sweep leaves on its MLflow parent run.

    sweep-report --storage multirun/quickstart/optuna.journal --out report/
    sweep-report --storage sqlite:///studies.db --study lr_bs_grid --out report/

Everything is made from the study's storage alone (no MLflow needed): ``report.md`` (counts, best trial or
Pareto front, the trials table, the figures), the figures themselves (``hydra_optuna_studies.figures``),
``optimization_results.yaml`` and ``best.yaml`` (``pareto-<i>.yaml`` for several objectives), the configs to
rerun.
"""

from __future__ import annotations

import argparse
import sys
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna import Study

from hydra_optuna_studies.contract import masked
from hydra_optuna_studies.errors import SweepError


def write_report(study: Study, summary: dict[str, Any], out: Path, storage: str) -> list[Path]:
    """Write the report of ``study`` (``summary`` is its :func:`~hydra_optuna_studies.results.summarize`; ``storage``
    the study's storage, which the summary names with any password masked) into ``out``: ``report.md`` and its
    PNGs, and ``report.html``, one self-contained page (interactive figures, plotly's script inlined: it opens
    offline).

    Returns every file written, report.md and report.html first.
    """
    from hydra_optuna_studies.export import file_names, from_study, write
    from hydra_optuna_studies.figures import study_plots
    from hydra_optuna_studies.panels import Panels, spec_of, write_panels
    from hydra_optuna_studies.results import write_yaml

    out.mkdir(parents=True, exist_ok=True)
    results = out / "optimization_results.yaml"
    write_yaml(summary, results)
    spec = spec_of(study)
    panels = write_panels(study, spec, out) if spec else Panels([], [])
    drawn = study_plots(study, out, heatmaps=not (spec and spec.pivots))
    files = [results, *panels.figures, *drawn.files]
    if summary.get("best") or summary.get("pareto_front"):
        try:
            exported, metrics, directions, _ = from_study(storage, study.study_name, top=None)
            names = file_names(len(exported), len(directions) > 1, top=None, run=False)
            files += write(exported, out, names, {"storage": summary["storage"], "study": study.study_name,
                                                  "metrics": metrics, "directions": directions})
        except SweepError:
            pass  # trials from before configs were recorded: no best.yaml, the rest of the report stands
    markdown = _markdown(summary, panels.markdown, drawn.files, drawn.notes)
    report = out / "report.md"
    report.write_text(markdown)
    page = out / "report.html"
    page.write_text(_html(markdown, out, drawn.interactive))
    return [report, page, *files]


def _markdown(summary: dict[str, Any], answer: list[str], figures: list[Path], notes: list[str]) -> str:
    from hydra_optuna_studies.results import format_table, result_sentence, ties

    lines = [f"# Study `{summary['study_name']}`", "", result_sentence(summary), "",
             f"Storage: `{summary['storage']}`", ""]
    if tied := ties(summary):
        lines += [tied, ""]
    lines += [*answer, "## Trials", "", "`*`: the best trial, or the Pareto front's members.", "",
              format_table(summary), "", "## Figures", ""]
    lines += [f"![{f.stem}]({f.name})" for f in figures if f.suffix == ".png"]
    lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


_STYLE = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
          "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;"
          "text-align:right}th{background:#f3f3f3}img{max-width:100%}.figure{margin:1.5em 0}")


def _html(markdown: str, folder: Path, interactive: list[tuple[str, Any]]) -> str:
    """The report as one HTML page: the Markdown's text and tables, its answer's PNGs embedded, then the interactive
    figures (the Markdown's own figure list stays out: each is here interactively, or embedded as PNG)."""
    body = _markdown_to_html(markdown.split("\n## Figures")[0], folder)
    figures = markdown.split("\n## Figures")[1] if "\n## Figures" in markdown else ""
    parts = ["<h2>Figures</h2>"]
    for i, (title, figure) in enumerate(interactive):
        figure.update_layout(height=520)
        html = figure.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False)
        parts.append(f'<div class="figure" data-title="{escape(title)}">{html}</div>')
    heatmaps = [line for line in figures.splitlines() if line.startswith("![heatmap_")]
    parts.append(_markdown_to_html("\n".join(heatmaps + [""] + [line for line in figures.splitlines()
                                                                  if line.startswith("- ")]), folder))
    title = escape(markdown.splitlines()[0].lstrip("# ").replace("`", ""))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{_STYLE}</style></head>"
            f"<body>{body}{''.join(parts)}</body></html>\n")


def _markdown_to_html(markdown: str, folder: Path) -> str:
    """The Markdown this module and :mod:`hydra_optuna_studies.panels` write (headings, paragraphs, lists, tables,
    images) as HTML, images embedded as data URLs so the page needs no other file."""
    import base64
    import re

    def inline(text: str) -> str:
        text = escape(text)
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", text)

    out: list[str] = []
    table: list[list[str]] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            if not set(line) <= set("|- "):
                table.append([c.strip() for c in line.strip("|").split("|")])
            continue
        if table:
            head, *rows = table
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows)
                       + "</table>")
            table = []
        if image := re.fullmatch(r"!\[([^]]*)\]\(([^)]+)\)", line):
            data = base64.b64encode((folder / image.group(2)).read_bytes()).decode()
            out.append(f'<div class="figure"><img alt="{escape(image.group(1))}" src="data:image/png;base64,{data}">'
                       "</div>")
        elif heading := re.match(r"(#+) (.*)", line):
            level = len(heading.group(1))
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<li>{inline(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    from hydra_optuna_studies.results import summarize
    from hydra_optuna_studies.storage import load_study

    parser = argparse.ArgumentParser(
        prog="sweep-report", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write a study's report (report.md, its figures, optimization_results.yaml, best.yaml or "
                    "pareto-<i>.yaml) from its Optuna storage alone.",
        epilog="examples:\n"
               "  sweep-report --storage multirun/quickstart/optuna.journal --out report/\n"
               "  sweep-report --storage sqlite:///studies.db --study lr_bs_grid --out report/\n"
               "  sweep-report --storage postgresql://user@host/db --study s --out report/   (password: PGPASSWORD)")
    parser.add_argument("--storage", required=True, help="Optuna storage: a database URL or a *.journal path")
    parser.add_argument("--study", help="study name; may be left out when the storage holds one study")
    parser.add_argument("--out", required=True, type=Path, help="folder for report.md and the figures")
    args = parser.parse_args(argv)
    try:
        study = load_study(args.storage, args.study)
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    files = write_report(study, summarize(study, masked(args.storage)), args.out, args.storage)
    print(f"{files[0]}  ({len(files)} files)")


if __name__ == "__main__":
    main()
