"""The sweeper's planning, claims and telling, in process, on real Hydra configs and Optuna studies."""

from __future__ import annotations

import _thread
import gc
import itertools
import signal
import threading
import time
import weakref
from pathlib import Path

import optuna
import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from hydra_optuna_studies.contract import FAIL_REASON_ATTR, RETRY_OF_ATTR, WORKER_ATTR, StudySpec
from hydra_optuna_studies.errors import ConfigError, SweepError
from hydra_optuna_studies.instantiate import build
from hydra_optuna_studies.storage import StudyLock, open_storage
from hydra_plugins.hydra_optuna_studies._claims import DONE, WAIT, Claims
from hydra_plugins.hydra_optuna_studies._compose import ReusingConfigLoader
from hydra_plugins.hydra_optuna_studies._liveness import Heartbeat
from hydra_plugins.hydra_optuna_studies._loop import Outcome, TrialLoop
from hydra_plugins.hydra_optuna_studies._plan import make_plan, settings_of
from hydra_plugins.hydra_optuna_studies._sweeper import abandon_running
from hydra_plugins.hydra_optuna_studies._tell import LostJob, outcome, tell
from hydra_plugins.hydra_optuna_studies.config import PRUNERS, SAMPLERS, sampler_node
from omegaconf import OmegaConf
from optuna.trial import TrialState

from sweeper.tests.helpers import APPS, wait_until


def _plan(tmp_path: Path, arguments: list[str], describe=None, **options):
    """A plan as the sweeper makes it, on the sphere app's config and Hydra's own loader."""
    with initialize_config_dir(config_dir=str(APPS / "sphere" / "conf"), version_base=None):
        loader = GlobalHydra.instance().config_loader()
        config = loader.load_configuration("config", [f"hydra.sweep.dir={tmp_path}"], RunMode.MULTIRUN)
    settings = settings_of({"sampler": "tpe", **options})
    return make_plan(settings, config, arguments, ReusingConfigLoader(loader), describe, tmp_path)


def _job(value=None, error: BaseException | None = None) -> JobReturn:
    ret = JobReturn(cfg=OmegaConf.create({"x": 1}), status=JobStatus.FAILED if error else JobStatus.COMPLETED)
    ret._return_value = error if error else value
    return ret


def test_plan_of_a_foreign_app_minimizes_and_names_the_study_after_the_job(tmp_path: Path) -> None:
    plan = _plan(tmp_path, ["y=3"], params={"x": "choice(1, 2)"})
    assert plan.directions == ["minimize"] and plan.metrics is None
    assert plan.space.fixed == ["y=3"] and list(plan.space.params) == ["x"]
    assert plan.storage == str(tmp_path / "optuna.journal") and plan.n_trials == 20


def test_plan_of_an_app_that_describes_its_study(tmp_path: Path) -> None:
    spec = StudySpec(name="mine", metrics=["acc", "loss"], directions=["maximize", "minimize"])
    plan = _plan(tmp_path, ["x=choice(1,2)"], describe=lambda cfg: spec, sampler="grid")
    assert (plan.study_name, plan.metrics, plan.directions, plan.n_trials) == (
        "mine", ["acc", "loss"], ["maximize", "minimize"], 2)


