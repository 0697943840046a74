"""The trial's config schema: one dataclass per group option and section, in pipeline order, and its checks.

The dataclasses are the one source of every default: each group option (``optimizer=sgd``) and each section
(``train``) is its dataclass, registered with Hydra's ConfigStore below; ``conf/config.yaml`` only selects them and
presets only override. They live here rather than beside the code they configure so that this module imports no
torch: the command line, ``--help`` and a sweep's planning read them without loading the trial's code (the code
modules import their config from here; each measure's options live in its own module, torch-free too). Each
config group names its dataclass by its ``name`` key (``model.name: mlp`` -> ``MLPConfig``), so a config exported
as one flat YAML file validates exactly like one composed from groups.
Checking merges the node into its dataclass (unknown keys and wrong types fail) and then builds the dataclass
(ranges fail in ``__post_init__``), before any data is loaded.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast

from hydra.core.config_store import ConfigStore
from hydra_optuna_studies.errors import ConfigError, check, check_choice
from hydra_optuna_studies.panels import ReportSpec
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sweep.measures import MEASURE_METRICS, MEASURES, measure_of
from sweep.objectives import EPOCH_METRICS, FINAL_METRICS
from sweep.tracking import MlflowConfig

# ----------------------------------------------------------------------------------------------------------- data
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")
PREPROCESS = ("standardize", "pixels")


@dataclass
class DataConfig:
    name: str = "digits"
    root: str = "data"  # torchvision data sets live under this folder, in torchvision's own layout
    download: bool = False  # fetch a missing torchvision data set (needs network); never done silently
    # Share of the training set held out for validation (fixed split, seed 0); 0: no validation split, the model
    # trains on every training example and val_* metrics do not exist.
    val_fraction: float = 0.1
    train_subset: int | None = None  # keep only the first N (pre-shuffled) training examples
    # What the network sees. standardize: (x - mean) / std with the training set's per-channel statistics, as the
    # model's first layer; pixels: the pixel values scaled into [0, 1] (x / 255), as the studies fed them. DeepFool
    # measures in that [0, 1] input space either way.
    preprocess: str = "standardize"

    def __post_init__(self) -> None:
        check_choice(self.name, "data.name", DATASETS)
        check(0.0 <= self.val_fraction < 1.0, "data.val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        check_choice(self.preprocess, "data.preprocess", PREPROCESS)
        check(
            self.train_subset is None or self.train_subset >= 1,
            "data.train_subset",
            f"must be a positive integer or null, got {self.train_subset}",
        )


# torchvision's folder of each data set under data.root (digits ships with scikit-learn).
TORCHVISION_DIRS = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw", "cifar10": "cifar-10-batches-py"}


def missing_data(cfg: DataConfig) -> str | None:
    """The one-line error for a data set whose files are not under data.root, or None; reads and fetches nothing."""
    if cfg.name not in TORCHVISION_DIRS:
        return None
    folder = Path(cfg.root) / TORCHVISION_DIRS[cfg.name]
    if folder.is_dir() and any(folder.iterdir()):
        return None
    return (f"data.root: {cfg.name} not found at {folder.resolve()}; "
            "set data.download=true to fetch it (needs network), or point data.root at a copy")


# ---------------------------------------------------------------------------------------------------------- model
ACTIVATIONS = ("relu", "celu", "swish", "silu", "tanh", "sigmoid", "leaky_relu")  # built by sweep.models


def per_layer(value: Any, layers: int) -> list[Any]:
    """A per-hidden-layer setting as one value per layer: a single value applies to every layer."""
    return list(value) if isinstance(value, list | tuple) else [value] * layers


def _check_per_layer(key: str, value: Any, layers: int, ok: Any, allowed: str) -> None:
    """``value`` is one allowed value, or a list with one allowed value per hidden layer."""
    values = per_layer(value, layers)
    if isinstance(value, list | tuple):
        check(len(values) == layers, key, f"a list needs one entry per hidden layer ({layers}), got {len(values)}")
    for item in values:
        check(ok(item), key, f"got {item!r}, allowed: {allowed}")


def _is_probability(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value < 1.0


def _check_head(activation: Any, dropout: Any, input_dropout: float, hidden_dims: list[int]) -> None:
    """Checks shared by every model's fully connected layers."""
    check(all(h >= 1 for h in hidden_dims), "model.hidden_dims", f"sizes must be >= 1, got {hidden_dims}")
    _check_per_layer("model.activation", activation, len(hidden_dims), lambda a: a in ACTIVATIONS,
                     ", ".join(ACTIVATIONS))
    _check_per_layer("model.dropout", dropout, len(hidden_dims), _is_probability, "drop probabilities in [0, 1)")
    check(_is_probability(input_dropout), "model.input_dropout", f"must be in [0, 1), got {input_dropout}")


