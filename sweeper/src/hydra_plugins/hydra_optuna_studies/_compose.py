"""Per-trial config composition that skips Hydra's full recomposition when only values change.

Every launcher builds a trial's config with ``config_loader.load_sweep_config(master, overrides)``, which re-reads
the config files, rebuilds the defaults tree and merges everything again: about 70 ms a trial on a 2-core CPU, the
largest share of a sweep's per-trial overhead. Between the trials of one sweep, usually only the values of a few
keys change (``optimizer.lr=0.01`` then ``optimizer.lr=0.1``), and for those Hydra's own procedure is: compose the
defaults, then assign the values. So the first trial of each *shape* (the same group choices and the same value
keys) is composed by Hydra, and later trials of that shape start from a copy of it and get Hydra's own value
assignment, task-override list and override dirname (benchmarks/compose.py: 74 ms vs 7 ms a trial). A value is
``key=value`` or ``++key=value`` (how the sweeper sets each job's ``hydra.job.env_set``); anything else (a group
choice that varies, ``+key``, ``~key``, ``key@pkg``, dict values) goes to Hydra unchanged.
A launcher that composes in its job processes (joblib) gets a copy of the loader with every job; the copies of one
sweep in one process share their compositions, so a process kept between jobs composes in full once per shape too.
``tests/test_compose.py`` checks the result equals Hydra's for each kind of override.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, flag_override

from hydra_optuna_studies.contract import masked

# In a launcher's job process (joblib's, kept between jobs): the compositions of the sweep whose jobs it runs. Each job
# brings its own unpickled copy of the loader; without this, every copy would start empty and compose in full.
_JOB_PROCESS: dict[str, dict[tuple, DictConfig]] = {}


class ReusingConfigLoader:
    """Wraps Hydra's config loader; ``load_sweep_config`` reuses compositions, every other call is delegated."""

    def __init__(self, delegate: Any) -> None:
        self._reset(delegate, uuid.uuid4().hex)

    def _reset(self, delegate: Any, sweep: str) -> None:
        self._delegate = delegate
        self._sweep = sweep  # this loader's sweep (its master config), as its copies in job processes know it
        self._parser = OverridesParser.create()
        self._composed: dict[tuple, DictConfig] = {}  # shape -> a trial's config of that shape, as composed

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not set up yet (unpickling): never recurse into the delegate
            raise AttributeError(name)
        return getattr(self._delegate, name)

    def __getstate__(self) -> dict[str, Any]:
        """Launchers that run jobs in other processes (joblib) pickle the context: send the loader alone."""
        return {"delegate": self._delegate, "sweep": self._sweep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A copy in a job process: it shares that process's compositions of the same sweep (only the latest sweep's
        are kept)."""
        self._reset(state["delegate"], state["sweep"])
        if self._sweep not in _JOB_PROCESS:
            _JOB_PROCESS.clear()
            _JOB_PROCESS[self._sweep] = {}
        self._composed = _JOB_PROCESS[self._sweep]

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        """The job's config, as Hydra composes it, with any password masked (Hydra saves it to disk). Compositions
        are kept masked, so a copy is masked again only where an override it takes in (its own, or the command
        line's ``hydra.`` ones) brings a password."""
        parsed = self._parser.parse_overrides(sweep_overrides)
        groups = set(master_config.hydra.runtime.choices)
        plain = [_is_value(o, groups) for o in parsed]
        values = [o for o, is_value in zip(parsed, plain, strict=True) if is_value]
        shape = tuple((o.key_or_group, "=") if v else (o.input_line, "") for o, v in zip(parsed, plain, strict=True))
        known = self._composed.get(shape)
        if known is None:
            config = scrubbed(self._delegate.load_sweep_config(master_config, sweep_overrides))
            self._composed[shape] = copy.deepcopy(config)
            return config
        config = copy.deepcopy(known)
        ConfigLoaderImpl._apply_overrides_to_config(values, config)
        task = [o for o in parsed if not o.is_hydra_override()]
        naming = config.hydra.job.config.override_dirname
        config.hydra.overrides.task = [o.input_line for o in task]
        config.hydra.overrides.hydra = [*master_config.hydra.overrides.hydra,
                                        *(o.input_line for o in parsed if o.is_hydra_override())]
        config.hydra.job.override_dirname = get_overrides_dirname(
            overrides=task, kv_sep=naming.kv_sep, item_sep=naming.item_sep, exclude_keys=list(naming.exclude_keys)
        )
        OmegaConf.copy_cache(from_config=master_config, to_config=config)
        brought = [*sweep_overrides, *master_config.hydra.overrides.hydra]
        return scrubbed(config) if any(masked(o) != o for o in brought) else config


def scrubbed(config: DictConfig) -> DictConfig:
    """``config`` with every password masked wherever it holds one (the sweeper's storage, the app's own settings,
    the overrides that set them): every job's ``.hydra/`` files and ``multirun.yaml`` are written from it. A job that
    needs a real value gets it from the environment (``hydra_optuna_studies.contract.reveal``).

    Values are read unresolved (an override may itself hold ``${hydra.job.num}``) and written only where one changes.
    """
    raw = OmegaConf.to_container(config, resolve=False)
    for path, text in _strings(raw):
        if masked(text) != text:
            node = config
            for part in path[:-1]:
                node = node[part]
            with flag_override(node, ["readonly", "struct"], [False, False]):
                node[path[-1]] = masked(text)
    return config


def secrets_in(config: DictConfig) -> list[str]:
    """The values of ``config``, resolved where they can be (a job's own ``${hydra.job.num}`` cannot, yet), that hold
    a password: what the sweep's jobs must be able to reveal."""
    found = []
    for path, text in _strings(OmegaConf.to_container(config, resolve=False)):
        if "${" in text:
            try:
                text = str(OmegaConf.select(config, ".".join(map(str, path)), throw_on_missing=True))
            except Exception:  # noqa: BLE001 - an interpolation only a job can resolve holds no secret of ours
                continue
        if masked(text) != text:
            found.append(text)
    return found


def masked_tree(tree: Any) -> Any:
    """A plain config tree with every password in its strings masked."""
    if isinstance(tree, dict):
        return {k: masked_tree(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [masked_tree(v) for v in tree]
    return masked(tree) if isinstance(tree, str) else tree


def _strings(tree: Any, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """(path, value) of every string leaf of a plain tree."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _strings(value, (*path, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from _strings(value, (*path, index))
    elif isinstance(tree, str):
        yield path, tree


def _is_value(override: Override, groups: set[str]) -> bool:
    """A ``key=value`` or ``++key=value`` assignment to a config key, not to a config group.

    ``++`` sets a key whether or not it exists; the composed config this one is copied from already has it.
    """
    return not (
        override.is_add()
        or override.is_delete()
        or override.package is not None
        or override.key_or_group in groups
        or isinstance(override.value(), dict)
    )
