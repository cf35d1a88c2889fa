"""What the command says on stderr while it works: the ``oxystats`` logger, as text or JSON.

The library logs on the ``oxystats`` logger: a DEBUG line per request, INFO
for retries and limiter pauses, WARNING for anomalies; the command adds its
own lines on ``oxystats.cli`` (the plan of a long run when it starts, its
end). How much of it shows:

* ``-vv``: DEBUG, everything; ``-v``: INFO;
* else ``$OXYSTATS_LOG`` (``debug``, ``info`` or ``warning``) if set;
* else ``-q``: WARNING (anomalies, warnings, errors);
* else WARNING while a progress bar is drawn (the bar counts requests,
  retries and 429s), and INFO otherwise: when stderr is not a terminal (cron,
  CI, a pipe) retries and pauses are still said as they happen, so a run
  that cannot reach the API is never silent while it retries.

``--log-format json`` writes one JSON object per line instead, with the
records' structured fields (``method``, ``path``, ``query``, ``status``,
``elapsed_ms``, ...); the command's own warning and error lines become JSON
objects too, and no progress bar is drawn. The API key is never in a line:
the library's records do not hold it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TextIO, TypeVar

import click

__all__ = [
    "LOG_ENV",
    "cli_logger",
    "command_logging",
    "json_logs",
    "log_options",
    "reset_log_options",
    "say",
]

F = TypeVar("F", bound=Callable[..., Any])

LOG_ENV = "OXYSTATS_LOG"
"""The variable the library reads to log without code; the command honours it too."""

_ENV_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}

cli_logger = logging.getLogger("oxystats.cli")
"""The command's own lines: a long run's plan when it starts, and its end."""

_LIBRARY = logging.getLogger("oxystats")

# Per run, like --debug: set by the options' callbacks, reset by the group.
_RUN: dict[str, Any] = {"verbosity": 0, "format": "text"}

# Every attribute a bare LogRecord has; what a record has beyond them came in `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def reset_log_options() -> None:
    """Forget the last run's ``-v`` and ``--log-format`` (a new run is starting)."""
    _RUN["verbosity"] = 0
    _RUN["format"] = "text"


def json_logs() -> bool:
    """Whether this run writes its lines as JSON."""
    return bool(_RUN["format"] == "json")


def _add_verbosity(ctx: click.Context, param: click.Parameter, value: int) -> None:
    _RUN["verbosity"] += value


def _set_format(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        _RUN["format"] = value


def log_options(command: F) -> F:
    """``-v/--verbose`` (repeatable) and ``--log-format text|json``."""
    command = click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        is_eager=True,
        expose_value=False,
        callback=_set_format,
        help="How log lines look on stderr: text (default), or one JSON object per line.",
    )(command)
    return click.option(
        "-v",
        "--verbose",
        count=True,
        is_eager=True,
        expose_value=False,
        callback=_add_verbosity,
        help="Say more on stderr: -v retries, pauses and the plan; -vv every request too.",
    )(command)


def _level(*, quiet: bool, progress_bar: bool) -> int:
    verbosity = _RUN["verbosity"]
    if verbosity >= 2:
        return logging.DEBUG
    if verbosity == 1:
        return logging.INFO
    from_env = _ENV_LEVELS.get(os.environ.get(LOG_ENV, "").strip().lower())
    if from_env is not None:
        return from_env
    if quiet or progress_bar:
        return logging.WARNING
    return logging.INFO


def _utc(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """``2025-06-01T12:00:00.123Z INFO oxystats: retry 1/6 in 0.41 s after 503 GET ...``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_utc(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, then the structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time: above a progress bar while one runs."""

    def emit(self, record: logging.LogRecord) -> None:
        # rich swaps sys.stderr while its bar is live, to print lines above it.
        self.stream = sys.stderr
        super().emit(record)


@contextlib.contextmanager
def command_logging(*, quiet: bool, progress_bar: bool) -> Iterator[None]:
    """Show the ``oxystats`` logger on stderr while a command runs, at the level it asks for.

    The command owns the logger meanwhile: other handlers (``$OXYSTATS_LOG``'s,
    an earlier run's) are set aside and put back afterwards.
    """
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if json_logs() else TextFormatter())
    saved = (_LIBRARY.level, _LIBRARY.handlers[:], _LIBRARY.propagate)
    _LIBRARY.setLevel(_level(quiet=quiet, progress_bar=progress_bar))
    _LIBRARY.handlers = [handler]
    _LIBRARY.propagate = False
    try:
        yield
    finally:
        _LIBRARY.setLevel(saved[0])
        _LIBRARY.handlers = saved[1]
        _LIBRARY.propagate = saved[2]


def say(level: str, message: str, *, tagged: bool = True) -> None:
    """One line of the command's own on stderr: ``oxystats: error: ...``, or its JSON object.

    ``tagged=False`` leaves the level out of the text line (``oxystats:
    interrupted``); the JSON object always has it.
    """
    text = " ".join(message.split())
    if json_logs():
        entry = {
            "time": _utc(datetime.now(UTC).timestamp()),
            "level": level,
            "logger": "oxystats.cli",
            "message": text,
        }
        click.echo(json.dumps(entry, ensure_ascii=False), err=True)
    else:
        click.echo(f"oxystats: {level}: {text}" if tagged else f"oxystats: {text}", err=True)
