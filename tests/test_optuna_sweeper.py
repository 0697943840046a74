"""The sweeper's planning, telling and grid bookkeeping, in process, on real Hydra configs and Optuna studies."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.sweep_optuna_sweeper._compose import ReusingConfigLoader
from hydra_plugins.sweep_optuna_sweeper._impl import OptunaSweeperImpl, Outcome
from sweep.cli import describe_study
from sweep.contract import StudySpec
from sweep.errors import ConfigError, SweepError
from sweep.study.registry import PRUNERS, SAMPLERS, build_pruner, build_sampler

APP = Path(__file__).parent / "apps" / "sphere" / "conf"


def _sweeper(tmp_path: Path, describe=None, **options) -> OptunaSweeperImpl:
    """A sweeper set up as Hydra sets it up, on the sphere app's config and Hydra's loader, without a launcher."""
    with initialize_config_dir(config_dir=str(APP), version_base=None):
        loader = GlobalHydra.instance().config_loader()
        config = loader.load_configuration("config", [f"hydra.sweep.dir={tmp_path}"], RunMode.MULTIRUN)
    sweeper = OptunaSweeperImpl(**options)
    sweeper.config, sweeper.describe, sweeper.sweep_dir = config, describe, tmp_path
    sweeper.loader = ReusingConfigLoader(loader)
    return sweeper


def _job(value=None, error: BaseException | None = None) -> JobReturn:
    ret = JobReturn(cfg=OmegaConf.create({"x": 1}), status=JobStatus.FAILED if error else JobStatus.COMPLETED)
    ret._return_value = error if error else value
    return ret


def test_plan_of_a_foreign_app_minimizes_and_names_the_study_after_the_job(tmp_path: Path) -> None:
    plan = _sweeper(tmp_path, params={"x": "choice(1, 2)"}).plan(["y=3"])
    assert plan.directions == ["minimize"] and plan.metrics is None
    assert plan.space.fixed == ["y=3"] and list(plan.space.params) == ["x"]
    assert plan.storage == str(tmp_path / "optuna.journal") and plan.n_trials == 20


def test_plan_of_an_app_that_describes_its_study(tmp_path: Path) -> None:
    spec = StudySpec(name="mine", metrics=["acc", "loss"], directions=["maximize", "minimize"])
    plan = _sweeper(tmp_path, describe=lambda cfg: spec, sampler={"name": "grid"}).plan(["x=choice(1,2)"])
    assert (plan.study_name, plan.metrics, plan.directions, plan.n_trials) == (
        "mine", ["acc", "loss"], ["maximize", "minimize"], 2)


def test_sweeps_own_app_describes_objectives_directions_and_tracking() -> None:
    config = OmegaConf.create({**_sweep_config(), "objective": ["test_acc", "val_loss"]})
    spec = describe_study(config)
    assert spec.metrics == ["test_acc", "val_loss"] and spec.directions == ["maximize", "minimize"]
    assert spec.tracking_uri and "val_acc" in spec.reported


def _sweep_config() -> dict:
    from tests.conftest import composed

    return composed()


@pytest.mark.parametrize(
    ("options", "spec", "message"),
    [
        ({"direction": ["minimize", "maximize"]}, StudySpec(metrics=["a"]), r"direction: 2 direction\(s\) \["),
        ({"direction": "down"}, None, "hydra.sweeper.direction: got 'down'"),
        ({"n_jobs": 0}, None, "hydra.sweeper.n_jobs: must be >= 1"),
        ({"sampler": "cmaes", "direction": ["minimize", "minimize"]}, None, "cmaes is single-objective"),
        ({"pruner": "median", "direction": ["minimize", "minimize"]}, None, "pruning needs a single objective"),
        ({"sampler": "tpe", "sampler_options": {"bogus": 1}}, None, "hydra.sweeper.sampler_options: tpe:"),
    ],
)
def test_plan_refuses_bad_settings(tmp_path: Path, options: dict, spec: StudySpec | None, message: str) -> None:
    describe = (lambda cfg: spec) if spec else None
    with pytest.raises(ConfigError, match=message):
        _sweeper(tmp_path, describe=describe, **options).plan(["x=choice(1,2)"])


def test_pruning_needs_an_objective_the_app_reports(tmp_path: Path) -> None:
    spec = StudySpec(metrics=["deepfool_margin"], reported=("val_acc", "val_loss"))
    with pytest.raises(ConfigError, match="deepfool_margin is not"):
        _sweeper(tmp_path, describe=lambda cfg: spec, pruner="median").plan(["x=choice(1,2)"])


def test_grid_bookkeeping_enqueues_only_missing_points(tmp_path: Path) -> None:
    sweeper = _sweeper(tmp_path, sampler="grid")
    plan = sweeper.plan(["x=choice(1,2,3)"])
    study = optuna.create_study()
    assert sweeper._todo(study, plan) == 3
    trial = study.ask()
    assert plan.space.sample(trial) == {"x": 1}
    study.tell(trial, 1.0)
    assert sweeper._todo(study, plan) == 2  # the two waiting points, nothing enqueued twice
    assert sum(t.state == TrialState.WAITING for t in study.trials) == 2


@pytest.mark.parametrize(
    ("job", "n", "state", "values", "reason"),
    [
        (_job(2.5), 1, TrialState.COMPLETE, [2.5], None),
        (_job((1, 2)), 2, TrialState.COMPLETE, [1.0, 2.0], None),
        (_job(None), 1, TrialState.FAIL, None, "TypeError: the task returned None"),
        (_job(float("nan")), 1, TrialState.FAIL, None, "ValueError: the task returned a non-finite objective"),
        (_job((1, 2)), 1, TrialState.FAIL, None, "ValueError: the task returned 2 value(s) for 1 objective(s)"),
        (_job(error=RuntimeError("boom")), 1, TrialState.FAIL, None, "RuntimeError: boom"),
        (_job(error=optuna.TrialPruned("at 3")), 1, TrialState.PRUNED, None, None),
    ],
)
def test_tell_records_each_kind_of_outcome(tmp_path: Path, job, n: int, state, values, reason) -> None:
    study = optuna.create_study(directions=["minimize"] * n)
    trial = study.ask()
    failure = _sweeper(tmp_path)._tell(study, trial, job, n)
    frozen = study.trials[0]
    assert frozen.state == state and frozen.values == values
    assert frozen.user_attrs["config"] == {"x": 1}
    assert failure == frozen.user_attrs.get("fail_reason")
    if reason:
        assert failure.startswith(reason)


def test_outcome_raises_with_reasons_when_every_trial_failed_or_the_rate_is_passed() -> None:
    outcome = Outcome()
    for failure in ("E: a", None, "E: a"):
        outcome.add(failure)
    outcome.raise_if_failed(1.0)  # some succeeded, no limit: fine
    with pytest.raises(SweepError, match=r"max_failure_rate: 2 of 3 trials failed, more than 50%: 2x E: a"):
        outcome.raise_if_failed(0.5)
    everything = Outcome()
    everything.add("E: b")
    with pytest.raises(SweepError, match=r"every trial failed \(1\): E: b"):
        everything.raise_if_failed(1.0)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_name_builds_and_runs_a_trial(name: str) -> None:
    """The contract over every sampler: built from its name, asked and told through the public API."""
    from sweep.study.search_space import parse_search_space

    study = optuna.create_study(sampler=build_sampler(name, {"seed": 0}))
    space = parse_search_space({}, ["x=interval(0, 1)", "n=choice(1, 2)"])
    for _ in range(3):
        trial = study.ask()
        point = space.sample(trial)
        study.tell(trial, point["x"] * point["n"])
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_every_pruner_name_builds_and_answers(name: str) -> None:
    options = {"threshold": {"upper": 1.0}, "percentile": {"percentile": 25.0}}.get(name, {})
    study = optuna.create_study(pruner=build_pruner(name, options))
    assert type(study.pruner).__name__ == PRUNERS[name]
    trial = study.ask()
    trial.report(2.0, step=1)  # above the threshold pruner's upper bound: the one pruner that must stop it now
    assert trial.should_prune() == (name == "threshold")


def test_sampler_option_nodes_name_real_optuna_arguments() -> None:
    """Each hydra/sweeper/sampler node's options are keyword arguments of the Optuna class it builds: fails loudly
    when Optuna renames one."""
    import dataclasses
    import inspect

    from hydra_plugins.sweep_optuna_sweeper.config import SAMPLER_NODES

    for name, node in SAMPLER_NODES.items():
        if name == "motpe":
            continue
        accepted = set(inspect.signature(getattr(optuna.samplers, SAMPLERS[name])).parameters)
        options = {f.name for f in dataclasses.fields(node)} - {"name"}
        assert options <= accepted, (name, options - accepted)


def derive(config, trial) -> dict:
    """A define-by-run hook: one more parameter, and an override derived from it."""
    width = trial.suggest_int("width", 1, 3)
    return {"model.hidden_dims": [width] * 2}


def test_a_define_by_run_hook_adds_parameters_and_derived_overrides(tmp_path: Path) -> None:
    sweeper = _sweeper(tmp_path, custom_search_space="tests.test_optuna_sweeper.derive")
    plan = sweeper.plan(["x=choice(1)"])
    trial = optuna.create_study().ask()
    overrides = sweeper._job_overrides(trial, plan, None, "host:1")
    width = trial.params["width"]
    assert overrides[:3] == ["x=1", f"width={width}", f"model.hidden_dims=[{width},{width}]"]
    assert overrides[3].startswith("++hydra.job.env_set.SWEEP_STUDY_STORAGE=")
