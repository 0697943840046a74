"""``sweep-report`` over several studies: one page, each objective on shared axes with one colour per study, and
the studies' best configs side by side. The studies are real Optuna studies in real journals and a SQLite file."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import optuna
import pytest
from hydra_optuna_studies.compare import labels_of, objective_figure
from hydra_optuna_studies.report import PAGE, load_studies, main
from hydra_optuna_studies.results import param_text

LAYERS = {"one_layer": 1e-2, "three_layers": 1e-3}  # each study's best lr


def _study(storage: str | optuna.storages.BaseStorage, name: str, best_lr: float, n: int = 12) -> optuna.Study:
    """A study of lr (log scale) and batch size whose loss is lowest at ``best_lr``."""
    study = optuna.create_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_loss"])
    study.optimize(lambda t: abs(math.log10(t.suggest_float("lr", 1e-4, 1, log=True) / best_lr))
                   + 0.001 * t.suggest_categorical("batch_size", [16, 64]), n_trials=n)
    return study


def _journal(path: Path) -> optuna.storages.BaseStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def _plots(page: str) -> list[list[dict]]:
    """The traces of each plotly figure of a page, as the browser gets them."""
    calls = re.findall(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{', page, re.DOTALL)
    return [json.loads(data) for data in calls]


def test_two_studies_in_two_journals_share_one_figure_and_one_table(tmp_path: Path, capsys) -> None:
    studies = {name: _study(_journal(tmp_path / f"{name}.journal"), name, lr) for name, lr in LAYERS.items()}
    out = tmp_path / "compared"
    main(["--storage", str(tmp_path / "one_layer.journal"), "--storage", str(tmp_path / "three_layers.journal"),
          "--out", str(out)])
    assert capsys.readouterr().out.startswith(f"{out / PAGE}  (")
    page = (out / PAGE).read_text()
    (traces,) = _plots(page)  # one objective: one figure, both studies on it
    assert {t["name"] for t in traces if t.get("showlegend") is not False} == set(LAYERS)
    for name, study in studies.items():
        best = study.best_trial
        row = f"<td>{name}</td><td>{best.number}</td><td>{best.value:.4g}</td>"
        assert row in page  # the best of each study: its trial and value ...
        assert f"lr={param_text(best.params['lr'])}" in page  # ... and its params, as every table gives them
        assert f"<th>{name} #{best.number}</th>" in page  # its config as a column beside the other's
    markdown = (out / "report.md").read_text()
    lr_row = next(line for line in markdown.splitlines() if line.startswith("| lr |"))
    assert [param_text(s.best_params["lr"]) for s in studies.values()] == [c.strip() for c in lr_row.split("|")[2:4]]


def test_each_objective_is_plotted_against_the_trial_and_each_param_in_one_colour_per_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/studies.db"
    for name, lr in LAYERS.items():
        _study(storage, name, lr)
    studies = load_studies([storage], list(LAYERS))
    figure = objective_figure("val_loss", labels_of(studies), [s for _, s in studies])
    by_panel: dict[str, dict[str, str]] = {}
    for trace in figure.data:
        if trace.mode == "markers":
            by_panel.setdefault(trace.xaxis, {})[trace.name] = trace.marker.color
    assert len(by_panel) == 3  # the trial number, lr and batch size: each panel holds both studies ...
    assert all(set(colours) == set(LAYERS) for colours in by_panel.values())
    assert len({colours["one_layer"] for colours in by_panel.values()}) == 1  # ... each in its one colour
    assert len({c for colours in by_panel.values() for c in colours.values()}) == 2
    layout = figure.layout
    assert [layout[f"xaxis{i}"].type for i in (2, 3)] == ["linear", "log"]  # batch_size, lr (drawn on a log scale)
    lines = [t for t in figure.data if t.mode == "lines"]
    assert {t.legendgroup for t in lines} == set(LAYERS)  # each study's best so far
    assert all(list(t.y) == sorted(t.y, reverse=True) for t in lines)  # minimised: it only goes down


def test_one_study_name_in_two_storages_is_told_apart_by_its_storage(tmp_path: Path) -> None:
    for i, lr in enumerate(LAYERS.values()):
        _study(_journal(tmp_path / f"{i}.journal"), "same", lr, n=4)
    studies = load_studies([str(tmp_path / "0.journal"), str(tmp_path / "1.journal")], [])
    assert labels_of(studies) == [f"same ({tmp_path / '0.journal'})", f"same ({tmp_path / '1.journal'})"]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--storage", "a.journal", "--storage", "b.journal", "--study", "x", "--study", "y", "--study", "z"],
      "error: --study: 3 names for 2 storages; give none, one, or one per --storage"),
     (["--storage", "a.journal"], "error: --out: name the folder to write the report into")],
)
def test_names_that_do_not_pair_with_storages_are_one_line(tmp_path: Path, args: list[str], message: str,
                                                           capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*args, *(["--out", str(tmp_path / "x")] if "--study" in args else [])])
    assert exit_.value.code == 2 and capsys.readouterr().err.strip() == message
    assert not (tmp_path / "x").exists()
