"""``sweep-report``: a study's report (or several studies' comparison) from its storage alone, written once or
served live.

    sweep-report --storage multirun/quickstart/optuna.journal --out report/
    sweep-report --storage sqlite:///studies.db --study lr_bs_grid --out report/
    sweep-report --storage sqlite:///studies.db --study a --study b --out compared/     (hydra_optuna_studies.compare)
    sweep-report --serve multirun/quickstart/optuna.journal                            (hydra_optuna_studies.serve)

Everything is made from the study's storage alone (no MLflow needed): ``report.md`` (counts, best trial or
Pareto front, the trials table, the figures), the figures themselves (``hydra_optuna_studies.figures``),
``optimization_results.yaml`` and ``best.yaml`` (``pareto-<i>.yaml`` for several objectives), the configs to
rerun, and ``report.html``, the page that shows it all.

A report is written whole into a private folder beside its own and then moved into place file by file, under a lock
on the folder, ``report.html`` last: a browser reloading the page, or another worker writing the same report at the
same moment, never sees half a page or a mix of two reports. The page lists the files it goes with, so the next
report removes those it no longer writes (a Pareto front that shrank leaves no stale ``pareto-3.yaml``). A page of a
study still running carries a :class:`Live` line (and may reload itself): ``hydra_optuna_studies.live``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna import Study

from hydra_optuna_studies.contract import masked
from hydra_optuna_studies.errors import SweepError

PAGE = "report.html"
MARKDOWN = "report.md"
RESULTS = "optimization_results.yaml"
_FILES_META = "report-files"  # the page's <meta> naming the files it goes with


@dataclass(frozen=True)
class Live:
    """What the page of a study still running says at its top, and how often it reloads itself (None: never; a
    server reloads it when it changes)."""

    line: str
    refresh_s: int | None = None


STALE_S = 120  # a page that reloads itself stops once it is this old: its writer died (SIGKILL), nothing rewrites it
# Reload in refresh_s while the page is younger than STALE_S (its writer rewrites it more often than that), else say
# it stopped: a page whose sweep was killed outright does not reload for ever.
_RELOAD = ("<script>(function(){{var written={written},age=Date.now()-written;"
           "if(age<{stale}){{setTimeout(function(){{location.reload()}},{every})}}else{{"
           "var p=document.querySelector('p.live');if(p)p.textContent+=' This page was last written '+"
           "Math.round(age/60000)+' min ago and no longer reloads itself: its sweep may have been stopped.'}}"
           "}})();</script>")


@dataclass
class Rendered:
    """A report made in a private folder: the names of its files there (figures, YAML) and the text of its two pages
    without any :class:`Live` line, so a page can be rewritten with a new line without drawing anything again."""

    title: str
    markdown: str
    body: str  # report.html's body
    names: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        """Every file of the report, in the order they are moved into place: the pages last, report.html at the end."""
        return [*self.names, MARKDOWN, PAGE]

    def pages(self, live: Live | None) -> dict[str, str]:
        markdown = self.markdown
        if live is not None:
            title, _, rest = markdown.partition("\n")
            markdown = f"{title}\n\n> {live.line}\n{rest}"
        return {MARKDOWN: markdown, PAGE: _document(self.title, self.body, live, self.files)}


def write_report(study: Study, summary: dict[str, Any], out: Path, storage: str) -> None:
    """Write the report of ``study`` (``summary`` is its :func:`~hydra_optuna_studies.results.summarize`; ``storage``
    the study's storage, which the summary names with any password masked) into ``out``: ``report.md`` and its
    PNGs, and ``report.html``, one self-contained page (interactive figures, plotly's script inlined: it opens
    offline)."""
    with staging(out) as folder:
        publish(render(study, summary, folder, storage), folder, out, None)


def render(study: Study, summary: dict[str, Any], folder: Path, storage: str) -> Rendered:
    """The report of ``study`` made in ``folder`` (see :func:`write_report`)."""
    from hydra_optuna_studies.export import file_names, from_study, write
    from hydra_optuna_studies.figures import study_plots
    from hydra_optuna_studies.panels import Panels, spec_of, write_panels
    from hydra_optuna_studies.results import write_yaml

    write_yaml(summary, folder / RESULTS)
    spec = spec_of(study)
    panels = write_panels(study, spec, folder) if spec else Panels([], [])
    drawn = study_plots(study, folder, heatmaps=not (spec and spec.pivots))
    if summary.get("best") or summary.get("pareto_front"):
        try:
            exported, metrics, directions, _ = from_study(storage, study.study_name, top=None)
            names = file_names(len(exported), len(directions) > 1, top=None, run=False)
            write(exported, folder, names, {"storage": summary["storage"], "study": study.study_name,
                                            "metrics": metrics, "directions": directions})
        except SweepError:
            pass  # trials from before configs were recorded: no best.yaml, the rest of the report stands
    markdown = _markdown(summary, panels.markdown, drawn.files, drawn.notes)
    title = markdown.splitlines()[0].lstrip("# ").replace("`", "")
    return Rendered(title, markdown, _body(markdown, folder, drawn.interactive), made_in(folder))


def made_in(folder: Path) -> list[str]:
    """The files a report made in ``folder`` (those its pages go with), whichever step wrote them."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in (MARKDOWN, PAGE))


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A private folder beside ``out`` (so that moving its files into ``out`` is a rename), removed afterwards."""
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".writing", dir=out.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish(rendered: Rendered, folder: Path, out: Path, live: Live | None, moved: list[str] | None = None) -> None:
    """Write ``rendered``'s pages (with ``live``) into ``folder``, then move them and ``moved`` of its files (default:
    all) into ``out``, report.html last, under the folder's lock; then remove the files the page it replaced listed
    and this one does not."""
    for name, text in rendered.pages(live).items():
        (folder / name).write_text(text)
    with folder_lock(out):
        before = listed_files(out)
        for name in [*(rendered.names if moved is None else moved), MARKDOWN, PAGE]:
            os.replace(folder / name, out / name)
        for name in set(before) - set(rendered.files):
            (out / name).unlink(missing_ok=True)


def listed_files(out: Path) -> list[str]:
    """The files the report page in ``out`` says it goes with (none for a page of an older version, or none)."""
    try:
        with (out / PAGE).open(encoding="utf-8", errors="replace") as page:
            head = page.read(65536)
    except OSError:
        return []
    found = re.search(rf'<meta name="{_FILES_META}" content="([^"]*)">', head)
    names = found.group(1).split("/") if found else []
    return [name for name in names if name and name == Path(name).name and not name.startswith(".")]


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the folder itself (no lock file left in it), across processes; freed when its holder
    dies. Writers hold it while they move a report into place; a reader that needs the folder's files consistent with
    its page holds it too."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the lock


def write_placeholder(out: Path, title: str, live: Live) -> None:
    """A page that says only ``live`` (a sweep starting, or one that stopped before its report), so the report's
    address opens at once; the files of the report it replaces stay until the next report."""
    kept = [name for name in listed_files(out) if name not in (MARKDOWN, PAGE)]
    rendered = Rendered(title, f"# {title}\n", f"<h1>{escape(title)}</h1>", kept)
    with staging(out) as folder:
        publish(rendered, folder, out, live, moved=[])


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
          "text-align:right}th{background:#f3f3f3}img{max-width:100%}.figure{margin:1.5em 0}"
          ".live{background:#fff4d6;border:1px solid #e0b84a;padding:6px 10px}")


def _body(markdown: str, folder: Path, interactive: list[tuple[str, Any]]) -> str:
    """The report page's body: the Markdown's text and tables, its answer's PNGs embedded, then the interactive
    figures (the Markdown's own figure list stays out: each is here interactively, or embedded as PNG)."""
    body = markdown_to_html(markdown.split("\n## Figures")[0], folder)
    figures = markdown.split("\n## Figures")[1] if "\n## Figures" in markdown else ""
    heatmaps = [line for line in figures.splitlines() if line.startswith("![heatmap_")]
    notes = [line for line in figures.splitlines() if line.startswith("- ")]
    return (body + "<h2>Figures</h2>" + figures_html(interactive)
            + markdown_to_html("\n".join([*heatmaps, "", *notes]), folder))


def figures_html(interactive: list[tuple[str, Any]]) -> str:
    """Interactive plotly figures as HTML, plotly's script inlined once, before the first."""
    parts = []
    for i, (title, figure) in enumerate(interactive):
        if figure.layout.height is None:
            figure.update_layout(height=520)
        html = figure.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False)
        parts.append(f'<div class="figure" data-title="{escape(title)}">{html}</div>')
    return "".join(parts)


