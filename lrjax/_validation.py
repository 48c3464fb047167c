"""One place for argument validation.

Every user-facing config and function validates through these helpers, so a bad value always
raises the same kind of error: a :class:`ConfigError` (a ``ValueError``) that names the field,
the value it got and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A user-supplied value is not allowed. The message names field, value and what is allowed."""


def fail(field: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{field}={value!r} is not allowed: {allowed}.")


def check_choice(field: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        fail(field, value, "expected one of " + ", ".join(repr(a) for a in allowed))


def check_positive(field: str, value: Any) -> None:
    if not _is_real(value) or not value > 0:
        fail(field, value, "expected a finite number > 0")


def check_non_negative(field: str, value: Any) -> None:
    if not _is_real(value) or not value >= 0:
        fail(field, value, "expected a finite number >= 0")


def check_positive_int(field: str, value: Any) -> None:
    if not _is_int(value) or value <= 0:
        fail(field, value, "expected an integer >= 1")


def check_non_negative_int(field: str, value: Any) -> None:
    if not _is_int(value) or value < 0:
        fail(field, value, "expected an integer >= 0")


def check_in_range(
    field: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    ok = _is_real(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        lb = "(" if low_open else "["
        rb = ")" if high_open else "]"
        fail(field, value, f"expected a number in {lb}{low}, {high}{rb}")


def check_less(field_low: str, low: float, field_high: str, high: float) -> None:
    if not low < high:
        raise ConfigError(f"{field_low}={low!r} must be smaller than {field_high}={high!r}.")


def _is_real(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return int(value) == value
    except (TypeError, ValueError):
        return False
