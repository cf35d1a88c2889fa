"""The ``DATE`` type of every date option: a day, an instant, or a day relative to today.

- ``YYYY-MM-DD``: a whole UTC day;
- an ISO 8601 datetime with an offset (``2025-01-01T09:00:00+02:00``, ``...Z``);
- ``today``, ``yesterday`` and ``-Nd`` (N days before today): whole UTC days,
  for scheduled runs that must not be edited every day.

"Today" is the UTC date of the system clock, unless the click context carries
a `Clock` as its ``obj`` (``CliRunner().invoke(cli, args, obj=Clock(...))``):
tests fix the day that way, without sleeping or touching the real clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import click

__all__ = ["DATE", "Clock", "DateOrDatetime", "utc_today"]


def utc_today() -> date:
    """Today's date in UTC, from the system clock."""
    return datetime.now(UTC).date()


@attrs.frozen
class Clock:
    """Where relative dates (``today``, ``yesterday``, ``-Nd``) start from.

    Pass one as click's ``obj`` to fix "today" for a run.
    """

    today: Callable[[], date] = utc_today
    """Returns today's UTC date."""


if TYPE_CHECKING:  # click >= 8.2 types ParamType by its value; older click is not generic.
    _DateParamType = click.ParamType[date | datetime]
else:
    _DateParamType = click.ParamType

_DAYS_AGO = re.compile(r"-(\d{1,7})d")

_FORMS = "YYYY-MM-DD, today, yesterday, -Nd (N days ago) or an ISO 8601 datetime with an offset"


class DateOrDatetime(_DateParamType):
    """A whole UTC day (``YYYY-MM-DD``, ``today``, ``yesterday``, ``-Nd``) or an instant."""

    name = "DATE"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> date | datetime:
        """Parse the option's text; fail with one line naming the accepted forms."""
        if isinstance(value, date):
            return value
        text = str(value).strip()
        relative = self._relative(text, param, ctx)
        if relative is not None:
            return relative
        if "T" not in text.upper() and " " not in text:
            try:
                return date.fromisoformat(text)
            except ValueError:
                pass
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{value!r} is not a date: use {_FORMS}", param, ctx)
        if parsed.utcoffset() is None:
            self.fail(
                f"{value!r} has no UTC offset; add one (Z or +HH:MM) or give a date YYYY-MM-DD",
                param,
                ctx,
            )
        return parsed

    def _relative(
        self, text: str, param: click.Parameter | None, ctx: click.Context | None
    ) -> date | None:
        word = text.lower()
        if word == "today":
            days = 0
        elif word == "yesterday":
            days = 1
        else:
            match = _DAYS_AGO.fullmatch(word)
            if match is None:
                return None
            days = int(match[1])
        clock = ctx.find_object(Clock) if ctx is not None else None
        today = (clock or Clock()).today()
        try:
            return today - timedelta(days=days)
        except OverflowError:
            self.fail(f"{text!r} is before the year 1", param, ctx)


DATE = DateOrDatetime()