@pytest.mark.parametrize(
    ("options", "spec", "message"),
    [
        ({"direction": ["minimize", "maximize"]}, StudySpec(metrics=["a"]), r"direction: 2 direction\(s\) \["),
        ({"direction": "down"}, None, "hydra.sweeper.direction: got 'down'"),
        ({"n_jobs": 0}, None, "hydra.sweeper.n_jobs: must be >= 1"),
        ({"workers": 0}, None, "hydra.sweeper.workers: must be >= 1"),
        ({"heartbeat_interval": 1e-6}, None, "hydra.sweeper.heartbeat_interval: must be between 1 and 86400"),
        ({"heartbeat_interval": float("inf")}, None, "hydra.sweeper.heartbeat_interval: must be between"),
        ({"n_trials": 10**17}, None, "hydra.sweeper.n_trials: must be between 1 and 1e9"),
        ({"sampler": "cmaes", "direction": ["minimize", "minimize"]}, None, "cmaes is single-objective"),
        ({"pruner": "median", "direction": ["minimize", "minimize"]}, None, "pruning needs a single objective"),
        ({"sampler_options": {"bogus": 1}}, None, "hydra.sweeper.sampler.bogus: TPESampler takes no option 'bogus'"),
        ({"sampler": {"_target_": "optuna.samplers.QMCSampler", "qmc_type": "bogus"}}, None,
         "hydra.sweeper.sampler: QMCSampler: "),
        ({"sampler": {"_target_": "nowhere.Sampler"}}, None,
         r"hydra.sweeper.sampler._target_: cannot import 'nowhere.Sampler': no module named 'nowhere'"),
        ({"pruner": {"_target_": "optuna.pruners.MedianPruner", "n_startup": 1}}, None,
         "hydra.sweeper.pruner.n_startup: MedianPruner takes no option 'n_startup'"),
        ({}, StudySpec(metrics=["acc", "acc"]), r"objective: names a metric twice \(acc, acc\)"),
    ],
)
def test_plan_refuses_bad_settings(tmp_path: Path, options: dict, spec: StudySpec | None, message: str) -> None:
    describe = (lambda cfg: spec) if spec else None
    with pytest.raises(ConfigError, match=message):
        _plan(tmp_path, ["x=choice(1,2)"], describe=describe, **options)


def test_the_app_checks_every_swept_value_before_any_trial(tmp_path: Path) -> None:
    """Each choice and both ends of each range reach the app's describe(): a value it refuses names itself."""
    seen = []

    def describe(config) -> StudySpec:
        seen.append(config.x)
        if config.x < 0:
            raise ConfigError("x", f"must be >= 0, got {config.x}")
        return StudySpec()

    plan = _plan(tmp_path, ["x=interval(0, 4)"], describe=describe)
    assert plan.space.params and seen[1:] == [0.0, 4.0]
    with pytest.raises(ConfigError, match=r"^x: the swept value -1.0 is refused: x: must be >= 0, got -1.0"):
        _plan(tmp_path, ["x=interval(-1, 4)"], describe=describe)


def test_pruning_needs_an_objective_the_app_reports(tmp_path: Path) -> None:
    spec = StudySpec(metrics=["deepfool_margin"], reported=("val_acc", "val_loss"))
    with pytest.raises(ConfigError, match="deepfool_margin is not"):
        _plan(tmp_path, ["x=choice(1,2)"], describe=lambda cfg: spec, pruner="median")


