"""``sweep-export``: the best trial(s) of a sweep as YAML configs that rerun and reproduce them.

    sweep-export --storage multirun/quickstart/optuna.journal --out best/
    sweep-export --storage sqlite:///study.db --study s --out top/ --top 3
    sweep-export --mlflow sqlite:///mlflow.db --experiment quickstart --out best/
    sweep-export --mlflow sqlite:///mlflow.db --run-id 0123abcd --out run/
    sweep --config-dir best --config-name best          # rerun: same metrics on CPU

Writes ``best.yaml`` (or ``top-1.yaml`` ... with ``--top``; ``pareto-1.yaml`` ... for a multi-objective study;
``run.yaml`` for ``--run-id``) and ``summary.json`` naming the trial, its values and params behind each file.
Each YAML is the trial's full composed config (the sweeper keeps its own bookkeeping out of it), so a rerun is an
ordinary single run of the app.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.entities import Run

from hydra_optuna_studies.contract import CONFIG_ARTIFACT, CONFIG_ATTR, FINAL_PREFIX, STATE_TAG, masked
from hydra_optuna_studies.errors import SweepError


@dataclass
class Exported:
    """One config to write, and what it came from."""

    config: dict[str, Any]
    trial: int | str  # Optuna trial number, or MLflow run id
    values: dict[str, float | None]  # None: the run logged no such metric
    params: dict[str, Any]


def rerunnable(config: dict[str, Any]) -> dict[str, Any]:
    """The trial's config as the app reads it (the sweeper never writes into it), with the app's own ``hydra.run``
    where the trial recorded it, so that a rerun writes to the app's usual run folder; the rest of ``hydra`` goes."""
    clean = json.loads(json.dumps(config))
    run = (clean.pop("hydra", None) or {}).get("run")
    return {**clean, "hydra": {"run": run}} if run else clean


def _ranked(items: list, values: list[list[float]], directions: list[str]) -> list:
    sign = [-1.0 if d == "maximize" else 1.0 for d in directions]
    order = sorted(range(len(items)), key=lambda i: [s * v for s, v in zip(sign, values[i], strict=True)])
    return [items[i] for i in order]


def from_study(
    storage: str, study_name: str | None, top: int | None
) -> tuple[list[Exported], list[str], list[str], str]:
    """Best, top-k or Pareto-front trials of an Optuna study (the storage's only one when ``study_name`` is None),
    with their stored configs, the objectives, their directions and the study's name."""
    from optuna.trial import TrialState

    from hydra_optuna_studies.results import best_trials, objective_names
    from hydra_optuna_studies.storage import load_study

    study = load_study(storage, study_name)
    metrics = objective_names(study)
    directions = [d.name.lower() for d in study.directions]
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if CONFIG_ATTR in t.user_attrs]
    if not complete:
        raise SweepError(f"--study: {study.study_name!r} has no complete trial with a recorded config")
    if len(directions) > 1 and top is None:
        chosen = [t for t in best_trials(study) if CONFIG_ATTR in t.user_attrs]
    else:
        chosen = _ranked(complete, [t.values for t in complete], directions)[: top or 1]
    exported = [
        Exported(rerunnable(t.user_attrs[CONFIG_ATTR]), t.number, dict(zip(metrics, t.values, strict=True)), t.params)
        for t in chosen
    ]
    return exported, metrics, directions, study.study_name


def from_mlflow(
    uri: str, experiment: str | None, run_id: str | None, top: int | None
) -> tuple[list[Exported], list[str], list[str]]:
    """Best or top-k trial runs of a sweep's MLflow experiment, or one run, with their logged configs. The objectives
    and their directions are the sweep run's (its ``metrics`` and ``directions`` params)."""
    import yaml
    from mlflow import MlflowClient

    client = MlflowClient(uri)

    def config_of(run: Run) -> dict[str, Any]:
        try:
            text = client.download_artifacts(run.info.run_id, CONFIG_ARTIFACT)
        except Exception:  # noqa: BLE001 - whatever MLflow raises, the run logged no config to rerun
            raise SweepError(f"run {run.info.run_id} logged no {CONFIG_ARTIFACT} to export") from None
        return yaml.safe_load(Path(text).read_text())

    def objectives_of(sweep_run: Run) -> tuple[list[str], list[str]]:
        params = sweep_run.data.params
        return ast.literal_eval(params.get("metrics", "[]")), ast.literal_eval(params.get("directions", "[]"))

    def finals(run: Run, metrics: list[str]) -> dict[str, float | None]:
        return {m: run.data.metrics.get(f"{FINAL_PREFIX}{m}") for m in metrics}

    if run_id:
        try:
            run = client.get_run(run_id)
        except Exception as error:  # noqa: BLE001 - any lookup failure is "no such run" to the user
            raise SweepError(f"--run-id: no run {run_id!r} in {masked(uri)}: {str(error).splitlines()[0]}") from None
        parent = run.data.tags.get("mlflow.parentRunId")
        metrics, directions = objectives_of(client.get_run(parent)) if parent else ([], [])
        return [Exported(rerunnable(config_of(run)), run_id, finals(run, metrics), {})], metrics, directions
    assert experiment is not None  # main() asks for --experiment or --run-id
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SweepError(f"--experiment: no experiment {experiment!r} in {masked(uri)}")
    sweeps = client.search_runs([found.experiment_id], "tags.`sweep.role` = 'sweep'",
                                order_by=["attributes.start_time DESC"], max_results=1)
    if not sweeps:
        raise SweepError(f"--experiment: {experiment!r} has no sweep run")
    metrics, directions = objectives_of(sweeps[0])
    query = f"tags.`{STATE_TAG}` = 'COMPLETE' and tags.`mlflow.parentRunId` = '{sweeps[0].info.run_id}'"
    runs = [r for r in client.search_runs([found.experiment_id], query, max_results=50000)
            if all(f"{FINAL_PREFIX}{m}" in r.data.metrics for m in metrics)]
    if not runs or not metrics:
        raise SweepError(f"--experiment: {experiment!r} has no complete trial run")
    values = [[r.data.metrics[f"{FINAL_PREFIX}{m}"] for m in metrics] for r in runs]
    chosen = _ranked(runs, values, directions)[: top or 1]
    exported = [Exported(rerunnable(config_of(r)), r.info.run_id, finals(r, metrics), {}) for r in chosen]
    return exported, metrics, directions


