"""The one parser of the environment: each value read once, at start-up, strictly. A value it
does not understand stops the start with the variable's name and what it takes, instead of
silently becoming a default (SEARCH_LOG_DEFERRED=off used to leave deferral on)."""

from __future__ import annotations

import os
import re

from django.core.exceptions import ImproperlyConfigured

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})
# a duration: a number of seconds, or with a unit (ms, s, m, h, d)
DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|min|h|d)?\s*$", re.IGNORECASE)
UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def _raw(name: str) -> str | None:
    """The variable's value; None when unset or empty (an empty value keeps the default)."""
    value = os.environ.get(name)
    return None if value is None or not value.strip() else value.strip()


def _refuse(name: str, value: str, takes: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{name}={value!r} is not understood: it takes {takes}.")


def env_str(name: str, default: str) -> str:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise _refuse(name, value, "1/0, true/false, yes/no or on/off")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value.replace("_", ""))
    except ValueError:
        raise _refuse(name, value, "a whole number") from None
    if minimum is not None and number < minimum:
        raise _refuse(name, value, f"a whole number of at least {minimum}")
    return number


def env_float(name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
    value = _raw(name)
    if value is None:
        return float(default)
    try:
        number = float(value)
    except ValueError:
        raise _refuse(name, value, "a number") from None
    if number != number or (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = " and ".join(
            part
            for part in (
                f"at least {minimum:g}" if minimum is not None else "",
                f"at most {maximum:g}" if maximum is not None else "",
            )
            if part
        )
        raise _refuse(name, value, f"a number {bounds}".strip())
    return number


def env_seconds(name: str, default: float) -> float:
    """A duration in seconds: "20", "20s", "1.5s", "500ms", "5m", "2h", "7d"; never negative."""
    value = _raw(name)
    if value is None:
        return float(default)
    match = DURATION.match(value)
    if not match:
        raise _refuse(name, value, 'a duration: seconds ("20"), or with a unit ("500ms", "20s", "5m", "2h", "7d")')
    unit = match.group(2).lower() if match.group(2) else None
    return float(match.group(1)) * UNITS[unit]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() not in choices:
        raise _refuse(name, value, "one of " + ", ".join(choices))
    return value.lower()


def env_locale(name: str, default: str) -> str:
    """A locale Babel knows ("en_US", "de-DE"), as Babel spells it."""
    value = _raw(name)
    if value is None:
        return default
    from babel import Locale, UnknownLocaleError

    try:
        return str(Locale.parse(value.replace("-", "_")))
    except (ValueError, TypeError, UnknownLocaleError):
        raise _refuse(name, value, "a locale such as en_US, de_DE or fr_CA") from None


def env_retired(name: str, instead: str) -> None:
    """A variable an earlier version read: refused with what replaces it, never silently ignored."""
    if _raw(name) is not None:
        raise ImproperlyConfigured(f"{name} is gone: {instead}")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


__all__ = ["env_bool", "env_choice", "env_float", "env_int", "env_list", "env_retired", "env_seconds", "env_str"]