@dataclass
class MLPConfig:
    name: str = "mlp"
    hidden_dims: list[int] = field(default_factory=lambda: [128])
    activation: Any = "relu"  # one name for every hidden layer, or a list with one per layer: [relu, celu, swish]
    dropout: Any = 0.0  # drop probability after each hidden layer: one value, or a list with one per layer
    input_dropout: float = 0.0  # drop probability on the input pixels
    # The studies' spelling: keep probabilities for [input, hidden 1, hidden 2, ...], e.g. [1.0, 0.8, 0.8, 0.9];
    # sets input_dropout and dropout (which must then be left at 0).
    keep_prob: list[float] | None = None

    def __post_init__(self) -> None:
        _apply_keep_prob(self)
        _check_head(self.activation, self.dropout, self.input_dropout, self.hidden_dims)


def _apply_keep_prob(cfg: MLPConfig) -> None:
    if cfg.keep_prob is None:
        return
    keep = list(cfg.keep_prob)
    layers = len(cfg.hidden_dims) + 1
    check(len(keep) == layers, "model.keep_prob", f"needs {layers} values (input and each hidden layer), got {keep}")
    check(all(0.0 < k <= 1.0 for k in keep), "model.keep_prob", f"keep probabilities must be in (0, 1], got {keep}")
    unset = cfg.input_dropout == 0 and all(d == 0 for d in per_layer(cfg.dropout, layers - 1))
    check(unset, "model.keep_prob", "give keep_prob or dropout / input_dropout, not both")
    cfg.input_dropout = round(1.0 - keep[0], 12)
    cfg.dropout = [round(1.0 - k, 12) for k in keep[1:]]


@dataclass
class CNNConfig:
    name: str = "cnn"
    channels: list[int] = field(default_factory=lambda: [32, 64])  # K: filters of each block
    layers_per_block: int = 2  # L: 3x3 conv layers in each block
    pool_every: int | None = None  # P: a 2x2 max-pool after every P conv layers (across blocks); null: after each block
    hidden_dims: list[int] = field(default_factory=lambda: [128])  # H: fully connected layers after the convs
    batchnorm: bool = False
    activation: str = "relu"
    dropout: float = 0.0  # after each fully connected hidden layer
    input_dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_head(self.activation, self.dropout, self.input_dropout, self.hidden_dims)
        check(len(self.channels) >= 1 and min(self.channels) >= 1, "model.channels", "need one or more sizes >= 1")
        check(self.layers_per_block >= 1, "model.layers_per_block", f"must be >= 1, got {self.layers_per_block}")
        check(self.pool_every is None or self.pool_every >= 1, "model.pool_every",
              f"must be >= 1 or null, got {self.pool_every}")


@dataclass
class ResNetConfig:
    name: str = "resnet"
    channels: list[int] = field(default_factory=lambda: [16, 32])  # K: width of each stage
    layers_per_block: int = 2  # L: residual blocks in each stage
    bottleneck: bool = False  # 1x1-3x3-1x1 blocks (inner width K/4) instead of two 3x3 convs
    hidden_dims: list[int] = field(default_factory=list)  # fully connected layers after global pooling
    activation: str = "relu"
    dropout: float = 0.0
    input_dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_head(self.activation, self.dropout, self.input_dropout, self.hidden_dims)
        check(len(self.channels) >= 1 and min(self.channels) >= 1, "model.channels", "need one or more sizes >= 1")
        check(self.layers_per_block >= 1, "model.layers_per_block", f"must be >= 1, got {self.layers_per_block}")


ModelConfig = MLPConfig | CNNConfig | ResNetConfig
MODELS: dict[str, type] = {"mlp": MLPConfig, "cnn": CNNConfig, "resnet": ResNetConfig}


# ------------------------------------------------------------------------------------------------------ optimizer


def _check_lr_wd(lr: float, weight_decay: float) -> None:
    check(0 < lr < math.inf, "optimizer.lr", f"must be > 0 and finite, got {lr}")
    check(0 <= weight_decay < math.inf, "optimizer.weight_decay", f"must be >= 0 and finite, got {weight_decay}")


def _check_eps(eps: float) -> None:
    check(0 < eps < math.inf, "optimizer.eps", f"must be > 0 and finite, got {eps}")


