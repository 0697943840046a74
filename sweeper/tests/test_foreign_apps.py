"""The Optuna sweeper on Hydra apps that know nothing of sweep (apps/), run as users run them.

The first half checks hydra-optuna-sweeper's own test cases against our sweeper, case by case: the same commands
(through our example apps of the same spirit), the same expected outcomes, run with ``python -W error`` as their
harness does. Where we differ on purpose, the test asserts our documented behaviour and says why. The second half
is what their suite never covered: persistent SQLite studies and resume, pruning through ``sweep.reporting`` under
the joblib launcher, conditional spaces, and input errors.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf
from optuna.trial import TrialState

from sweeper.tests.helpers import fresh_storage
from sweeper.tests.helpers import run_app as _run

pytestmark = pytest.mark.slow


def _results(cwd: Path):
    return OmegaConf.load(cwd / "sweep" / "optimization_results.yaml")


def _dominates(a: list[float], b: list[float]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


# --- hydra-optuna-sweeper's cases ------------------------------------------------------------------------------
def test_discovery() -> None:
    assert "OptunaSweeper" in [plugin.__name__ for plugin in Plugins.instance().discover(Sweeper)]


def test_launch_jobs_without_a_search_space(hydra_sweep_runner) -> None:
    """Differs on purpose: with nothing to sweep, hydra-optuna-sweeper runs n_trials identical jobs and returns None;
    ours runs the job once, opens no study, and returns the launcher's results as Hydra's basic sweeper does."""
    sweep = hydra_sweep_runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        config_path="configs",
        config_name="compose.yaml",
        task_function=None,
        overrides=["hydra/sweeper=optuna", "hydra/launcher=basic", "hydra.sweeper.n_trials=8",
                   "hydra.sweeper.n_jobs=3"],
    )
    with sweep:
        assert sweep.returns is not None and [len(batch) for batch in sweep.returns] == [1]
        assert sweep.returns[0][0].return_value == 100


@pytest.mark.parametrize("with_commandline", [True, False])
def test_sphere_with_tpe_and_sqlite(tmp_path: Path, with_commandline: bool) -> None:
    storage = f"sqlite:///{tmp_path}/test.db"
    args = ["hydra.job.chdir=True", "hydra.sweeper.n_trials=20", "hydra.sweeper.n_jobs=1",
            f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=test-optuna-example",
            "hydra/sweeper/sampler=tpe", "hydra.sweeper.sampler.seed=123", "~z"]
    if with_commandline:
        args += ["x=choice(0, 1, 2)", "y=0"]
    result = _run("sphere", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    returns = _results(tmp_path)
    best = optuna.load_study(storage=storage, study_name="test-optuna-example").best_trial
    assert returns.name == "optuna"
    assert returns.best_params.x == best.params["x"]
    if with_commandline:
        assert "y" not in returns.best_params and "y" not in best.params
    else:
        assert returns.best_params.y == best.params["y"]
    assert returns.best_value == best.value
    assert returns.best_value <= 2.27  # their threshold for TPE's search performance on this function


@pytest.mark.parametrize("n_trials", [10, 1])
def test_sphere_with_grid(tmp_path: Path, n_trials: int) -> None:
    """Their grid config (x: choice(-1,1), y: range(-1.0,1.0,step=1), z: choice(foo,bar)), their assertions. Our
    y range stops before 1.0 (Hydra's range excludes its stop), so our grid has 8 points where theirs has 12."""
    result = _run("sphere", "--config-name=grid", "hydra.job.chdir=False", f"hydra.sweeper.n_trials={n_trials}",
                  f"hydra.sweeper.storage=sqlite:///{tmp_path}/test.db", "hydra.sweeper.study_name=grid", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    returns = _results(tmp_path)
    assert returns.best_params.x in (-1, 1) and returns.best_params.y in (-1, 0)
    assert returns.best_params.z in ("foo", "bar")
    trials = optuna.load_study(storage=f"sqlite:///{tmp_path}/test.db", study_name="grid").trials
    assert len(trials) == min(n_trials, 8)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)  # no grid point twice


@pytest.mark.parametrize("with_commandline", [True, False])
def test_two_objectives_pareto_front(tmp_path: Path, with_commandline: bool) -> None:
    args = ["hydra.job.chdir=True", "hydra.sweeper.n_trials=20", "hydra.sweeper.n_jobs=1",
            "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=123"]
    if with_commandline:
        args += ["x=range(0, 5)", "y=range(0, 3)"]
    result = _run("two_objectives", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    returns = _results(tmp_path)
    assert returns.name == "optuna" and len(returns.solutions) >= 1
    steps = {0} if with_commandline else {0, 0.5}
    for a in returns.solutions:
        assert a.params.x % 1 in steps and a.params.y % 1 in steps
        assert not any(_dominates(list(b["values"]), list(a["values"])) for b in returns.solutions)


def test_custom_search_space(tmp_path: Path) -> None:
    result = _run("custom_space", "hydra.job.chdir=True", "hydra.sweeper.n_trials=20", "hydra.sweeper.n_jobs=1",
                  "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=123", "max_z_difference_from_x=0.3",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    returns = _results(tmp_path)
    assert returns.name == "optuna"
    assert abs(returns.best_params.x - returns.best_params.z) <= 0.3
    assert 0 <= returns.best_params["+w"] <= 1


def test_failure_rate_below_one_stops_the_sweep_with_the_reason(tmp_path: Path) -> None:
    """Their case; the basic launcher runs trials one after another (no batches), so the first failure, 1 of 1,
    already passes 0.5 and the sweep stops there."""
    result = _run("sphere", "hydra.job.chdir=True", "hydra.sweeper.n_trials=20", "hydra.sweeper.n_jobs=2",
                  "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=123",
                  "hydra.sweeper.max_failure_rate=0.5", "error=true", cwd=tmp_path)
    assert result.returncode != 0
    assert "RuntimeError: cfg.error is True" in result.stderr
    assert "1 of 1 trials failed, more than 50%" in result.stderr
    assert len(optuna.load_study(study_name="sphere", storage=_journal(tmp_path)).trials) == 1


def test_failure_rate_one_lets_every_trial_fail_and_exits_zero(tmp_path: Path) -> None:
    """Their case and their meaning: max_failure_rate 1.0, set explicitly, means any number of failures is fine."""
    result = _run("sphere", "hydra.job.chdir=True", "hydra.sweeper.n_trials=20", "hydra.sweeper.n_jobs=2",
                  "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=123",
                  "hydra.sweeper.max_failure_rate=1.0", "error=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "RuntimeError: cfg.error is True" not in result.stderr.splitlines()[-1:]  # no closing error line
    assert "Error executing job" not in result.stderr  # one line per failed trial, ours, not Hydra's block
    trials = optuna.load_study(study_name="sphere", storage=_journal(tmp_path)).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 20
    assert trials[0].user_attrs["fail_reason"] == "RuntimeError: cfg.error is True"


def test_by_default_every_trial_failing_exits_non_zero_with_the_reasons(tmp_path: Path) -> None:
    """Left unset (the sphere app's config sets 0.0, as their example does), max_failure_rate records failures and
    goes on, but a sweep that learned nothing says so."""
    result = _run("sphere", "hydra.sweeper.n_trials=4", "hydra.sweeper.max_failure_rate=null", "error=true",
                  cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == "every trial failed (4): 4x RuntimeError: cfg.error is True"


def test_removed_motpe_sampler_is_named(tmp_path: Path) -> None:
    result = _run("two_objectives", "hydra/sweeper/sampler=motpe", cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == (
        "hydra.sweeper.sampler: The 'motpe' sampler was removed in Optuna 4.0; tpe handles several objectives itself")
    assert not (tmp_path / "sweep").exists()


# --- beyond their suite: persistence, resume, pruning, conditional spaces, bad input -------------------------
def _journal(cwd: Path):
    return fresh_storage(str(cwd / "sweep" / "optuna.journal"))


def test_persistent_by_default_and_resumed_without_redoing_trials(tmp_path: Path) -> None:
    first = _run("sphere", "hydra.sweeper.n_trials=5", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    study = optuna.load_study(study_name="sphere", storage=_journal(tmp_path))
    done = [(t.number, t.params) for t in study.trials]
    assert len(done) == 5
    second = _run("sphere", "hydra.sweeper.n_trials=8", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    trials = optuna.load_study(study_name="sphere", storage=_journal(tmp_path)).trials
    assert [t.number for t in trials] == list(range(8))  # the trial counter continues
    assert [(t.number, t.params) for t in trials[:5]] == done
    assert (tmp_path / "sweep" / "7").is_dir()  # and so do the job folders
    assert trials[0].user_attrs["config"]["x"] == trials[0].params["x"]  # the job's config, for export


def test_grid_over_a_conditional_space_runs_only_valid_points(tmp_path: Path) -> None:
    (tmp_path / "conditional.yaml").write_text(
        "defaults:\n  - override hydra/sweeper: optuna\n  - override hydra/sweeper/sampler: grid\n"
        "hydra:\n  sweeper:\n    direction: minimize\n    params:\n"
        "      x: choice(-1, 1)\n"
        "      y:\n        when: {x: 1}\n        values: choice(0, 2)\n"
        "x: 1\ny: 5\n"
    )
    result = _run("sphere", f"--config-dir={tmp_path}", "--config-name=conditional", "hydra.job.name=cond",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = optuna.load_study(study_name="cond", storage=_journal(tmp_path)).trials
    assert sorted(tuple(sorted(t.params.items())) for t in trials) == [
        (("x", -1),), (("x", 1), ("y", 0)), (("x", 1), ("y", 2))]
    by_params = {tuple(sorted(t.params.items())): t.value for t in trials}
    assert by_params[(("x", -1),)] == 1 + 25  # y not swept in this branch: the config's y=5 stands


def test_pruning_through_the_public_api_with_joblib(tmp_path: Path) -> None:
    result = _run(
        "pruned", "hydra/sweeper=optuna", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
        "hydra/sweeper/sampler=grid", "hydra.sweeper.direction=minimize", "hydra.sweeper.pruner=median",
        "+hydra.sweeper.pruner_options.n_startup_trials=2", "+hydra.sweeper.pruner_options.n_warmup_steps=2",
        "lr=choice(0.3,0.31,5.0,6.0)", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    trials = {t.params["lr"]: t for t in optuna.load_study(study_name="pruned", storage=_journal(tmp_path)).trials}
    assert trials[0.3].state == TrialState.COMPLETE and len(trials[0.3].intermediate_values) == 10
    assert trials[0.3].user_attrs["metrics"] == {"final_loss": pytest.approx(0.1), "steps": 10.0}
    assert trials[6.0].state == TrialState.PRUNED and len(trials[6.0].intermediate_values) < 10


def test_a_sequence_of_values_is_told_as_several_objectives_and_a_wrong_count_fails(tmp_path: Path) -> None:
    ok = _run("two_objectives", "hydra.sweeper.n_trials=3", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    bad = _run("two_objectives", "hydra.sweeper.n_trials=2", "hydra.sweeper.direction=minimize",
               "hydra.sweeper.study_name=one", cwd=tmp_path)
    assert bad.returncode != 0
    assert "the task returned 2 value(s) for 1 objective(s)" in bad.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x=interval(0, 1)", "hydra.sweeper.sampler=grid"],
         "hydra.sweeper.sampler: grid needs discrete values, but x is a continuous interval"),
        (["hydra.sweeper.sampler=annealing"], "hydra.sweeper.sampler: got 'annealing', allowed: grid,"),
        (["hydra.sweeper.pruner=early"], "hydra.sweeper.pruner: got 'early', allowed: none,"),
        (["+hydra.sweeper.sampler_options.bogus=1"], "hydra.sweeper.sampler.bogus: TPESampler takes no option 'bogus'"),
        (["hydra.sweeper.max_failure_rate=2"], "hydra.sweeper.max_failure_rate: must be in [0, 1], got 2"),
        (["x=glob(*)"], "x: 'x=glob(*)' cannot be a search dimension"),
        (["hydra.sweeper.custom_search_space=nowhere.hook"],
         "hydra.sweeper.custom_search_space: cannot import 'nowhere.hook': no module named 'nowhere'"),
    ],
)
def test_bad_input_is_one_line_before_any_study(tmp_path: Path, args: list[str], message: str) -> None:
    result = _run("sphere", *args, cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.splitlines()[0].startswith(message), result.stderr
    assert not (tmp_path / "sweep").exists()


# --- configs written for hydra-optuna-sweeper, unchanged ------------------------------------------------------
OFFICIAL_DOCS_CONFIG = """\
defaults:
  - override hydra/sweeper: optuna
  - override hydra/sweeper/sampler: tpe

hydra:
  sweeper:
    _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper
    sampler:
      _target_: optuna.samplers.TPESampler
      seed: 123
      consider_prior: true
      prior_weight: 1.0
      consider_magic_clip: true
      consider_endpoints: false
      n_startup_trials: 10
      n_ei_candidates: 24
      multivariate: false
      warn_independent_sampling: true
    direction: minimize
    storage: null
    study_name: sphere
    n_trials: 20
    n_jobs: 1
    max_failure_rate: 0.0
    params:
      x: range(-5.5, 5.5, step=0.5)
      y: choice(-5, 0, 5)

x: 1
y: 1
z: 1
error: false
"""


def test_the_official_docs_config_runs_unchanged(tmp_path: Path) -> None:
    """What ``--cfg hydra -p hydra.sweeper`` prints in hydra-optuna-sweeper's docs, its own _target_ included."""
    (tmp_path / "official.yaml").write_text(OFFICIAL_DOCS_CONFIG)
    result = _run("sphere", f"--config-dir={tmp_path}", "--config-name=official", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "running hydra-optuna-studies, its successor" in result.stdout
    trials = optuna.load_study(study_name="sphere", storage=_journal(tmp_path)).trials
    assert len(trials) == 20 and {t.state for t in trials} == {TrialState.COMPLETE}
    assert _results(tmp_path).best_value <= 2.27


def test_any_sampler_class_and_a_pruner_node_are_built_from_their_target(tmp_path: Path) -> None:
    """A sampler of a class the sweeper has no node for (with an option only it takes), and a pruner node that
    holds another (built first)."""
    config = OFFICIAL_DOCS_CONFIG.replace("      _target_: optuna.samplers.TPESampler\n",
                                          "      _target_: optuna.samplers.BruteForceSampler\n"
                                          "      avoid_premature_stop: true\n")
    for option in ("consider_prior: true", "prior_weight: 1.0", "consider_magic_clip: true", "n_ei_candidates: 24",
                   "consider_endpoints: false", "n_startup_trials: 10", "multivariate: false",
                   "warn_independent_sampling: true"):
        config = config.replace(f"      {option}\n", "")
    config = config.replace("    direction: minimize\n", "    direction: minimize\n    pruner:\n"
                            "      _target_: optuna.pruners.PatientPruner\n      patience: 2\n"
                            "      wrapped_pruner: {_target_: optuna.pruners.MedianPruner}\n")
    (tmp_path / "other.yaml").write_text(config)
    result = _run("sphere", f"--config-dir={tmp_path}", "--config-name=other", "hydra.sweeper.n_trials=5",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="sphere", storage=_journal(tmp_path))
    assert len(study.trials) == 5
    assert study.user_attrs["pruner"]["_target_"] == "optuna.pruners.PatientPruner"


def test_an_optunahub_sampler_is_built_from_a_local_registry(tmp_path: Path) -> None:
    """OptunaHub's loader, for real, on a registry folder of OptunaHub's layout (online it needs the network)."""
    package = tmp_path / "registry" / "samplers" / "tiny"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "import optuna\n\n\nclass TinySampler(optuna.samplers.RandomSampler):\n    pass\n")
    result = _run("sphere", "hydra.sweeper.n_trials=4", "hydra.sweeper.max_failure_rate=null",
                  "hydra.sweeper.sampler._target_=hydra_optuna_studies.instantiate.hub",
                  "+hydra.sweeper.sampler.package=samplers/tiny", "+hydra.sweeper.sampler.name=TinySampler",
                  f"+hydra.sweeper.sampler.registry_root={tmp_path / 'registry'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(optuna.load_study(study_name="sphere", storage=_journal(tmp_path)).trials) == 4


def test_an_app_with_keys_named_like_sweeps_own_is_swept_reported_and_exported(tmp_path: Path) -> None:
    """A foreign app's `report`, `objective`, `mlflow` and `data` keys are its own business: nothing reads them."""
    result = _run("sphere", "hydra.sweeper.n_trials=3", "+report={format: pdf}", "+objective=[x]",
                  "+mlflow={enabled: true, tracking_uri: nowhere}", "+data={name: mine}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "sweep" / "report" / "report.html").is_file()
    best = (tmp_path / "sweep" / "report" / "best.yaml").read_text()
    assert "format: pdf" in best and "tracking_uri: nowhere" in best
    assert not list(tmp_path.rglob("mlflow.db"))  # no tracking was opened for it