def test_a_grid_larger_than_a_million_points_needs_n_trials(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the grid has more than 1,000,000 points; set hydra.sweeper.n_trials"):
        _plan(tmp_path, ["x=range(0,100000000)"], sampler="grid")
    assert _plan(tmp_path, ["x=range(0,100000000)"], sampler="grid", n_trials=2).n_trials == 2


def _claims(tmp_path: Path, plan, study: optuna.Study) -> Claims:
    storage = open_storage(plan.storage, fresh=True)
    heartbeat = Heartbeat(storage, storage.get_study_id_from_name(plan.study_name), 30.0)
    return Claims(study, plan, storage, StudyLock(plan.storage, plan.study_name), heartbeat, lambda n, why: None)


def test_grid_claims_hand_out_each_point_once_and_then_wait_for_the_running(tmp_path: Path) -> None:
    """Three slots of one worker (several workers: tests/test_workers.py, with real processes)."""
    plan = _plan(tmp_path, ["x=choice(1,2,3)"], sampler="grid")
    study = optuna.create_study(study_name=plan.study_name, storage=open_storage(plan.storage, fresh=True))
    claims = _claims(tmp_path, plan, study)
    trials = [claims.claim() for _ in range(3)]
    assert sorted(plan.space.sample(t)["x"] for t in trials) == [1, 2, 3]
    assert all(t.user_attrs[WORKER_ATTR] for t in trials)
    assert claims.claim() is WAIT  # every point is taken and some still run (another worker's may be orphaned)
    for trial in trials:
        study.tell(trial, 1.0)
    assert claims.claim() is DONE and len(study.trials) == 3


def test_n_trials_counts_the_whole_study_and_a_rerun_replaces_failed_trials(tmp_path: Path) -> None:
    plan = _plan(tmp_path, ["x=interval(0, 1)"], n_trials=3)
    study = optuna.create_study(study_name=plan.study_name, storage=open_storage(plan.storage, fresh=True))
    claims = _claims(tmp_path, plan, study)
    claimed = [claims.claim() for _ in range(3)]
    assert all(isinstance(t, optuna.Trial) for t in claimed)
    study.tell(claimed[0], state=TrialState.FAIL)  # failed in this sweep: it counts, so a failing sweep ends
    assert claims.claim() is WAIT
    for trial in claimed[1:]:
        study.tell(trial, 1.0)
    assert claims.claim() is DONE
    rerun = _claims(tmp_path, plan, study)  # the command again: the failed trial is replaced
    assert isinstance(rerun.claim(), optuna.Trial) and len(study.trials) == 4


def test_an_orphan_is_failed_and_its_params_retried_once_by_another_worker(tmp_path: Path) -> None:
    plan = _plan(tmp_path, ["x=choice(1,2)"], sampler="grid")
    study = optuna.create_study(study_name=plan.study_name, storage=open_storage(plan.storage, fresh=True))
    dead = _claims(tmp_path, plan, study).claim()
    point = plan.space.sample(dead)
    dead.set_user_attr(WORKER_ATTR, "nowhere:1")  # a worker on another host, silent since long ago
    dead.set_user_attr("heartbeat", {"at": 0.0, "every": 1.0})
    live = _claims(tmp_path, plan, study)
    retry = live.claim()
    failed = study.trials[dead.number]
    assert failed.state == TrialState.FAIL and "no heartbeat from its worker (nowhere:1)" in failed.user_attrs[
        "fail_reason"]
    assert retry.user_attrs[RETRY_OF_ATTR] == dead.number and plan.space.sample(retry) == point
    retry.set_user_attr(WORKER_ATTR, "nowhere:1")  # the retry's worker dies too: it is not retried again
    retry.set_user_attr("heartbeat", {"at": 0.0, "every": 1.0})
    other = live.claim()
    assert plan.space.sample(other) != point and study.trials[retry.number].state == TrialState.FAIL
    study.tell(other, 1.0)
    assert live.claim() is DONE


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
        (_job(error=LostJob("its job's process died")), 1, TrialState.FAIL, None, "LostJob: its job's process died"),
    ],
)
def test_tell_records_each_kind_of_outcome(job, n: int, state, values, reason) -> None:
    study = optuna.create_study(directions=["minimize"] * n)
    trial = study.ask()
    trial.suggest_int("x", 1, 3)
    told = outcome(trial.number, job, n)
    tell(study, study._storage, study._study_id, told)
    frozen = study.trials[0]
    assert frozen.state == state and frozen.values == values and told.state == state.name
    assert frozen.user_attrs["config"] == {"x": 1}
    if reason:
        assert told.reason == frozen.user_attrs["fail_reason"] and told.reason.startswith(reason)
    retried = [t for t in study.trials if t.user_attrs.get("retry_of") == trial.number]
    assert len(retried) == (1 if "LostJob" in (reason or "") else 0)  # a lost job's params are run again, once
    if retried:
        assert retried[0].state == TrialState.WAITING and retried[0].system_attrs["fixed_params"] == trial.params


def test_outcome_raises_with_reasons_when_every_trial_failed_or_the_rate_is_passed() -> None:
    outcome = Outcome(max_failure_rate=None)
    for failure in ("E: a", None, "E: a"):
        outcome.add(failure)
    outcome.raise_if_failed()  # some succeeded, no limit: fine
    limited = Outcome(max_failure_rate=0.5, told=outcome.told, failures=outcome.failures)
    assert limited.exceeded
    with pytest.raises(SweepError, match=r"max_failure_rate: 2 of 3 trials failed, more than 50%: 2x E: a"):
        limited.raise_if_failed()
    everything = Outcome(max_failure_rate=None)
    everything.add("E: b")
    with pytest.raises(SweepError, match=r"every trial failed \(1\): E: b"):
        everything.raise_if_failed()
    Outcome(max_failure_rate=1.0, told=1, failures=["E: b"]).raise_if_failed()  # hydra-optuna-sweeper's meaning


