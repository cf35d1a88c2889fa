"""Retries: which failures are worth another try, and how long to wait before it.

One entry point, `call_with_retries`, runs an async callable under a
`RetryPolicy` with tenacity's ``AsyncRetrying`` (sleeping with
``anyio.sleep``, so it works on asyncio and on trio) and re-raises the last
exception itself, never ``tenacity.RetryError``.

This module does not import the client's exception classes. It looks at two
attributes instead, which ``oxystats.APIError`` and ``RateLimitError`` have:

* ``status_code`` (an ``int``): retried if it is in ``RetryPolicy.retry_statuses``
  (429, 500, 502, 503, 504 by default), never otherwise (400, 401, 403, ...);
* ``retry_after`` (``float | None``): the server's ``Retry-After`` in seconds,
  already rounded up by `parse_retry_after`; waited exactly, unless it is
  longer than ``RetryPolicy.max_retry_after``, in which case the exception is
  raised at once (it carries the value, so the caller can decide).

``httpx`` transport errors (connection failures, timeouts, dropped connections)
are retried too, whether raised as they are or as the ``__cause__`` of another
exception; an unsupported URL scheme or a client-side protocol violation is not,
since trying again cannot help.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import re
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import attrs
import httpx
import tenacity

__all__: list[str] = []

T = TypeVar("T")

logger = logging.getLogger("oxystats")

#: HTTP statuses worth retrying: rate limited, and transient server failures.
RETRY_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})

# Transport errors that another attempt cannot fix: a bad URL scheme, or the
# client itself breaking the protocol.
_PERMANENT_TRANSPORT_ERRORS = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)


def _non_negative_int(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"RetryPolicy.{attribute.name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"RetryPolicy.{attribute.name} must be >= 0, got {value!r}")


def _seconds(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None and attribute.name == "deadline":
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"RetryPolicy.{attribute.name} must be a number of seconds, not {type(value).__name__}"
        )
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(
            f"RetryPolicy.{attribute.name} must be a finite number >= 0, got {value!r}"
        )


def _statuses(_instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, frozenset) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in value
    ):
        raise TypeError("RetryPolicy.retry_statuses must be a frozenset of ints")


@attrs.frozen
class RetryPolicy:
    """What to retry and how long to wait.

    ``max_retries`` counts retries after the first attempt: a server that keeps
    answering 500 sees ``max_retries + 1`` requests. Between attempts the wait
    is the server's ``Retry-After`` when it sent one (but if that is longer than
    ``max_retry_after``, the error is raised at once instead), otherwise
    exponential backoff with full jitter: the ``n``-th retry waits a uniformly
    random time in ``[0, min(backoff_max, backoff_base * 2 ** (n - 1))]``.
    ``deadline`` (seconds, for the whole call) stops retrying as soon as the
    next wait would end past it; it does not interrupt an attempt.
    """

    max_retries: int = attrs.field(default=6, validator=_non_negative_int)
    backoff_base: float = attrs.field(default=0.5, validator=_seconds)
    backoff_max: float = attrs.field(default=30.0, validator=_seconds)
    max_retry_after: float = attrs.field(default=120.0, validator=_seconds)
    deadline: float | None = attrs.field(default=None, validator=_seconds)
    retry_statuses: frozenset[int] = attrs.field(
        default=RETRY_STATUSES, kw_only=True, validator=_statuses
    )


DEFAULT_RETRY_POLICY = RetryPolicy()


# --- pure helpers -----------------------------------------------------------------

# RFC 9110 delta-seconds is 1*DIGIT; a fraction is accepted (and rounded up)
# because some servers send one. No signs, exponents, "inf" or "nan".
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header, rounded up; ``None`` if unusable.

    The header is either delta-seconds (``"120"``; a fraction such as ``"1.2"``
    rounds up to ``2.0``) or an HTTP date, counted from ``now`` (timezone-aware,
    default the current time); a date in the past means ``0.0``. Rounding is
    always up so that a retry never arrives before the server said it may.
    Missing, empty or malformed values give ``None``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return float(math.ceil(float(text)))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # "-0000" (or no zone at all): HTTP dates are always GMT.
        when = when.replace(tzinfo=UTC)
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ValueError("parse_retry_after needs a timezone-aware `now`")
    return float(max(0, math.ceil((when - now).total_seconds())))


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        # httpx.HTTPStatusError keeps it on its response.
        status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool):
        return status
    return None


def is_retryable(exc: BaseException, *, statuses: Collection[int] = RETRY_STATUSES) -> bool:
    """Whether another attempt might succeed after ``exc``.

    Only ``Exception``s are: cancellation, ``KeyboardInterrupt`` and the like
    always propagate at once.
    """
    if not isinstance(exc, Exception):
        return False
    status = _status_of(exc)
    if status is not None:
        return status in statuses
    return any(
        isinstance(candidate, httpx.TransportError)
        and not isinstance(candidate, _PERMANENT_TRANSPORT_ERRORS)
        for candidate in (exc, exc.__cause__)
    )


def retry_after_of(exc: BaseException) -> float | None:
    """The ``retry_after`` seconds an exception carries, if it carries a usable one."""
    value = getattr(exc, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not (math.isfinite(value) and value >= 0):
        return None
    return float(value)


def backoff_cap(policy: RetryPolicy, retry: int) -> float:
    """The longest backoff before the ``retry``-th retry (1-based), before jitter."""
    exponent = retry - 1
    if exponent > 1000:  # 2.0 ** 1024 overflows; the cap is long reached by then
        return policy.backoff_max if policy.backoff_base > 0 else 0.0
    return min(policy.backoff_max, policy.backoff_base * 2.0 ** max(exponent, 0))


def compute_wait(
    policy: RetryPolicy,
    exc: BaseException,
    retry: int,
    *,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before the ``retry``-th retry (1-based) after ``exc``.

    ``None`` means "do not retry": the server asked for a longer wait than
    ``policy.max_retry_after``. ``rand`` returns a number in ``[0, 1)``.
    """
    retry_after = retry_after_of(exc)
    if retry_after is not None:
        return retry_after if retry_after <= policy.max_retry_after else None
    # Full jitter (uniform over the whole interval) spreads many clients'
    # retries out instead of synchronising them into waves.
    return rand() * backoff_cap(policy, retry)