def write(exported: list[Exported], out: Path, names: list[str], source: dict[str, Any]) -> list[Path]:
    """Write each config as YAML under ``out`` (with a header saying how to rerun it) and ``summary.json``."""
    from omegaconf import OmegaConf

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for item, name in zip(exported, names, strict=True):
        header = (f"# Exported by sweep-export: trial {item.trial}, {item.values}\n"
                  f"# Rerun it with the app: --config-dir {out} --config-name {name}\n")
        path = out / f"{name}.yaml"
        path.write_text(header + OmegaConf.to_yaml(OmegaConf.create(item.config)))
        paths.append(path)
    summary = {**source, "exported": [
        {"file": p.name, "trial": e.trial, "values": e.values, "params": e.params}
        for p, e in zip(paths, exported, strict=True)
    ]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return paths


def file_names(count: int, multi_objective: bool, top: int | None, run: bool) -> list[str]:
    if run:
        return ["run"]
    if multi_objective and top is None:
        return [f"pareto-{i}" for i in range(1, count + 1)]
    if top is None:
        return ["best"]
    return [f"top-{i}" for i in range(1, count + 1)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="sweep-export", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export the best trial(s) of a sweep as YAML configs that rerun and reproduce them.",
        epilog="examples:\n"
               "  sweep-export --storage multirun/quickstart/optuna.journal --out best/          best.yaml\n"
               "  sweep-export --storage sqlite:///study.db --study s --out top/ --top 3        top-1..3.yaml\n"
               "  sweep-export --mlflow sqlite:///mlflow.db --experiment quickstart --out best/\n"
               "  sweep-export --mlflow sqlite:///mlflow.db --run-id 0123abcd --out run/          run.yaml\n"
               "  sweep --config-dir best --config-name best                                    rerun it\n"
               "A multi-objective study exports its Pareto front (pareto-1.yaml, ...); summary.json names the trial "
               "behind each file.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--storage", help="Optuna storage: DB URL or *.journal path")
    source.add_argument("--mlflow", help="MLflow tracking URI")
    parser.add_argument("--study", help="study name (with --storage); may be left out when it holds one study")
    parser.add_argument("--experiment", help="MLflow experiment of the sweep (with --mlflow)")
    parser.add_argument("--run-id", help="one MLflow run to export (with --mlflow)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the YAML files and summary.json")
    parser.add_argument("--top", type=int, help="export the K best trials as top-1.yaml ... top-K.yaml")
    args = parser.parse_args(argv)
    try:
        if args.top is not None and args.top < 1:
            raise SweepError(f"--top: must be >= 1, got {args.top}")
        if args.storage:
            exported, metrics, directions, study_name = from_study(args.storage, args.study, args.top)
            origin = {"storage": masked(args.storage), "study": study_name}
        else:
            if not (args.experiment or args.run_id):
                raise SweepError("--experiment or --run-id: one is required with --mlflow")
            if args.mlflow.startswith("sqlite:///") and not Path(args.mlflow.removeprefix("sqlite:///")).is_file():
                raise SweepError(f"--mlflow: no MLflow store at {args.mlflow.removeprefix('sqlite:///')}")
            exported, metrics, directions = from_mlflow(args.mlflow, args.experiment, args.run_id, args.top)
            origin = {"mlflow": masked(args.mlflow), "experiment": args.experiment, "run_id": args.run_id}
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    names = file_names(len(exported), len(directions) > 1, args.top, bool(args.run_id))
    try:
        paths = write(exported, args.out, names, {**origin, "metrics": metrics, "directions": directions})
    except OSError as error:
        print(f"error: --out: cannot write to {args.out}: {error.strerror or error}", file=sys.stderr)
        raise SystemExit(2) from None
    for path, item in zip(paths, exported, strict=True):
        print(f"{path}  (trial {item.trial}: {item.values})")


if __name__ == "__main__":
    main()
