"""The ``sweep`` command: Hydra composes a trial from ``conf/`` and this task function runs it.

``sweep`` runs one trial; ``sweep -m`` hands the same task to the configured Hydra sweeper. The task returns
the metric(s) named by ``objective``, so any sweeper can optimise them. For sweep's own Optuna sweeper the task also
describes its study (:func:`describe_study`, through :mod:`sweep.contract`): the config is checked once before any
trial, the objectives keep their names and directions, and the trials' MLflow runs nest under one run of the sweep.
A user error (bad value, missing data, no GPU) prints one line and exits 2 in a single run; inside a sweep it fails
that trial only.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from hydra_optuna_studies.contract import StudySpec, TrialLink, current_link, describes_study, masked
from hydra_optuna_studies.errors import SweepError
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

if TYPE_CHECKING:
    from sweep.trial import TrialJob

import sweep.config  # noqa: F401 - registers the trial's config groups with Hydra before it composes

CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")  # ships inside the package: any install finds it


def check_measurable(metrics: dict[str, float], objective: list[str]) -> None:
    """A sweep cannot optimise a margin that could not be measured (NaN): the trial is recorded as failed, saying
    which objective and on how many samples the measure rested."""
    for name in objective:
        if metrics[name] != metrics[name]:
            counted = name.removesuffix("_margin") + "_counted"
            rest = f" ({metrics[counted]:.0f} samples counted)" if counted in metrics else ""
            raise SweepError(f"{name}: not measurable{rest}; the trial has no value to optimise")


def objective_values(metrics: dict[str, float], objective: list[str]) -> float | tuple[float, ...]:
    """The value(s) a sweeper optimises: a float for one objective, a tuple for several."""
    values = tuple(float(metrics[name]) for name in objective)
    return values[0] if len(values) == 1 else values


def summary_line(metrics: dict[str, float], objective: list[str], path: Path) -> str:
    """What a single run ends with: its objective(s), test accuracy and the DeepFool margin, and where the rest is."""
    from sweep.measures import MEASURES

    shown = dict.fromkeys([*objective, "test_acc", *(m.headline for m in MEASURES.values())])
    values = [f"{k} {metrics[k]:.4f}" if metrics[k] == metrics[k] else f"{k} n/m" for k in shown if k in metrics]
    return f"{', '.join(values)}; all metrics: {path}"


def prepare(cfg: DictConfig) -> TrialJob:
    """The trial of the Hydra job running now, with what it needs from the job's context (its folder, its link to
    the sweep's trial, its run folder for reruns): called by the task, and by ``hydra/launcher=stacked`` for each job
    of a batch before it trains them together. Raises ConfigError for a bad value."""
    from sweep.config import parse_config, plain
    from sweep.trial import TrialJob

    hc = HydraConfig.get()
    trial_cfg = parse_config(cfg)
    link = current_link()
    return TrialJob(cfg=trial_cfg, resolved=plain(cfg), output_dir=Path(hc.runtime.output_dir),
                    run_name=_run_name(link, trial_cfg.mlflow.run_name), link=link,
                    hydra_run=cast(dict, OmegaConf.to_container(hc.run, resolve=False)))


def _run_name(link: TrialLink | None, template: str | None) -> str:
    """The MLflow run's name: ``mlflow.run_name`` rendered from the config when set, else the trial's number."""
    hc = HydraConfig.get()
    if template:
        return template
    if link is not None:
        return f"trial_{link.trial_number}"
    if hc.mode == RunMode.MULTIRUN:
        return f"job_{hc.job.num}"
    return Path(hc.runtime.output_dir).name


def sweep_result(job: TrialJob, metrics: dict[str, float]) -> float | tuple[float, ...]:
    """What a trial of a sweep returns to the sweeper: its objective value(s); SweepError when one could not be
    measured (the trial is recorded as failed)."""
    check_measurable(metrics, job.cfg.objective)
    return objective_values(metrics, job.cfg.objective)


def describe_study(cfg: DictConfig) -> StudySpec:
    """What the Optuna sweeper learns of a sweep of this app, before the study is opened: its check of the config
    (called for the command's config and for each swept value), the objectives, what its tables show, its report.

    Raises :class:`~hydra_optuna_studies.errors.SweepError` for a setting that would fail every trial (a bad value,
    a GPU that is not there, data that are missing), so no trial runs with it.
    """
    from dataclasses import asdict

    from sweep.config import missing_data, parse_config
    from sweep.measures import MEASURES
    from sweep.objectives import EPOCH_METRICS, default_direction
    from sweep.tracking import tracking_uri

    trial = parse_config(cfg)
    if trial.train.device not in ("auto", "cpu"):  # only a named GPU can be missing; asking torch costs seconds
        from sweep.train import resolve_device

        resolve_device(trial.train.device)
    if (problem := missing_data(trial.data)) and not trial.data.download:
        raise SweepError(problem)
    return StudySpec(
        name=trial.name,
        metrics=trial.objective,
        directions=[default_direction(m) for m in trial.objective],
        reported=EPOCH_METRICS,
        tracking_uri=tracking_uri(trial.mlflow.tracking_uri) if trial.mlflow.enabled else None,
        experiment=trial.mlflow.experiment,
        shown=("test_acc", *(m.headline for m in MEASURES.values())),
        beside={m.headline: m.beside[0] for m in MEASURES.values() if m.beside},
        curves=tuple(dict.fromkeys([*(m for m in trial.objective if m in EPOCH_METRICS), *CURVES])),
        report=asdict(trial.report),
    )


CURVES = ("val_acc", "test_acc", "train_loss", "val_loss")  # per-epoch metrics a sweep's views draw as curves


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
@describes_study(describe_study)
def task(cfg: DictConfig) -> float | tuple[float, ...]:
    from hydra_optuna_studies.tracking import check_store, quiet_tracking

    from sweep.tracking import tracking_uri
    from sweep.trial import run_trial

    try:
        job = prepare(cfg)
        if job.link is None and job.cfg.mlflow.enabled:  # a sweep checked the store once for all its trials
            check_store(tracking_uri(job.cfg.mlflow.tracking_uri))
        with quiet_tracking():
            metrics = run_trial(job)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return sweep_result(job, metrics)
        print(summary_line(metrics, job.cfg.objective, job.output_dir / "metrics.json"))
    except SweepError as error:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper records this trial as failed and goes on
        _remove_run_folder(Path(HydraConfig.get().runtime.output_dir), f"{HydraConfig.get().job.name}.log")
        print(f"error: {masked(str(error))}", file=sys.stderr)
        raise SystemExit(2) from None
    return objective_values(metrics, job.cfg.objective)


def _remove_run_folder(folder: Path, log_name: str) -> None:
    """Take back the output folder Hydra made for a run that bad input stopped before it began: only what Hydra
    wrote there (``.hydra/``, the job's log), and the folder and its parents once empty (never a user's own file)."""
    shutil.rmtree(folder / ".hydra", ignore_errors=True)
    (folder / log_name).unlink(missing_ok=True)
    for empty in (folder, folder.parent, folder.parent.parent):
        try:
            empty.rmdir()  # only ever removes an empty folder
        except OSError:
            return


def one_line(error: BaseException) -> str:
    """A Hydra or OmegaConf error as the single line the user needs: the key and what is allowed."""
    if isinstance(error, MissingConfigException) and error.options and error.missing_cfg_file:
        group, _, option = error.missing_cfg_file.rpartition("/")
        return f"{group}: no option {option!r}; allowed: {', '.join(error.options)}"
    if isinstance(error, OverrideParseException):
        reason = re.split(r"\s*See https://", str(error))[0]
        return f"{error.override}: cannot parse ({reason}); see Hydra's override grammar"
    cause = error.__cause__
    if isinstance(cause, SweepError):  # a plugin's own check, wrapped by Hydra's instantiation of the plugin
        return str(cause)
    if getattr(cause, "full_key", None):  # a wrong type or an unknown key in a typed config
        return f"{cause.full_key}: {str(cause).splitlines()[0]}"  # type: ignore[union-attr]
    text = str(error).split("Config search path")[0]
    parts = [line.strip() for line in text.splitlines() if line.strip()]
    if isinstance(cause, OmegaConfBaseException) and str(cause).splitlines():
        parts.append(str(cause).splitlines()[0])
    return " ".join(parts)


def main() -> None:
    """Entry point of ``sweep``: Hydra's errors come back as one line and exit code 2."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let composition errors reach us instead of Hydra's printer
    try:
        task()
    except (HydraException, OmegaConfBaseException, SweepError) as error:
        print(f"error: {masked(one_line(error))}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as error:  # Hydra's own refusal of two modes at once, e.g. `-m ... --cfg job`
        if not str(error).startswith("Only one of --run, --multirun"):
            raise
        print(f"error: {error}; drop -m to print the config a sweep's trials get (`sweep ... --cfg job`)",
              file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted (a sweep resumes where it stopped when rerun)", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
