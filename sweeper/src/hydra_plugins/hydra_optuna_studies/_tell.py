"""Telling the study what a job came to: COMPLETE with its values, PRUNED, or FAIL with its reason, and the job's
config kept with the trial (so the storage alone can export a rerunnable config and draw every report).

A job whose process died under it (killed, out of memory) did not fail on its own: it is recorded FAIL with a reason
that says so, and its params are run again, once, as an orphan's are. A result the storage cannot take (it stayed
away longer than the sweep's patience) is kept on disk, in ``<sweep dir>/pending/``, and told by the next sweep of
the study before anything else.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import ListConfig, OmegaConf

from hydra_optuna_studies.contract import CONFIG_ATTR, FAIL_REASON_ATTR, RETRY_OF_ATTR, masked

from ._compose import masked_tree

log = logging.getLogger(__name__)
PENDING = "pending"  # the folder, in the sweep's, of results the storage could not take


class LostJob(Exception):
    """The job's process died under it (a worker killed, the machine out of memory): the trial did not fail on its
    own, and its params are run again once."""


@dataclass
class Told:
    number: int
    state: str  # COMPLETE | PRUNED | FAIL
    values: list[float] | None = None
    reason: str | None = None
    config: dict[str, Any] | None = None  # the job's config, as the study keeps it
    again: bool = False  # the job was lost: run its params again (once)


def outcome(number: int, ret: JobReturn, n_objectives: int) -> Told:
    """What the job's return means for trial ``number``, touching no storage."""
    import optuna

    config = recorded_config(ret) if ret.cfg is not None else None
    try:
        values = objective_values(job_result(ret), n_objectives)
    except optuna.TrialPruned as pruned:
        return Told(number, "PRUNED", reason=str(pruned), config=config)
    except Exception as error:  # noqa: BLE001 - any failure of one trial is recorded, and the sweep goes on
        reason = masked(f"{type(error).__name__}: {error}")[:2000]
        return Told(number, "FAIL", reason=reason, config=config, again=isinstance(error, LostJob))
    return Told(number, "COMPLETE", values=values, config=config)


def tell(study: Any, storage: Any, study_id: int, told: Told) -> None:
    """Record ``told`` in the study (the trial is this worker's, RUNNING); a lost job's params are enqueued again
    unless the trial was a retry already."""
    from optuna.trial import TrialState

    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, told.number)
    if told.config is not None:
        storage.set_trial_user_attr(trial_id, CONFIG_ATTR, told.config)
    if told.reason is not None and told.state == "FAIL":
        storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, told.reason)
    study.tell(told.number, told.values, state=TrialState[told.state])
    if told.state == "PRUNED":
        log.info("Trial %d pruned: %s", told.number, told.reason)
    elif told.state == "FAIL":
        log.warning("Trial %d failed: %s", told.number, told.reason)
    if told.again:
        trial = storage.get_trial(trial_id)
        if RETRY_OF_ATTR not in trial.user_attrs:
            study.enqueue_trial({**trial.system_attrs.get("fixed_params", {}), **trial.params},
                                user_attrs={RETRY_OF_ATTR: told.number})
            log.warning("Trial %d: its job was lost with its process; its params are run again", told.number)


def keep_pending(sweep_dir: Path, told: Told) -> Path:
    """Keep a result the storage could not take, for the next sweep of the study to tell."""
    folder = sweep_dir / PENDING
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{told.number}.json"
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(asdict(told)))
    partial.replace(path)
    return path


def tell_pending(study: Any, storage: Any, study_id: int, sweep_dir: Path) -> None:
    """Tell the results an earlier sweep kept while the storage was away (those still RUNNING in the study)."""
    from optuna.trial import TrialState

    for path in sorted((sweep_dir / PENDING).glob("*.json")):
        told = Told(**json.loads(path.read_text()))
        trial = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, told.number))
        if trial.state == TrialState.RUNNING:
            tell(study, storage, study_id, told)
            log.warning("Trial %d: its result, kept in %s while the storage was away, is recorded now",
                        told.number, path)
        path.unlink()


def recorded_config(ret: JobReturn) -> dict[str, Any]:
    """The job's config as the study keeps it: the app's keys resolved, and ``hydra.run`` as written (unresolved),
    so an exported config reruns in the app's own run folder; every password masked."""
    config = cast(dict[str, Any], OmegaConf.to_container(ret.cfg, resolve=True))
    if ret.hydra_cfg is not None:
        config["hydra"] = {"run": OmegaConf.to_container(ret.hydra_cfg.hydra.run, resolve=False)}
    return cast(dict[str, Any], masked_tree(config))


def job_result(ret: JobReturn) -> Any:
    """The task's return value, or its exception raised. ``JobReturn.return_value`` would do the same but first
    write "Error executing job with overrides" to stderr, for every failed and every pruned trial; the sweeper logs
    one line of its own instead. ``_return_value`` is a dataclass field of hydra-core 1.3 (pinned below 1.4;
    sweeper/tests/test_foreign_apps.py fails loudly if it moves)."""
    if ret.status == JobStatus.FAILED:
        raise ret._return_value
    return ret.return_value


def objective_values(value: Any, n_objectives: int) -> list[float]:
    """The job's return value as ``n_objectives`` finite floats; re-raises the job's own exception."""
    if isinstance(value, list | tuple | ListConfig):
        values = [float(v) for v in value]
    elif value is None:
        raise TypeError("the task returned None; a swept task returns a float, or one float per objective")
    else:
        values = [float(value)]
    if len(values) != n_objectives:
        raise ValueError(f"the task returned {len(values)} value(s) for {n_objectives} objective(s)")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"the task returned a non-finite objective {values}")
    return values
