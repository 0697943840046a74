"""What a finished sweep leaves on its MLflow parent run: best values and params, results, trials table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweep.tracking import Run


def log_sweep_summary(parent: Run, study, summary: dict[str, Any], results: Path) -> None:
    """Best value(s) as metrics and best params as ``best.*`` tags, plus the results files as artifacts."""
    from sweep.results import format_table

    best = summary.get("best") or []
    if len(best) == 1:
        parent.log_metrics({f"best_{m}": v for m, v in zip(summary["metrics"], best[0]["values"], strict=True)})
        parent.set_tags({f"best.{k}": v for k, v in best[0]["params"].items()} | {"best.trial": best[0]["number"]})
    parent.log_metrics({f"trials_{state.lower()}": n for state, n in summary["states"].items()})
    parent.log_file(results)
    parent.log_text(format_table(summary), "trials.md")
