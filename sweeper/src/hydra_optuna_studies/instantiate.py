"""Objects a config names: a dotpath (``pkg.module.function``) or a ``_target_`` node, built with one-line errors.

The sweeper builds its sampler and pruner this way, whatever their class (Optuna's, the user's own, OptunaHub's
through :func:`hub`), as hydra-optuna-sweeper's ``_target_`` configs expect; ``custom_search_space`` and every option
an Optuna class takes a callable for (``constraints_func``, ``gamma``, ...) are dotpaths; an option that is itself a
``_target_`` node (``independent_sampler``, ``crossover``) is built first. Options set to None are left to the
class's own default, so the class stays the one source of its defaults.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import warnings
from collections.abc import Mapping
from typing import Any

from hydra_optuna_studies.errors import ConfigError

log = logging.getLogger(__name__)


def locate(path: str, key: str) -> Any:
    """The object at dotpath ``path`` (a module attribute, however deep); a one-line ConfigError for ``key`` that
    keeps the reason when it cannot be imported (the module's own ImportError or SyntaxError included)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        try:
            found: Any = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
                continue  # this prefix is no module: the rest of the path may be attributes of a shorter one
            raise ConfigError(key, f"cannot import {path!r}: {type(error).__name__}: {error}") from None
        except Exception as error:  # noqa: BLE001 - the module ran and failed: its reason is the user's answer
            raise ConfigError(key, f"cannot import {path!r}: {type(error).__name__}: {error}") from None
        for attribute in parts[i:]:
            if not hasattr(found, attribute):
                raise ConfigError(key, f"cannot import {path!r}: {name!r} has no attribute {attribute!r}")
            found = getattr(found, attribute)
        return found
    raise ConfigError(key, f"cannot import {path!r}: no module named {parts[0]!r}")


def build(node: Mapping[str, Any], key: str, **extra: Any) -> Any:
    """``node["_target_"](**options)``: the node's options that are not None, then ``extra``.

    An option the class does not take is refused naming the ones it does; an error the class raises on its
    options (Optuna validates them in its constructors) is one line too.
    """
    target = str(node["_target_"])
    factory = locate(target, f"{key}._target_")
    options = {k: v for k, v in node.items() if not str(k).startswith("_") and v is not None} | extra
    parameters = _parameters(factory)
    for name, value in list(options.items()):
        if parameters is not None and name not in parameters:
            known = ", ".join(parameters) or "none"
            raise ConfigError(f"{key}.{name}", f"{_short(target)} takes no option {name!r}; its options: {known}")
        options[name] = _option(value, f"{key}.{name}", parameters.get(name) if parameters else None)
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            built = factory(**options)
    except (TypeError, ValueError) as error:
        raise ConfigError(key, f"{_short(target)}: {error}") from None
    for warning in said:  # an option Optuna deprecated: a line for the user, never an error under `python -W error`
        if "is experimental" not in str(warning.message):  # Optuna marks whole classes so: nothing to act on
            log.warning("%s: %s: %s", key, _short(target), warning.message)
    return built


def _parameters(factory: Any) -> dict[str, inspect.Parameter] | None:
    """The keyword options ``factory`` takes, or None when it takes any (``**kwargs``) or cannot be inspected."""
    try:
        parameters = dict(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return {n: p for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def _option(value: Any, key: str, parameter: inspect.Parameter | None) -> Any:
    """One option's value: a nested ``_target_`` node built, a dotpath where the class takes a callable."""
    if isinstance(value, Mapping) and "_target_" in value:
        return build(value, key)
    takes_callable = parameter is not None and "Callable" in str(parameter.annotation)
    if isinstance(value, str) and takes_callable:
        return locate(value, key)
    if isinstance(value, list):
        return [_option(v, key, None) for v in value]
    return value


def _short(target: str) -> str:
    return target.rsplit(".", 1)[-1]


def hub(package: str, name: str, registry_root: str | None = None, repo_owner: str = "optuna", ref: str = "main",
        **options: Any) -> Any:
    """``name`` (a sampler or pruner class) of the OptunaHub package ``package``, built with ``options``: from the
    registry online (``repo_owner``, ``ref``; needs the network), or from a local copy of it at ``registry_root``.
    In a config::

        hydra:
          sweeper:
            sampler: {_target_: hydra_optuna_studies.instantiate.hub, package: samplers/auto_sampler,
                      name: AutoSampler, seed: 1}
    """
    import optunahub

    if registry_root is not None:
        module = optunahub.load_local_module(package, registry_root=registry_root)
    else:
        module = optunahub.load_module(package, repo_owner=repo_owner, ref=ref)
    return getattr(module, name)(**options)