# --- the retry loop ---------------------------------------------------------------


@attrs.frozen
class RetryEvent:
    """One retry about to happen: its number, its wait and why."""

    retry: int
    """1 for the first retry."""
    max_retries: int
    """The most retries the request may have."""
    wait: float
    """Seconds until the retry."""
    reason: str
    """The status code, or the exception's class name."""
    description: str
    """What is being retried, such as ``GET /stats/v1/usage?product=HB&...``."""
    retry_after: float | None
    """The server's Retry-After, in seconds, if it sent one."""
    exception: BaseException = attrs.field(eq=False)
    """The failure that is retried."""


def _reason(exc: BaseException) -> str:
    status = _status_of(exc)
    if status is not None:
        return str(status)
    # The client's own connection error says what failed (a ConnectError, an
    # attempt past its timeout): that is the reason, not the wrapper's name.
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    return type(exc).__name__


def _describe_request(exc: BaseException) -> str:
    """``METHOD /path`` of the request an exception is about; never the query or headers."""
    try:
        # httpx errors raise RuntimeError from .request when it was never set.
        request = getattr(exc, "request", None)
    except RuntimeError:
        return ""
    if isinstance(request, httpx.Request):
        return f"{request.method} {request.url.path}"
    return ""


def _format_seconds(seconds: float) -> str:
    return f"{seconds:.1f}" if seconds >= 1 else f"{seconds:.2f}"


