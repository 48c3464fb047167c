"""One place for argument validation.

Every user-facing config and function validates through these helpers, so a bad value always
raises the same kind of error: a :class:`ConfigError` (a ``ValueError``) that names the field,
the value it got and what is allowed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
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


def check_writable_dir(field: str, path: str | os.PathLike) -> Path:
    """Refuse, before any work, a directory that cannot be created or written: ``path`` (or the
    nearest folder above it that exists) is a file, or is not writable. Returns ``path``."""
    path = Path(path).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        what = "is a file" if existing == path else f"is below the file {str(existing)!r}"
        fail(field, str(path), f"it {what}; expected a directory: choose another {field}")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        fail(
            field,
            str(path),
            f"{str(existing)!r} is not writable by this user; choose a directory you can write to",
        )
    return path


def _is_real(value: Any) -> bool:
    # float("2") parses, but a string is not a number a config should hold.
    if isinstance(value, (bool, str, bytes)):
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
