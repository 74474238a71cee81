"""Helpers shared by the task commands: who a command acts as, argument types, and plain-text tables.

(The leading underscore keeps Django from listing this module as a command.)
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
from datetime import timedelta

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone


class Operator:
    """Whom a command acts as: an operator who sees every task, like staff in the API (selectors.*(user=...)), and
    who is named in the task's log as the OS user running manage.py."""

    is_staff = True
    is_superuser = True
    is_active = True
    is_authenticated = True
    is_anonymous = False
    pk = id = None

    def get_username(self) -> str:
        try:
            who = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary uid in a container
            who = "operator"
        return f"{who} (manage.py)"


OPERATOR = Operator()


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number.") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1.")
    return number


def non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number.") from None
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} must be a number of 0 or more.")
    return number


_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def window(value: str) -> timedelta:
    """'24h', '7d', '90m', '2w', '30s'; a bare number means hours."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", value.lower())
    if not match or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a window: use e.g. 90m, 24h, 7d or 2w.")
    return timedelta(**{_UNITS[match[2] or "h"]: float(match[1])})


def fmt_seconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}s"


def fmt_delta(delta) -> str:
    return "-" if delta is None else fmt_seconds(delta.total_seconds())


def fmt_time(value) -> str:
    return "-" if value is None else timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S")


def table(headers: list[str], rows: list[list[object]]) -> str:
    """Left-aligned columns; the last column is not padded (it is usually the longest: a name or a message)."""
    cells = [headers] + [["-" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers) - 1)]
    return "\n".join(
        "  ".join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]).rstrip() for row in cells
    )


def to_json(data) -> str:
    return json.dumps(data, cls=DjangoJSONEncoder, indent=2)
