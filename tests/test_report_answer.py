"""The report of a real quick lr x batch-size study tells what it found: the cells whose trials failed (their margin
not measurable) still show the accuracy they measured, marked; the margin's dependence on lr is worded from the
groups, not from a rank correlation alone; the page has the margin against lr coloured by batch size."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from tests.conftest import fresh_storage, run_cli

pytestmark = pytest.mark.slow
STUDY = "quick_lr_bs_grid"


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("answer")
    result = run_cli("-m", "+experiment=quick/lr_bs_grid", "train.device=cpu", "mlflow.enabled=false", cwd=folder,
                     timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "multirun" / STUDY


def _table(markdown: str, metric: str) -> dict[tuple[str, str], str]:
    """The pivot table of ``metric``: (batch size, lr column header) -> cell text."""
    block = markdown.split(f"**{metric}** (mean per cell")[1].split("\n\n", 2)[1]
    header, _, *rows = block.splitlines()
    columns = [c.strip() for c in header.strip("|").split("|")][1:]
    cells = {}
    for row in rows:
        first, *values = (c.strip() for c in row.strip("|").split("|"))
        cells.update({(first, column): value for column, value in zip(columns, values, strict=True)})
    return cells


def test_failed_cells_show_their_recorded_accuracy_marked(swept: Path) -> None:
    study = optuna.load_study(study_name=STUDY, storage=fresh_storage(str(swept / "optuna.journal")))
    markdown = (swept / "report" / "report.md").read_text()
    accuracy, margin = _table(markdown, "test_acc"), _table(markdown, "deepfool_margin")
    assert len(accuracy) == 12 and "-" not in accuracy.values()  # every cell of the 4 x 3 grid says something
    for trial in study.trials:
        at = (str(trial.params["train.batch_size"]), str(trial.params["optimizer.lr"]))
        if trial.state.name == "FAIL":
            recorded = trial.user_attrs["metrics"]["test_acc"]
            assert accuracy[at] == f"{recorded:.3f}†" and margin[at] == "n/m"
        else:
            assert not accuracy[at].endswith("†")


def test_the_margin_against_lr_is_worded_from_the_groups(swept: Path) -> None:
    """lr 1e-4 barely trains in 5 epochs: its margins are the three lowest of the grid, a clear effect that the rank
    correlation alone called "no clear relation"."""
    markdown = (swept / "report" / "report.md").read_text()
    (sentence,) = [line for line in markdown.splitlines() if line.startswith("- deepfool_margin and optimizer.lr:")]
    assert "groups differ: permutation p=" in sentence and "at optimizer.lr 1e-4" in sentence
    assert "no clear relation" not in sentence


def test_the_page_shows_the_margin_against_lr_coloured_by_batch_size(swept: Path) -> None:
    page = (swept / "report" / "report.html").read_text()
    assert 'data-title="deepfool_margin against each parameter"' in page
    assert "deepfool_margin against each swept parameter, coloured by train.batch_size" in page
    assert "test_acc (maximize, better \\u2192)" in page  # the Pareto front's axes say their direction (JSON-escaped)