def _document(title: str, body: str, live: Live | None, files: list[str]) -> str:
    """The whole page: ``body`` under ``live``'s line, reloading itself while the study runs if ``live`` says so,
    and naming the files it goes with."""
    line = f'<p class="live">{escape(live.line)}</p>' if live else ""
    reload = _RELOAD.format(written=int(time.time() * 1000), stale=STALE_S * 1000, every=live.refresh_s * 1000) \
        if live and live.refresh_s else ""
    return (f'<!doctype html><html><head><meta charset="utf-8"><meta name="{_FILES_META}" '
            f'content="{escape("/".join(files))}"><title>{escape(title)}</title><style>{_STYLE}</style>'
            f"</head><body>{line}{body}{reload}</body></html>\n")


def markdown_to_html(markdown: str, folder: Path) -> str:
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


Studies = list[tuple[str, "Study"]]  # each study with its storage as given (which may hold a password)


def load_studies(storages: list[str], names: list[str]) -> Studies:
    """The studies named by ``--storage`` and ``--study``: several studies of one storage, the only study (or the
    named one) of each of several storages, or one name per storage."""
    from hydra_optuna_studies.storage import load_study

    if not storages:
        raise SweepError("--storage: name the study's storage (a database URL or a *.journal path)")
    pairs: list[tuple[str, str | None]]
    if len(storages) == 1:
        pairs = [(storages[0], name) for name in names] or [(storages[0], None)]
    elif len(names) <= 1:
        pairs = [(storage, names[0] if names else None) for storage in storages]
    elif len(names) == len(storages):
        pairs = list(zip(storages, names, strict=True))
    else:
        raise SweepError(f"--study: {len(names)} names for {len(storages)} storages; give none, one, or one per "
                         "--storage")
    return [(storage, load_study(storage, name)) for storage, name in pairs]


