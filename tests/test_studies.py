"""The motivating studies (../shared/studies.md) as presets: each composes, each quick variant runs end to end with a
real Optuna journal and MLflow store and writes its report, and on digits their results keep the studies' orderings
(asserted only where the margin is wide: a ranking, never a number)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra_optuna_studies.search_space import parse_search_space
from omegaconf import OmegaConf

from sweep.cli import CONFIG_DIR
from tests.conftest import fresh_storage, run_cli, trial_config

PRESETS = Path(CONFIG_DIR) / "experiment"
STUDIES = sorted(p.stem for p in (PRESETS / "quick").glob("*.yaml"))
# Trials in each study's full grid, as the study ran it (studies.md).
GRID_SIZES = {"lr_bs_grid": 8 * 9, "lr_bs_followup": 4 * 4, "optimizers": (4 + 4 + 2 * 4 + 4) * 3 * 3,
              "init_schemes": 6 * 3, "regularization": 4, "cifar_mlp": 3, "cifar_dropout": 3,
              "cnn_depth_width": 2 * 4 + 2 * 3 + 4, "resnet_depth": 2 * (3 + 3)}


def _grid(preset: str) -> list[dict[str, Any]]:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={preset}"], return_hydra_config=True)
    return list(parse_search_space(OmegaConf.to_container(cfg.hydra.sweeper.params), []).points())


def test_every_study_has_a_quick_variant_and_a_known_grid() -> None:
    full = sorted(p.stem for p in PRESETS.glob("*.yaml") if p.stem != "quickstart")
    assert full == STUDIES == sorted(GRID_SIZES)


@pytest.mark.parametrize("study", STUDIES)
def test_every_preset_composes_into_its_studys_grid(study: str) -> None:
    cfg, resolved = trial_config(f"+experiment={study}")
    assert cfg.name == study and cfg.report.question
    assert len(_grid(study)) == GRID_SIZES[study]
    quick, _ = trial_config(f"+experiment=quick/{study}")
    assert quick.data.name == "digits" and quick.name == f"quick_{study}"
    assert quick.report == cfg.report  # the quick run answers the same question


def test_the_lr_bs_grid_is_run_as_the_study_ran_it() -> None:
    cfg, _ = trial_config("+experiment=lr_bs_grid")
    assert (cfg.data.name, cfg.data.preprocess, cfg.data.val_fraction) == ("fashion_mnist", "pixels", 0.0)
    assert (cfg.model.hidden_dims, cfg.optimizer.name, cfg.optimizer.momentum) == ([512], "sgd", 0.9)
    deepfool = cfg.measures["deepfool"]
    assert (deepfool.samples, deepfool.pick, deepfool.max_iter, deepfool.count) == (1000, "first", 15, "all")
    assert deepfool.min_share == 0.0  # the study reported the mean over the crossed samples, however few


def test_a_lr_bs_grid_cell_with_few_samples_crossed_keeps_its_margin(tmp_path: Path) -> None:
    """Under the study's rule a model that DeepFool crosses on only some samples within its iterations (one here,
    with no overshoot, so that most stay uncrossed) still has a margin, the study's, where sweep's default
    (min_share 0.5) would fail the trial: the study's headline cells stay."""
    from sweep.trial import TrialJob, run_trial

    cfg, resolved = trial_config("+experiment=quick/lr_bs_grid", "optimizer.lr=1e-4", "train.batch_size=8",
                                 "deepfool.max_iter=1", "deepfool.overshoot=0.0", "deepfool.samples=200",
                                 "mlflow.enabled=false")
    metrics = run_trial(TrialJob(cfg, resolved, tmp_path, "few"))
    assert 0 < metrics["deepfool_counted"] < 100  # fewer than half crossed
    assert metrics["deepfool_margin"] == metrics["deepfool_margin"]  # a number, not NaN


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Runs ``sweep -m +experiment=quick/<study>`` once per module, in its own folder; returns that folder."""
    done: dict[str, Path] = {}

    def run(study: str) -> Path:
        if study not in done:
            folder = tmp_path_factory.mktemp(study)
            result = run_cli("-m", f"+experiment=quick/{study}", "train.device=cpu", cwd=folder, timeout=600)
            assert result.returncode == 0, result.stderr[-3000:]
            done[study] = folder
        return done[study]

    return run


def _trials(folder: Path, study: str) -> list[Any]:
    import optuna

    storage = fresh_storage(str(folder / "multirun" / f"quick_{study}" / "optuna.journal"))
    return optuna.load_study(study_name=f"quick_{study}", storage=storage).get_trials(deepcopy=False)


def _metric(trial: Any, name: str) -> float:
    return trial.user_attrs["metrics"][name]


@pytest.mark.slow
@pytest.mark.parametrize("study", STUDIES)
def test_every_quick_study_runs_and_writes_the_report_that_answers_it(quick: Callable[[str], Path], study: str) -> None:
    from mlflow import MlflowClient

    folder = quick(study)
    trials = _trials(folder, study)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(trials) == len(_grid(f"quick/{study}")) and len(complete) >= 0.9 * len(trials)
    for failed in (t for t in trials if t.state.name == "FAIL"):  # a collapsed or diverged model, said so
        reason = failed.user_attrs["fail_reason"]
        assert re.search(r"deepfool_margin: not measurable \(\d+ samples counted\)|diverged", reason), reason
    report = (folder / "multirun" / f"quick_{study}" / "report" / "report.md").read_text()
    question = trial_config(f"+experiment={study}")[0].report.question
    assert f"## {question}" in report
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report.split("## Trials")[0])
    assert figures, "the answer has at least one figure"
    for name in figures:
        assert (folder / "multirun" / f"quick_{study}" / "report" / name).stat().st_size > 5000, name
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name(f"quick_{study}")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == len(trials) + 1 and len(children) == len(trials)


@pytest.mark.slow
def test_a_too_small_learning_rate_does_not_learn_where_a_good_one_does(quick: Callable[[str], Path]) -> None:
    trials = [t for t in _trials(quick("lr_bs_grid"), "lr_bs_grid") if t.state.name == "COMPLETE"]
    at = {(t.params["optimizer.lr"], t.params["train.batch_size"]): _metric(t, "test_acc") for t in trials}
    assert at[(1e-4, 128)] < 0.4 and at[(0.1, 128)] > 0.85


@pytest.mark.slow
def test_a_multi_objective_study_draws_and_marks_its_pareto_front(quick: Callable[[str], Path]) -> None:
    import optuna

    folder = quick("lr_bs_grid")
    report = folder / "multirun" / "quick_lr_bs_grid" / "report"
    storage = fresh_storage(str(folder / "multirun" / "quick_lr_bs_grid" / "optuna.journal"))
    front = optuna.load_study(study_name="quick_lr_bs_grid", storage=storage).best_trials
    marked = [line.split("|")[2].strip() for line in (report / "report.md").read_text().splitlines()
              if line.startswith("| * ")]
    assert sorted(marked) == sorted(str(t.number) for t in front) and (report / "pareto.png").stat().st_size > 5000
    assert "Pareto front" in (report / "report.html").read_text()


@pytest.mark.slow
def test_normal_init_with_sgd_trains_far_worse_than_xavier_or_he(quick: Callable[[str], Path]) -> None:
    trials = _trials(quick("init_schemes"), "init_schemes")
    sgd = {t.params["init"]: _metric(t, "test_acc") for t in trials if t.params["optimizer"] == "sgd"}
    assert sgd["normal"] < min(sgd[s] for s in ("lecun_normal", "lecun_uniform", "kaiming_normal",
                                                "kaiming_uniform")) - 0.3


@pytest.mark.slow
def test_deep_plain_cnns_train_worse_than_residual_ones_of_the_same_depth(quick: Callable[[str], Path]) -> None:
    trials = _trials(quick("resnet_depth"), "resnet_depth")
    at = {(t.params["model"], t.params["model.layers_per_block"]): _metric(t, "train_acc") for t in trials}
    assert at[("cnn", 8)] < at[("resnet", 8)] - 0.5
    assert at[("cnn", 8)] < at[("cnn", 1)] - 0.5  # depth, not the plain CNN itself, is what fails


@pytest.mark.slow
def test_dropout_narrows_the_train_test_gap(quick: Callable[[str], Path]) -> None:
    trials = _trials(quick("cifar_dropout"), "cifar_dropout")
    gap = {t.params["model.dropout"]: _metric(t, "train_acc") - _metric(t, "test_acc") for t in trials}
    assert gap[0.8] < gap[0.0] - 0.03


@pytest.mark.slow
def test_the_follow_up_trains_every_cell_to_full_training_accuracy(quick: Callable[[str], Path]) -> None:
    trials = _trials(quick("lr_bs_followup"), "lr_bs_followup")
    assert all(_metric(t, "train_acc") == 1.0 and _metric(t, "epochs") < 200 for t in trials)


@pytest.mark.slow
def test_optimizer_curves_are_recorded_every_n_steps_and_runs_named_by_template(quick: Callable[[str], Path]) -> None:
    from mlflow import MlflowClient

    evaluated = 0
    for trial in _trials(quick("optimizers"), "optimizers"):  # evaluated at exactly every 20th step it trained
        steps = [row["step"] for row in trial.user_attrs["history"]["evaluations"]]
        assert steps == list(range(20, int(_metric(trial, "steps")) + 1, 20))
        evaluated += bool(steps)
    assert evaluated > 0
    folder = quick("cnn_depth_width")
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name("quick_cnn_depth_width")
    names = {r.info.run_name for r in client.search_runs([experiment.experiment_id])
             if "mlflow.parentRunId" in r.data.tags}
    assert names == {f"L{n}_K{k}" for n in (1, 2, 4) for k in (8, 16)}


@pytest.mark.slow
def test_the_docs_example_study_runs_from_its_own_folder(tmp_path: Path) -> None:
    """"Add a study with one YAML file": the docs' example, as written there, in a folder of the user's own."""
    from tests.conftest import ROOT

    page = (ROOT / "docs" / "studies.md").read_text()
    example = page.split("## Add a study")[1].split("```yaml\n")[1].split("```")[0]
    (tmp_path / "my_studies" / "experiment").mkdir(parents=True)
    (tmp_path / "my_studies" / "experiment" / "mine.yaml").write_text(example)
    result = run_cli("--config-dir", "my_studies", "-m", "+experiment=mine", "train.epochs=2", "deepfool.samples=50",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    report = (tmp_path / "multirun" / "dropout_vs_width" / "report" / "report.md").read_text()
    assert "## Does the best dropout depend on the width?" in report
    assert "| model.hidden_dims \\ model.dropout | 0.0 | 0.2 | 0.5 |" in report
    assert "**train_acc vs test_acc per model.dropout**" in report
