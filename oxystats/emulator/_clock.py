"""The emulator's clock: which usage exists yet.

With a clock, a usage cell exists only once its instant is at or before
"now". Cell instants are whole epoch seconds, so "now" becomes the last
visible second: a query's upper bound is cut down to it. Nothing here knows
about HTTP or caches.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time

__all__ = ["check_now", "format_instant", "last_visible_second", "parse_instant"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def check_now(value: object) -> datetime | None:
    """``value`` if it is ``None`` or an aware datetime.

    Raises:
        TypeError: ``value`` is neither a datetime nor ``None``.
        ValueError: ``value`` is a naive datetime.
    """
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"now must be a timezone-aware datetime or None, got {value!r}")
    if value.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got the naive {value.isoformat()}")
    return value


def parse_instant(text: str) -> datetime:
    """An ISO 8601 datetime with ``Z`` or an offset, or a date meaning its 00:00:00Z.

    Raises:
        ValueError: malformed, or a datetime without an offset.
    """
    if _DATE_ONLY.fullmatch(text):
        return datetime.combine(date.fromisoformat(text), time(), UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expected an ISO 8601 datetime with Z or an offset, or a date, got {text!r}"
        ) from None
    if value.utcoffset() is None:
        raise ValueError(f"a datetime needs Z or an offset such as +02:00, got {text!r}")
    return value


def format_instant(value: datetime) -> str:
    """``value`` in UTC, ISO 8601 with a ``Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def last_visible_second(now: datetime) -> int:
    """The epoch second of the last usage instant visible at ``now`` (fractions round down)."""
    delta = now - _EPOCH
    return delta.days * 86_400 + delta.seconds
