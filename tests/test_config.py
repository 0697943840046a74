"""Every option of every config group composes and validates; bad values fail with the key and what is allowed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra_optuna_studies.errors import ConfigError

from sweep.cli import CONFIG_DIR
from sweep.config import GROUPS, SECTIONS, parse_config
from tests.conftest import composed, run_cli, trial_config

OPTIONS = {group: sorted(choices) for group, choices in GROUPS.items()}


@pytest.mark.parametrize(("group", "option"), [(g, o) for g, opts in OPTIONS.items() for o in opts])
def test_every_group_option_composes_to_its_dataclass_defaults(group: str, option: str) -> None:
    """The dataclass is the one source of each default: what Hydra composes for an option is exactly it."""
    cfg, resolved = trial_config(f"{group}={option}")
    assert getattr(cfg, group).name == option
    assert resolved[group] == dataclasses.asdict(GROUPS[group][option](name=option))


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_section_composes_to_its_dataclass_defaults(section: str) -> None:
    assert composed()[section] == dataclasses.asdict(SECTIONS[section]())


def test_no_group_keeps_a_yaml_copy_of_its_defaults() -> None:
    assert sorted(p.name for p in Path(CONFIG_DIR).iterdir()) == ["config.yaml", "experiment", "hydra"]


def test_groups_are_complete() -> None:
    assert OPTIONS == {
        "data": ["cifar10", "digits", "fashion_mnist", "mnist"],
        "model": ["cnn", "mlp", "resnet"],
        "optimizer": ["adam", "adamw", "rmsprop", "sgd"],
        "init": [
            "default", "heuristic", "kaiming_normal", "kaiming_uniform", "lecun_normal", "lecun_uniform", "normal",
            "xavier_normal", "xavier_uniform",
        ],
    }


@pytest.mark.parametrize(
    ("overrides", "key", "allowed"),
    [
        (["optimizer.lr=0"], "optimizer.lr", "> 0"),
        (["optimizer=adam", "optimizer.lr=-1e-3"], "optimizer.lr", "> 0"),
        (["train.batch_size=0"], "train.batch_size", ">= 1"),
        (["model.dropout=1.0"], "model.dropout", "[0, 1)"),
        (["model.dropout=-0.1"], "model.dropout", "[0, 1)"),
        (["optimizer.momentum=1.0"], "optimizer.momentum", "[0, 1)"),
        (["optimizer=rmsprop", "optimizer.momentum=-0.5"], "optimizer.momentum", "[0, 1)"),
        (["model.activation=gelu"], "model.activation", "relu, celu, swish"),
        (["train.device=tpu"], "train.device", "auto, cpu, cuda"),
        (["train.checkpoint=sometimes"], "train.checkpoint", "none, final, best"),
        (["deepfool.split=holdout"], "deepfool.split", "train, val, test"),
        (["objective=[accuracy]"], "objective", "val_acc"),
        (["objective=[val_acc,val_acc]"], "objective", "val_acc is named twice"),
        (["deepfool.enabled=false", "objective=[deepfool_margin]"], "objective", "deepfool.enabled=true"),
        (["init=normal", "init.std=0"], "init.std", "> 0"),
    ],
)
def test_bad_values_name_key_and_allowed(overrides: list[str], key: str, allowed: str) -> None:
    from sweep.train import resolve_device

    with pytest.raises(ConfigError) as raised:
        cfg = parse_config(composed(*overrides))
        resolve_device(cfg.train.device)
    message = str(raised.value)
    assert message.startswith(f"{key}:"), message
    assert allowed in message
    assert "\n" not in message


def test_exported_flat_config_validates_like_a_composed_one() -> None:
    """A config with no defaults list (as sweep-export writes it) parses to the same dataclasses."""
    flat = composed("model=cnn", "optimizer=adam")
    flat["optimizer"]["lr"] = "0.01"  # strings from YAML are converted by the schema
    cfg = parse_config(flat)
    assert cfg.model.channels == [32, 64] and cfg.optimizer.lr == 0.01


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model=transformer"], "error: model: no option 'transformer'; allowed: cnn, mlp, resnet"),
        (["optimizer.lr=-1"], "error: optimizer.lr: must be > 0 and finite, got -1.0"),
        (["train.batch_size=abc"], "error: train.batch_size: Value 'abc' of type 'str' could not be converted"),
        (["train.epochs=ten"], "error: train.epochs: Value 'ten' of type 'str' could not be converted to Integer"),
        (["+model.hiden_dims=[3]"], "error: model.hiden_dims: Key 'hiden_dims' not in 'MLPConfig'"),
        (["init.std=2"], "error: init.std: Key 'std' not in 'InitConfig'"),
        (["train.device=cuda"], "error: train.device: got 'cuda' but CUDA is not available here; allowed: auto, cpu"),
        (["data=mnist", "data.root=nowhere"], "error: data.root: mnist not found at "),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_leaves_no_run(tmp_path: Path, args: list[str], expected: str) -> None:
    import torch

    if "train.device=cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "mlflow" not in line.lower()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(expected)
    if (tmp_path / "mlflow.db").exists():
        from mlflow import MlflowClient

        client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert all(r.info.status != "FINISHED" for r in runs)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml")))
def test_every_experiment_preset_composes_and_validates(experiment: str) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from sweep.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={experiment}"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.params
    tree = OmegaConf.to_container(cfg)
    tree.pop("hydra")
    assert parse_config(tree).name == experiment


def test_slurm_launcher_config_composes() -> None:
    from hydra import compose, initialize_config_dir

    from sweep.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.gpus_per_node == 1
