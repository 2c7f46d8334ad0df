"""Durations as people write them: 30s, 12h, 7d, 2w (or plain seconds)."""

from __future__ import annotations

from reposeal.errors import InputError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """``7d`` -> 604800. Raises InputError for anything else."""
    t = text.strip().lower()
    unit = _UNITS.get(t[-1:], 0)
    number = t[:-1] if unit else t
    if not number.isdigit() or int(number) == 0:
        raise InputError(f"{text!r} is not a duration like 30s, 12h or 7d")
    return int(number) * (unit or 1)