def _check_momentum(momentum: float) -> None:
    check(0.0 <= momentum < 1.0, "optimizer.momentum", f"must be in [0, 1), got {momentum}")


@dataclass
class SGDConfig:
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9  # the "SGD + momentum" of the studies; 0.0 for plain SGD
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_lr_wd(self.lr, self.weight_decay)
        _check_momentum(self.momentum)
        check(not self.nesterov or self.momentum > 0, "optimizer.nesterov", "needs optimizer.momentum > 0")


@dataclass
class RMSpropConfig:
    name: str = "rmsprop"
    lr: float = 1e-3
    alpha: float = 0.99  # smoothing constant of the squared-gradient average
    momentum: float = 0.0
    eps: float = 1e-8
    centered: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_lr_wd(self.lr, self.weight_decay)
        _check_eps(self.eps)
        _check_momentum(self.momentum)
        check(0.0 <= self.alpha < 1.0, "optimizer.alpha", f"must be in [0, 1), got {self.alpha}")


@dataclass
class AdamConfig:
    name: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0  # L2 penalty added to the gradient (AdamW decouples it)
    amsgrad: bool = False

    def __post_init__(self) -> None:
        _check_lr_wd(self.lr, self.weight_decay)
        _check_eps(self.eps)
        check(
            len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
            "optimizer.betas",
            f"must be two values in [0, 1), got {self.betas}",
        )


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"
    weight_decay: float = 0.01


OptimizerConfig = SGDConfig | RMSpropConfig | AdamConfig | AdamWConfig
OPTIMIZERS: dict[str, type] = {"sgd": SGDConfig, "rmsprop": RMSpropConfig, "adam": AdamConfig, "adamw": AdamWConfig}


# ----------------------------------------------------------------------------------------------------------- init
SCHEMES = (
    "default",
    "xavier_normal",  # Glorot: variance 2 / (fan_in + fan_out)
    "xavier_uniform",
    "lecun_normal",  # variance 1 / fan_in: what the initialisation study calls "Xavier"
    "lecun_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "normal",
    "heuristic",
)
UNKNOWN_LAYERS = ("error", "default")


@dataclass
class InitConfig:
    name: str = "default"
    # A layer with weights that is neither Linear nor Conv2d nor a normalisation layer (which keeps PyTorch's
    # weight 1, bias 0 by design): error stops the trial; default leaves it at PyTorch's own init.
    unknown_layers: str = "error"

    def __post_init__(self) -> None:
        check_choice(self.name, "init.name", SCHEMES)
        check_choice(self.unknown_layers, "init.unknown_layers", UNKNOWN_LAYERS)


@dataclass
class NormalInitConfig(InitConfig):
    name: str = "normal"
    std: float = 1.0  # weights ~ N(0, std^2); 1.0 is the classic "does not train" N(0, 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.std > 0, "init.std", f"must be > 0, got {self.std}")


# Which dataclass each scheme takes: only ``normal`` has a std (init.std with another scheme is refused).
INIT_SCHEMES: dict[str, type] = {name: NormalInitConfig if name == "normal" else InitConfig for name in SCHEMES}


# ---------------------------------------------------------------------------------------------------------- train
CHECKPOINTS = ("none", "final", "best")


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    early_stopping: int = 0  # patience: stop after this many evaluations without a better early_stopping_metric
    early_stopping_metric: str = "val_loss"  # any per-epoch metric; losses are minimised, accuracies maximised
    time_budget_s: float | None = None  # stop after this many seconds of training (evaluations not counted)
    target_train_acc: float | None = None  # stop once an epoch's training accuracy reaches this (1.0: fit the set)
    eval_every: int = 0  # also evaluate every N optimizer steps (logged as step/<metric>); 0: once per epoch only
    checkpoint: str = "none"  # none | final | best: save those weights (best by early_stopping_metric) as model.pt
    eval_batch_size: int = 2048

    def __post_init__(self) -> None:
        check(self.epochs >= 1, "train.epochs", f"must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, "train.batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.early_stopping >= 0, "train.early_stopping", f"must be >= 0, got {self.early_stopping}")
        check_choice(self.early_stopping_metric, "train.early_stopping_metric", EPOCH_METRICS)
        check(
            self.target_train_acc is None or 0.0 < self.target_train_acc <= 1.0,
            "train.target_train_acc",
            f"must be in (0, 1] or null, got {self.target_train_acc}",
        )
        check(self.eval_every >= 0, "train.eval_every", f"must be >= 0, got {self.eval_every}")
        check(
            self.time_budget_s is None or self.time_budget_s > 0,
            "train.time_budget_s",
            f"must be > 0 or null, got {self.time_budget_s}",
        )
        check_choice(self.checkpoint, "train.checkpoint", CHECKPOINTS)
        check(self.eval_batch_size >= 1, "train.eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")


