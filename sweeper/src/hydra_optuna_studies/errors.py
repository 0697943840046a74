"""Errors a user can fix, reported as one line naming the key and what is allowed."""

from __future__ import annotations

from hydra.errors import CompactHydraException


class SweepError(CompactHydraException):
    """Something the user can fix (a bad value, an unreachable storage), never a bug in the sweeper itself.

    As a ``CompactHydraException`` it prints as ``str(error)`` alone (no traceback) and exits non-zero in any Hydra
    app; raised by a job inside a sweep, the trial is recorded as failed with this message.
    """


class ConfigError(SweepError, ValueError):
    """A config key holds a value outside what is allowed."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def check(condition: bool, key: str, message: str) -> None:
    """Raise :class:`ConfigError` for ``key`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(key, message)


def check_choice(value: object, key: str, allowed: list[str] | tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``allowed``, listing them."""
    check(value in allowed, key, f"got {value!r}, allowed: {', '.join(map(str, allowed))}")