def summaries_of(studies: Studies) -> list[dict[str, Any]]:
    from hydra_optuna_studies.results import summarize

    return [summarize(study, masked(storage)) for storage, study in studies]


def render_studies(studies: Studies, summaries: list[dict[str, Any]], folder: Path) -> Rendered:
    """The report of one study, or the comparison of several (:mod:`hydra_optuna_studies.compare`)."""
    if len(studies) == 1:
        return render(studies[0][1], summaries[0], folder, studies[0][0])
    from hydra_optuna_studies.compare import render_comparison

    return render_comparison(studies, summaries, folder)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    storages = [*([args.serve] if args.serve else []), *(args.storage or [])]
    try:
        if args.out is None and args.serve is None:
            raise SweepError("--out: name the folder to write the report into")
        studies = load_studies(storages, args.study or [])
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.serve is not None:
        from hydra_optuna_studies.serve import serve

        serve(studies, args.host, args.port, args.out)
        return
    with staging(args.out) as folder:
        rendered = render_studies(studies, summaries_of(studies), folder)
        publish(rendered, folder, args.out, None)
    print(f"{args.out / PAGE}  ({len(rendered.files)} files)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweep-report", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write a study's report (report.html, report.md, its figures, optimization_results.yaml, "
                    "best.yaml or pareto-<i>.yaml) from its Optuna storage alone; compare several studies on one "
                    "page; or serve the report live while the study runs.",
        epilog="examples:\n"
               "  sweep-report --storage multirun/quickstart/optuna.journal --out report/\n"
               "  sweep-report --storage sqlite:///studies.db --study lr_bs_grid --out report/\n"
               "  sweep-report --storage postgresql://user@host/db --study s --out report/   (password: PGPASSWORD)\n"
               "  sweep-report --storage sqlite:///studies.db --study a --study b --out compared/   (compare)\n"
               "  sweep-report --storage runs/a/optuna.journal --storage runs/b/optuna.journal --out compared/\n"
               "  sweep-report --serve multirun/quickstart/optuna.journal   (http://127.0.0.1:8000/, live)")
    parser.add_argument("--storage", action="append",
                        help="Optuna storage: a database URL or a *.journal path; several: compare their studies")
    parser.add_argument("--study", action="append",
                        help="study name; may be left out when the storage holds one study; several: compare them")
    parser.add_argument("--out", type=Path, help="folder for report.html and its files (with --serve: optional)")
    parser.add_argument("--serve", nargs="?", const="", metavar="STORAGE",
                        help="serve the report over HTTP, rewritten as the study changes (a study still running "
                             "included), until Ctrl-C")
    parser.add_argument("--host", default="127.0.0.1", help="with --serve: the address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="with --serve: the port (0: any free one)")
    return parser


if __name__ == "__main__":
    main()