# ---------------------------------------------------------------------------------------------------- the trial
METRICS = (*EPOCH_METRICS, *FINAL_METRICS, *MEASURE_METRICS, "train_seconds", "epochs", "steps")


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
    "report": ReportSpec,
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
    report: ReportSpec = field(default_factory=ReportSpec)  # the study's report (told the sweeper), not the trial
    measures: dict[str, Any] = field(default_factory=dict)  # each measure's options, by name (sweep.measures)

    def __post_init__(self) -> None:
        valid_name = bool(self.name) and "/" not in self.name
        check(valid_name, "name", f"must be a non-empty name without '/', got {self.name!r}")
        check(len(self.objective) >= 1, "objective", f"needs at least one metric, allowed: {', '.join(METRICS)}")
        for metric in self.objective:
            check_choice(metric, "objective", METRICS)
            check(self.objective.count(metric) == 1, "objective", f"{metric} is named twice; each objective once")
            measure = measure_of(metric)
            if measure is not None:
                check(self.measures[measure.name].enabled, "objective", f"{metric} needs {measure.name}.enabled=true")
        if self.data.val_fraction == 0:  # no validation split: nothing may read one
            no_val = "needs a validation split, but data.val_fraction=0; name a train_* or test_* metric"
            for metric in self.objective:
                check(not metric.startswith("val_"), "objective", f"{metric} {no_val}")
            stop = self.train.early_stopping_metric
            uses_stop = self.train.early_stopping > 0 or self.train.checkpoint == "best"
            check(not (uses_stop and stop.startswith("val_")), "train.early_stopping_metric", f"{stop} {no_val}")


def plain(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """A config as plain, resolved Python containers (a dict stays a dict)."""
    if isinstance(cfg, DictConfig):
        return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    return dict(cfg)


def render_run_name(template: str, tree: dict[str, Any]) -> str:
    """``mlflow.run_name`` with each ``{dotted.key}`` replaced by that config value (lists joined by "-")."""

    def value(match: re.Match[str]) -> str:
        node: Any = tree
        for part in match.group(1).split("."):
            check(isinstance(node, dict) and part in node, "mlflow.run_name",
                  f"{{{match.group(1)}}} names no config key; use dotted keys such as {{model.hidden_dims}}")
            node = node[part]
        return "-".join(map(str, node)) if isinstance(node, list) else str(node)

    name = re.sub(r"\{([^{}]+)\}", value, template)
    check(bool(name) and "/" not in name, "mlflow.run_name", f"gives {name!r}; a run name is non-empty, without '/'")
    return name


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
    if parsed["mlflow"].run_name:
        parsed["mlflow"].run_name = render_run_name(parsed["mlflow"].run_name, tree)
    return TrialConfig(**parsed)


def _help_list(what: str) -> str:
    """The lists ``sweep --help`` shows (``${sweep_help:metrics}`` in conf/config.yaml), from the code that defines
    them, so the help never drifts from what the trial and the sweeper accept."""
    import textwrap

    if what == "metrics":
        return textwrap.fill(", ".join(METRICS), 110, subsequent_indent="  ")
    import importlib
    from dataclasses import fields as dataclass_fields

    sweeper = importlib.import_module("hydra_plugins.hydra_optuna_studies.config")  # the plugin's own schema
    if what == "samplers":
        return ", ".join(sorted(sweeper.SAMPLERS))
    keys = [f.name for f in dataclass_fields(sweeper.OptunaSweeperConf) if not f.name.startswith(("_", "defaults"))]
    return textwrap.fill(", ".join(keys), 110, subsequent_indent="  ")


def _register() -> None:
    """Each group option and section as a Hydra config, made from its dataclass's defaults."""
    if not OmegaConf.has_resolver("sweep_help"):
        OmegaConf.register_new_resolver("sweep_help", _help_list)
    store = ConfigStore.instance()
    for group, choices in GROUPS.items():
        for name, cls in choices.items():
            store.store(group=group, name=name, node=cls(name=name), provider="sweep")
    for section, cls in SECTIONS.items():
        store.store(group=section, name="default", node=cls(), provider="sweep")


_register()
