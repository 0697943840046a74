"""The trial config: what Hydra composes from ``conf/``, checked against the dataclasses beside the code.

The dataclasses are the one source of every default: each group option (``optimizer=sgd``) and each section
(``train``) is its dataclass, registered with Hydra's ConfigStore below; ``conf/config.yaml`` only selects them and
presets only override. Each config group names its dataclass by its ``name`` key (``model.name: mlp`` ->
``MLPConfig``), so a config exported as one flat YAML file validates exactly like one composed from groups.
Checking merges the node into its dataclass (unknown keys and wrong types fail) and then builds the dataclass
(ranges fail in ``__post_init__``), before any data is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, cast

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sweep.data import DATASETS, DataConfig
from sweep.errors import ConfigError, check, check_choice
from sweep.init import INIT_SCHEMES, InitConfig
from sweep.measures import MEASURE_METRICS, MEASURES, measure_of
from sweep.models import MODELS, ModelConfig
from sweep.objectives import EPOCH_METRICS
from sweep.optimizers import OPTIMIZERS, OptimizerConfig
from sweep.tracking import MlflowConfig
from sweep.train import TrainConfig

METRICS = (*EPOCH_METRICS, *MEASURE_METRICS, "train_seconds", "epochs")



# For each group, which dataclass each ``name`` selects.
GROUPS: dict[str, dict[str, type]] = {
    "data": dict.fromkeys(DATASETS, DataConfig),
    "model": MODELS,
    "optimizer": OPTIMIZERS,
    "init": INIT_SCHEMES,
}
SECTIONS: dict[str, type] = {
    "train": TrainConfig,
    "mlflow": MlflowConfig,
    **{name: measure.config for name, measure in MEASURES.items()},  # deepfool, deepfool_test, ...
}


@dataclass
class TrialConfig:
    name: str
    objective: list[str]
    data: DataConfig
    model: ModelConfig
    optimizer: OptimizerConfig
    init: InitConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    measures: dict[str, Any] = field(default_factory=dict)  # each measure's options, by name (sweep.measures)

    def __post_init__(self) -> None:
        valid_name = bool(self.name) and "/" not in self.name
        check(valid_name, "name", f"must be a non-empty name without '/', got {self.name!r}")
        check(len(self.objective) >= 1, "objective", f"needs at least one metric, allowed: {', '.join(METRICS)}")
        for metric in self.objective:
            check_choice(metric, "objective", METRICS)
            measure = measure_of(metric)
            if measure is not None:
                check(self.measures[measure.name].enabled, "objective", f"{metric} needs {measure.name}.enabled=true")


def plain(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """A config as plain, resolved Python containers (a dict stays a dict)."""
    if isinstance(cfg, DictConfig):
        return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    return dict(cfg)


def _typed(cls: type, node: Any, key: str) -> Any:
    """``node`` merged into dataclass ``cls`` and built, with any problem as a one-line ConfigError."""
    if not isinstance(node, dict | DictConfig):
        raise ConfigError(key, f"must be a mapping of {cls.__name__} fields, got {node!r}")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), node))
    except OmegaConfBaseException as error:
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        sub = getattr(error, "full_key", None)
        message = str(getattr(error, "msg", error)).splitlines()[0]
        raise ConfigError(f"{key}.{sub}" if sub else key, message) from None


def parse_config(cfg: DictConfig | dict[str, Any]) -> TrialConfig:
    """The validated :class:`TrialConfig` of a composed (or exported) config; raises :class:`ConfigError`."""
    tree = plain(cfg)
    tree.pop("hydra", None)
    known = {f.name for f in fields(TrialConfig)} - {"measures"} | set(SECTIONS)
    for key in tree:
        check(key in known, key, f"unknown key; allowed top-level keys: {', '.join(sorted(known))}")
    for key in ("name", "objective", *GROUPS):
        check(key in tree, key, "missing")
    parsed: dict[str, Any] = {"name": tree["name"]}
    objective = tree["objective"]
    parsed["objective"] = [objective] if isinstance(objective, str) else list(objective)
    for group, choices in GROUPS.items():
        node = tree[group]
        name = node.get("name") if isinstance(node, dict) else None
        check_choice(name, f"{group}.name", tuple(choices))
        parsed[group] = _typed(choices[str(name)], node, group)
    parsed["measures"] = {}
    for section, cls in SECTIONS.items():
        options = _typed(cls, tree.get(section, {}), section)
        (parsed["measures"] if section in MEASURES else parsed)[section] = options
    return TrialConfig(**parsed)


def _register() -> None:
    """Each group option and section as a Hydra config, made from its dataclass's defaults."""
    store = ConfigStore.instance()
    for group, choices in GROUPS.items():
        for name, cls in choices.items():
            store.store(group=group, name=name, node=cls(name=name), provider="sweep")
    for section, cls in SECTIONS.items():
        store.store(group=section, name="default", node=cls(), provider="sweep")


_register()