class _HeldLauncher:
    """A launcher whose job runs until the test lets it go: a trial in flight when Ctrl-C comes."""

    def __init__(self) -> None:
        self.launched: list[list[list[str]]] = []
        self.release = threading.Event()

    def launch(self, job_overrides: list[list[str]], initial_job_idx: int) -> list[JobReturn]:
        self.launched.append(job_overrides)
        self.release.wait(timeout=60)
        return [_job(1.0) for _ in job_overrides]


def test_ctrl_c_while_a_slot_claims_leaves_no_trial_running(tmp_path: Path) -> None:
    """The race of CI's ctrl-c-joblib failure: Ctrl-C reaches the loop while another slot is between asking for its
    trial and beating for it. That trial must be failed with the one in flight, not left RUNNING."""
    plan = _plan(tmp_path, ["x=interval(0, 1)"], n_trials=4)
    study = optuna.create_study(study_name=plan.study_name, storage=open_storage(plan.storage, fresh=True))
    claims = _claims(tmp_path, plan, study)
    storage, study_id = claims._storage, claims._study_id
    calls = itertools.count(1)

    def claim():
        if next(calls) == 2:  # the second slot's claim
            wait_until(lambda: launcher.launched, 60)  # once the first slot's trial is in flight
            _thread.interrupt_main()  # Ctrl-C
            assert loop._interrupted.wait(60)  # the loop has it, and must not fail "what is in flight" ...
            time.sleep(0.5)  # ... in this window (where a loop without the claim lock did), before this claim is
        return claims.claim()

    def abandon(reason: str) -> None:
        abandon_running(study, storage, study_id, claims._heartbeat.running, reason)

    launcher = _HeldLauncher()
    loop = TrialLoop(launcher, 2, Outcome(None), claim, lambda trial: [f"x={trial.number}"], lambda t, r: None,
                     abandon)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # also where SIGINT came in ignored (nohup)
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run()
    finally:
        signal.signal(signal.SIGINT, previous)
        launcher.release.set()
    for thread in threading.enumerate():
        if thread.name.startswith("sweep-slot"):
            thread.join(timeout=30)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert {t.user_attrs[FAIL_REASON_ATTR] for t in trials} == {"interrupted"}
    assert len(launcher.launched) == 1  # the trial claimed as Ctrl-C came never ran


class _Model:
    pass


def test_a_told_failure_keeps_its_error_but_not_what_its_trial_held(tmp_path: Path) -> None:
    """A failed job's error comes back with the frames it passed through, which hold the trial's model (on a GPU,
    its memory); the sweep keeps every return to its end, so once told the error keeps its message, not its frames."""
    plan = _plan(tmp_path, ["x=interval(0, 1)"], n_trials=1)
    study = optuna.create_study(study_name=plan.study_name, storage=open_storage(plan.storage, fresh=True))
    claims = _claims(tmp_path, plan, study)
    held: list[weakref.ref] = []

    class FailingLauncher:
        def launch(self, job_overrides: list[list[str]], initial_job_idx: int) -> list[JobReturn]:
            def train() -> None:
                model = _Model()  # what the trial trained, referenced by its frame only
                held.append(weakref.ref(model))
                raise RuntimeError("diverged")
            try:
                train()
            except RuntimeError as error:
                return [_job(error=error)]
            raise AssertionError("unreachable")

    def tell(trial, ret) -> str:
        study.tell(trial, state=TrialState.FAIL)
        return "RuntimeError: diverged"

    loop = TrialLoop(FailingLauncher(), 1, Outcome(1.0), claims.claim, lambda trial: [], tell, lambda reason: None)
    loop.run()
    gc.collect()
    (number, ret), = loop.returns
    assert str(ret._return_value) == "diverged" and held and held[0]() is None


