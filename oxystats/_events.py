"""What a client tells the world: events for hooks, and the log lines they make.

Every attempt of every request becomes a `RequestEvent`, every retry a
`RetryEvent` and every pause of a key's limiter (after a 429, or a 503 with
Retry-After) a `PauseEvent`. They go to the ``oxystats`` logger (a DEBUG line
per request, INFO for retries and pauses, with structured ``extra=`` fields)
and to the event hooks a client was given, for metrics. None of them carries
the API key: requests are described by `RequestInfo`, never by their headers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TextIO, TypeAlias

import attrs

from oxystats._errors import RequestInfo
from oxystats._retry import RetryEvent

__all__ = ["ClientEvent", "EventHook", "PauseEvent", "RequestEvent"]

logger = logging.getLogger("oxystats")

LOG_ENV = "OXYSTATS_LOG"
_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


@attrs.frozen
class RequestEvent:
    """One attempt of one request, finished: answered with any status, or failed in transit."""

    request: RequestInfo
    """What was asked (method, path, query); never the headers."""
    attempt: int
    """1 for the first attempt of a request, 2 for its first retry, ..."""
    status: int | None
    """The HTTP status, or `None` if no answer came (see `error`)."""
    error: str | None
    """Why no answer came (an exception's class name), or `None`."""
    elapsed: float
    """Seconds from sending the request to its answer (or failure)."""
    limiter_wait: float
    """Seconds the attempt waited for the rate limiter before it was sent."""


@attrs.frozen
class PauseEvent:
    """A key's limiter paused: no new request of the key starts for a while."""

    seconds: float
    """How long the pause lasts."""
    reason: str
    """Why, such as ``"429 with Retry-After: 2"``."""


ClientEvent: TypeAlias = RequestEvent | RetryEvent | PauseEvent
"""Everything an event hook may be called with."""

EventHook: TypeAlias = Callable[[ClientEvent], None]
"""A function called with every [`ClientEvent`][oxystats.ClientEvent], synchronously.

It runs on the event loop, in the middle of a request: keep it quick, and do
not block. An exception it raises is logged, not raised.
"""


def configure_logging_from_env() -> None:
    """Send the ``oxystats`` logger to stderr at ``$OXYSTATS_LOG`` (debug, info, warning).

    Without code, as ``OPENAI_LOG`` does: nothing happens unless the variable
    is set, and a handler is added only once. A program that gave the
    ``oxystats`` logger a handler of its own (the ``oxystats`` command does)
    has configured it: its level and handlers are left as they are.
    """
    level = _LOG_LEVELS.get(os.environ.get(LOG_ENV, "").strip().lower())
    if level is None:
        return
    if any(not isinstance(handler, _EnvHandler) for handler in logger.handlers):
        return
    logger.setLevel(level)
    if not logger.handlers:
        handler = _EnvHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


class _EnvHandler(logging.StreamHandler[TextIO]):
    """The stderr handler ``$OXYSTATS_LOG`` adds (told apart from the application's own).

    Records also reach the root logger's handlers; when the application set one
    up (``logging.basicConfig``, before or after the client was made) that
    would print a record, this handler stays quiet so the line appears once.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if logger.propagate and any(
            record.levelno >= handler.level for handler in logging.getLogger().handlers
        ):
            return
        super().emit(record)


def _milliseconds(seconds: float) -> float:
    return round(seconds * 1000, 1)


class Observers:
    """Hands each event to the log and to every hook."""

    def __init__(self, hooks: Sequence[EventHook]) -> None:
        self.hooks = tuple(hooks)

    @property
    def wants_requests(self) -> bool:
        """Whether a `RequestEvent` would go anywhere: worth building one per attempt."""
        return bool(self.hooks) or logger.isEnabledFor(logging.DEBUG)

    def _call_hooks(self, event: ClientEvent) -> None:
        for hook in self.hooks:
            try:
                hook(event)
            except Exception:
                # A broken metrics hook must not fail a backfill; it is not silent either.
                logger.warning(
                    "event hook %r failed on %s", hook, type(event).__name__, exc_info=True
                )

    def request(self, event: RequestEvent) -> None:
        """One attempt finished."""
        if logger.isEnabledFor(logging.DEBUG):
            outcome = str(event.status) if event.status is not None else event.error
            logger.debug(
                "%s %s -> %s in %.1f ms (attempt %d, waited %.1f ms for the limiter)",
                event.request.method,
                event.request.target,
                outcome,
                event.elapsed * 1000,
                event.attempt,
                event.limiter_wait * 1000,
                extra={
                    "method": event.request.method,
                    "path": event.request.path,
                    "query": event.request.query,
                    "status": event.status,
                    "error": event.error,
                    "elapsed_ms": _milliseconds(event.elapsed),
                    "attempt": event.attempt,
                    "limiter_wait_ms": _milliseconds(event.limiter_wait),
                },
            )
        if self.hooks:
            self._call_hooks(event)

    def retry(self, event: RetryEvent) -> None:
        """A retry is scheduled (its log line is `oxystats._retry`'s)."""
        if self.hooks:
            self._call_hooks(event)

    def pause(self, event: PauseEvent) -> None:
        """A key's limiter paused."""
        logger.info(
            "pausing new requests of this key for %.1f s after %s",
            event.seconds,
            event.reason,
            extra={"pause_seconds": event.seconds, "reason": event.reason},
        )
        if self.hooks:
            self._call_hooks(event)
