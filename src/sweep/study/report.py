"""``sweep-report``, and what a finished sweep leaves on its MLflow parent run.

    sweep-report --storage multirun/quickstart/optuna.journal --out report/
    sweep-report --storage sqlite:///studies.db --study lr_bs_grid --out report/

Everything is made from the study's storage alone (no MLflow needed): ``report.md`` (counts, best trial or
Pareto front, the trials table, the figures), the figures themselves (``sweep.study.figures``),
``optimization_results.yaml`` and ``best.yaml``, the best trial's config ready to rerun.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna import Study

from sweep.contract import masked
from sweep.errors import SweepError


def write_report(study: Study, summary: dict[str, Any], out: Path, storage: str) -> list[Path]:
    """Write the report of ``study`` (``summary`` is its :func:`~sweep.study.results.summarize`; ``storage`` the
    study's storage, which the summary names with any password masked) into ``out``.

    Returns every file written, report.md first.
    """
    from sweep.study.export import from_study, write
    from sweep.study.figures import study_plots
    from sweep.study.panels import Panels, spec_of, write_panels
    from sweep.study.results import write_yaml

    out.mkdir(parents=True, exist_ok=True)
    results = out / "optimization_results.yaml"
    write_yaml(summary, results)
    spec = spec_of(study)
    panels = write_panels(study, spec, out) if spec else Panels([], [])
    files = [results, *panels.figures, *study_plots(study, out, heatmaps=not (spec and spec.pivots))]
    if summary.get("best"):
        try:
            exported, metrics, directions, _ = from_study(storage, study.study_name, top=None)
            files += write(exported, out, ["best"], {"storage": summary["storage"], "study": study.study_name,
                                                     "metrics": metrics, "directions": directions})
        except SweepError:
            pass  # trials from before configs were recorded: no best.yaml, the rest of the report stands
    report = out / "report.md"
    standard = [f for f in files if f.suffix in (".png", ".html") and f not in panels.figures]
    report.write_text(_markdown(summary, panels.markdown, standard))
    return [report, *files]


def _markdown(summary: dict[str, Any], answer: list[str], figures: list[Path]) -> str:
    from sweep.study.results import format_table

    lines = [f"# Study `{summary['study_name']}`", "",
             f"Storage: `{summary['storage']}`  ", f"Trials: {summary['n_trials']} {summary['states']}", ""]
    best = summary.get("best") or summary.get("pareto_front") or []
    title = "Best trial" if "best" in summary else "Pareto front"
    lines += [f"## {title}", ""]
    for trial in best:
        values = dict(zip(summary["metrics"], trial["values"], strict=True))
        lines.append(f"- trial {trial['number']}: {values} with `{trial['params']}`")
    lines += ["", *answer, "## Trials", "", format_table(summary), "", "## Figures", ""]
    lines += [f"![{f.stem}]({f.name})" if f.suffix == ".png" else f"- [{f.name}]({f.name})" for f in figures]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from sweep.study.results import summarize
    from sweep.study.storage import load_study

    parser = argparse.ArgumentParser(
        prog="sweep-report", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write a study's report (report.md, its figures, optimization_results.yaml, best.yaml) from its "
                    "Optuna storage alone.",
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