class _Controller:
    """tenacity's wait, stop and before_sleep hooks for one call, sharing its state."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        retryable: Callable[[BaseException], bool],
        on_retry: Callable[[RetryEvent], None] | None,
        describe: object,
        clock: Callable[[], float],
        rand: Callable[[], float],
        started: float,
        deadline_at: float | None,
    ) -> None:
        self.policy = policy
        self.retryable = retryable
        self.on_retry = on_retry
        self.describe = describe
        self.clock = clock
        self.rand = rand
        self.started = started  # the policy's deadline runs from the first attempt
        self.deadline_at = deadline_at  # the whole call's, on the same clock
        self.next_wait: float | None = None

    @staticmethod
    def _exception(state: tenacity.RetryCallState) -> BaseException:
        assert state.outcome is not None  # tenacity only asks after an attempt
        exc = state.outcome.exception()
        assert exc is not None  # and only retries failures (see `retry=`)
        return exc

    def wait(self, state: tenacity.RetryCallState) -> float:
        # `attempt_number` attempts have failed, so this is retry number `attempt_number`.
        self.next_wait = compute_wait(
            self.policy, self._exception(state), state.attempt_number, rand=self.rand
        )
        return 0.0 if self.next_wait is None else self.next_wait

    def stop(self, state: tenacity.RetryCallState) -> bool:
        # tenacity computes the wait first, so the decision can look at it.
        if state.attempt_number > self.policy.max_retries or self.next_wait is None:
            return True
        now = self.clock()
        # A wait that would end past a deadline is not started: the failure in
        # hand says more than a deadline error would.
        if self.deadline_at is not None and now + self.next_wait > self.deadline_at:
            return True
        deadline = self.policy.deadline
        return deadline is not None and now - self.started + self.next_wait > deadline

    def before_sleep(self, state: tenacity.RetryCallState) -> None:
        exc = self._exception(state)
        wait = state.upcoming_sleep
        description = str(self.describe) if self.describe is not None else _describe_request(exc)
        reason = _reason(exc)
        logger.info(
            "retry %d/%d in %s s after %s%s",
            state.attempt_number,
            self.policy.max_retries,
            _format_seconds(wait),
            reason,
            f" {description}" if description else "",
            extra={
                "retry": state.attempt_number,
                "max_retries": self.policy.max_retries,
                "wait_s": round(wait, 3),
                "reason": reason,
                "request": description,
            },
        )
        if self.on_retry is not None:
            self.on_retry(
                RetryEvent(
                    retry=state.attempt_number,
                    max_retries=self.policy.max_retries,
                    wait=wait,
                    reason=reason,
                    description=description,
                    retry_after=retry_after_of(exc),
                    exception=exc,
                )
            )


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    *,
    retryable: Callable[[BaseException], bool] | None = None,
    on_retry: Callable[[RetryEvent], None] | None = None,
    describe: object = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    clock: Callable[[], float] = anyio.current_time,
    rand: Callable[[], float] = random.random,
    deadline_at: float | None = None,
) -> T:
    """Await ``fn()``, retrying under ``policy``; return its result or raise its last exception.

    Args:
        fn: makes one attempt; called anew for every attempt.
        policy: how many retries and how long to wait.
        retryable: decides which exceptions are retried; default
            `is_retryable` with ``policy.retry_statuses``.
        on_retry: called with a `RetryEvent` before each retry's wait
            (the client counts retries with it).
        describe: what is being retried, for the log line: its ``str()``,
            taken only when there is a retry to log, e.g.
            ``"GET /stats/v1/usage?product=HB&..."``; default the ``METHOD /path`` of the
            exception's ``request``, if it has one. Never put secrets in it.
        sleep, clock, rand: injectable for tests; default ``anyio.sleep``,
            ``anyio.current_time`` and ``random.random``.
        deadline_at: when the whole call must be over, on ``clock``: no
            retry is started whose wait would end after it.

    Every retry is logged at INFO on the ``"oxystats"`` logger, e.g.
    ``retry 2/6 in 1.3 s after 503 GET /stats/v1/usage?product=HB&...``.
    """
    if retryable is None:
        statuses = policy.retry_statuses

        def retryable(exc: BaseException) -> bool:
            return is_retryable(exc, statuses=statuses)

    started = clock()
    # Most calls succeed at once, and building tenacity's machinery costs more
    # than a request's own bookkeeping: make the first attempt bare, and hand
    # tenacity a failure only when there is one to retry.
    try:
        return await fn()
    except Exception as exc:
        if not retryable(exc):
            raise
        first_failure: list[Exception] = [exc]

    controller = _Controller(
        policy,
        retryable=retryable,
        on_retry=on_retry,
        describe=describe,
        clock=clock,
        rand=rand,
        started=started,
        deadline_at=deadline_at,
    )

    # tenacity awaits `fn` only if it is a coroutine function; a lambda returning
    # an awaitable would be returned unawaited. Wrapping makes both work. Its
    # first attempt replays the failure above, so counting and logging see it.
    async def attempt() -> T:
        if first_failure:
            raise first_failure.pop()
        return await fn()

    retrying = tenacity.AsyncRetrying(
        sleep=sleep,
        retry=tenacity.retry_if_exception(retryable),
        wait=controller.wait,
        stop=controller.stop,
        before_sleep=controller.before_sleep,
        reraise=True,
    )
    return await retrying(attempt)