@pytest.mark.parametrize("name", sorted(set(SAMPLERS) - {"motpe", "grid"}))
def test_every_sampler_node_builds_and_runs_a_trial(name: str) -> None:
    """The contract over every sampler: built from its node, asked and told through the public API."""
    from hydra_optuna_studies.search_space import parse_search_space

    study = optuna.create_study(sampler=build({**sampler_node(name), "seed": 0}, "hydra.sweeper.sampler"))
    space = parse_search_space({}, ["x=interval(0, 1)", "n=choice(1, 2)"])
    for _ in range(3):
        trial = study.ask()
        point = space.sample(trial)
        study.tell(trial, point["x"] * point["n"])
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_every_pruner_name_builds_and_answers(name: str) -> None:
    options = {"threshold": {"upper": 1.0}, "percentile": {"percentile": 25.0}}.get(name, {})
    study = optuna.create_study(pruner=build({"_target_": PRUNERS[name], **options}, "hydra.sweeper.pruner"))
    assert f"{type(study.pruner).__module__.split('._')[0]}.{type(study.pruner).__name__}" == PRUNERS[name]
    trial = study.ask()
    trial.report(2.0, step=1)  # above the threshold pruner's upper bound: the one pruner that must stop it now
    assert trial.should_prune() == (name == "threshold")


def test_sampler_nodes_name_real_optuna_arguments() -> None:
    """Each hydra/sweeper/sampler node's options are keyword arguments of the Optuna class it names: fails loudly
    when Optuna renames one."""
    import inspect

    for name in set(SAMPLERS) - {"motpe"}:
        node = sampler_node(name)
        cls = getattr(optuna.samplers, node["_target_"].rsplit(".", 1)[-1])
        options = set(node) - {"_target_"}
        assert options <= set(inspect.signature(cls).parameters), (name, options)


def feasible(trial) -> list[float]:
    """A constraints_func for the test below: x <= 0.5 is feasible."""
    return [trial.params["x"] - 0.5]


def test_callable_and_nested_sampler_options_are_built() -> None:
    """constraints_func as a dotpath, independent_sampler and crossover as _target_ nodes (Optuna 5's options)."""
    gp = build({"_target_": "optuna.samplers.GPSampler", "seed": 1, "constraints_func": f"{__name__}.feasible",
                "independent_sampler": {"_target_": "optuna.samplers.RandomSampler", "seed": 2}}, "s")
    assert gp._constraints_func is feasible and isinstance(gp._independent_sampler, optuna.samplers.RandomSampler)
    nsga = build({"_target_": "optuna.samplers.NSGAIISampler",
                  "crossover": {"_target_": "optuna.samplers.nsgaii.SBXCrossover", "eta": 10.0}}, "s")
    assert type(nsga._child_generation_strategy._crossover).__name__ == "SBXCrossover"


def derive(config, trial) -> dict:
    """A define-by-run hook: one more parameter, and an override derived from it."""
    width = trial.suggest_int("+width", 1, 3)
    return {"+hidden": [width] * 2}


def unknown_key(config, trial) -> None:
    trial.suggest_int("width", 1, 3)  # the sphere app has no key width (and it is not added with +)


def raises(config, trial) -> None:
    raise KeyError("no such key")


def returns_a_list(config, trial) -> list:
    return ["x=1"]


def test_a_define_by_run_hook_is_tried_before_the_sweep(tmp_path: Path) -> None:
    assert _plan(tmp_path, ["x=choice(1)"], custom_search_space=f"{__name__}.derive").hook is derive
    for hook, message in [("raises", "raised KeyError: 'no such key'"),
                          ("returns_a_list", "must return None or a mapping of overrides, got list"),
                          ("nowhere", "has no attribute 'nowhere'"),
                          ("unknown_key", r"gives overrides the config cannot take \(width=[123]\): .*width")]:
        with pytest.raises(ConfigError, match=f"^hydra.sweeper.custom_search_space: .*{message}"):
            _plan(tmp_path, ["x=choice(1)"], custom_search_space=f"{__name__}.{hook}")
