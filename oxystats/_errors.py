"""Exceptions raised by oxystats, and the support report the vendor asks for.

The hierarchy::

    OxystatsError
    ├── APIError                  the server answered with an error status
    │   ├── BadRequestError       400: the request was malformed
    │   ├── AuthenticationError   401: the API key is invalid
    │   ├── PermissionDeniedError 403: the API key is missing or not allowed
    │   ├── RateLimitError        429: too many requests, even after retries
    │   └── ServerError           5xx: the server failed, even after retries
    ├── APIConnectionError        no answer (refused, dropped, timed out), after retries
    ├── ResponseFormatError       a 2xx response that is not what was asked, or contradicts itself
    ├── DeadlineExceeded          the call's deadline passed; what was in flight was cancelled
    ├── DatabaseError             sync_usage: the database failed or refused a statement
    └── SyncInProgressError       sync_usage: another sync of the same table is running

Bad arguments never reach the network: they raise `ValueError` or
`TypeError` before any request is sent.

No exception carries the API key: requests are described by `RequestInfo`
(method, path, query) and never by their headers.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

import attrs

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "DatabaseError",
    "DeadlineExceeded",
    "OxystatsError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestInfo",
    "ResponseFormatError",
    "ServerError",
    "SyncInProgressError",
    "UnknownInstanceWarning",
]


@attrs.frozen
class RequestInfo:
    """What was asked: method, path and query parameters; never headers."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()

    @property
    def query(self) -> str:
        """The query string, readable (brackets, colons and ``+`` unescaped)."""
        return urlencode(self.params, safe="[]:+")

    @property
    def target(self) -> str:
        """The path with its query string, readable."""
        if not self.params:
            return self.path
        return f"{self.path}?{self.query}"

    def __str__(self) -> str:
        return f"{self.method} {self.target}"


def _utc(timestamp: datetime) -> str:
    return timestamp.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class OxystatsError(Exception):
    """Base class of every error oxystats raises on purpose.

    Every one pickles and unpickles to an equal message and the same
    attributes, so it can cross a process boundary (multiprocessing, a
    logging queue).
    """

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from its message and attributes, not by calling __init__
        # again: one convention for every subclass, whatever its signature.
        return (_restore, (type(self), self.args, dict(self.__dict__)))


def _restore(
    cls: type[OxystatsError], args: tuple[object, ...], state: dict[str, object]
) -> OxystatsError:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class APIError(OxystatsError):
    """The Dashboard API answered with an error status.

    Args:
        status_code: The HTTP status.
        request: What was asked.
        body: The response body as text (the key, if the server echoed it, redacted).
        timestamp: When the response arrived; default now.
        attempts: How many requests were sent, retries included.
    """

    status_code: int
    """The HTTP status."""
    request: RequestInfo
    """The [`RequestInfo`][oxystats.RequestInfo] of the failing request."""
    body: str
    """The response body as text (the key, if the server echoed it, redacted)."""
    timestamp: datetime
    """When the response arrived, in UTC."""
    attempts: int
    """How many requests were sent, retries included."""

    def __init__(
        self,
        status_code: int,
        request: RequestInfo,
        body: str,
        *,
        timestamp: datetime | None = None,
        attempts: int = 1,
    ) -> None:
        self.status_code = status_code
        self.request = request
        self.body = body
        self.timestamp = timestamp or datetime.now(UTC)
        self.attempts = attempts
        super().__init__(self._summary())

    @property
    def server_message(self) -> str | None:
        """The ``message`` (or ``error``) field of a JSON error body, if any."""
        try:
            decoded = json.loads(self.body)
        except (ValueError, RecursionError):
            return None
        if isinstance(decoded, dict):
            for field in ("message", "error", "detail"):
                value = decoded.get(field)
                if isinstance(value, str) and value:
                    return value
        return None

    def _summary(self) -> str:
        message = self.server_message
        suffix = f": {message}" if message else ""
        return f"{self.status_code} from {self.request}{suffix}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code}, request='{self.request}')"

    def support_report(self) -> str:
        """The checklist Oxylabs support asks for, ready to paste into a ticket.

        Endpoint and query parameters, HTTP status, the full response body
        and UTC timestamps. The API key is never part of it.
        """
        lines = [
            "Oxylabs Dashboard API problem report",
            f"Endpoint: {self.request.method} {self.request.path}",
            "Query parameters:",
            *(f"  {name} = {value}" for name, value in self.request.params),
            f"HTTP status: {self.status_code}",
            f"Timestamp (UTC): {_utc(self.timestamp)}",
            f"Requests sent (retries included): {self.attempts}",
            "Authorization: Bearer [REDACTED]",
            "Response body:",
            self.body,
        ]
        if not self.request.params:
            lines.remove("Query parameters:")
            lines.insert(2, "Query parameters: (none)")
        return "\n".join(lines)


class BadRequestError(APIError):
    """400: the server could not understand the request."""


class AuthenticationError(APIError):
    """401: the API key is invalid."""


class PermissionDeniedError(APIError):
    """403: the API key is missing, or access is denied."""


class _RetryAfterError(APIError):
    """An error status that may come with a ``Retry-After``."""

    retry_after: float | None
    """The server's ``Retry-After`` in seconds, when it sent one."""

    def __init__(
        self,
        status_code: int,
        request: RequestInfo,
        body: str,
        *,
        timestamp: datetime | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(status_code, request, body, timestamp=timestamp, attempts=attempts)

    def _summary(self) -> str:
        summary = super()._summary()
        if self.retry_after is not None:
            summary += f" (Retry-After: {self.retry_after:g} s)"
        return summary


class RateLimitError(_RetryAfterError):
    """429: the rate limit held even after retries.

    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    """


class ServerError(_RetryAfterError):
    """5xx: the server failed, even after retries.

    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent
    one (a 503 often does); it is honoured before a retry, as for a 429.
    """


class APIConnectionError(OxystatsError):
    """No answer came: the connection was refused or dropped, or an attempt timed out.

    Its ``__cause__`` is a copy of the transport's error, of the same class,
    whose message has the key redacted and which holds no request (the
    original's request carries the key in its headers).

    Args:
        message: What happened.
        request: What was asked.
        attempts: How many requests were sent, retries included.
    """

    request: RequestInfo
    """What was asked."""
    attempts: int
    """How many requests were sent, retries included."""
    reason: str
    """What failed: the transport error's class name (``"ConnectError"``,
    ``"ReadTimeout"``, ...) or ``"AttemptTimeout"`` when an attempt took
    longer than its ``timeout``."""

    def __init__(
        self, message: str, request: RequestInfo, *, attempts: int = 1, reason: str = ""
    ) -> None:
        self.request = request
        self.attempts = attempts
        self.reason = reason or "APIConnectionError"
        super().__init__(f"{message} ({request}, {attempts} attempt(s))")


class ResponseFormatError(OxystatsError):
    """A successful response was not what was asked, or contradicted itself.

    Nothing is built from such a response: no report, no row.

    Args:
        message: What is wrong, and what was expected.
        request: What was asked.
        field: The offending field, as a path such as ``data[3].requests``.
    """

    request: RequestInfo
    """What was asked."""
    field: str | None
    """The offending field, as a path such as ``data[3].requests`` or ``meta.pagination.page``."""

    def __init__(self, message: str, request: RequestInfo, *, field: str | None = None) -> None:
        self.request = request
        self.field = field
        where = f" at {field}" if field else ""
        super().__init__(f"malformed response to {request}{where}: {message}")


class DeadlineExceeded(OxystatsError):
    """A call's ``deadline`` passed: everything it had in flight was cancelled.

    Args:
        deadline: The deadline, in seconds.
        requests: Requests the call sent before it.
        pages: Pages the call fetched before it.
    """

    deadline: float
    """The deadline, in seconds."""
    requests: int
    """Requests the call sent before the deadline, retries included."""
    pages: int
    """Pages the call fetched (and checked) before the deadline."""

    def __init__(self, deadline: float, *, requests: int, pages: int) -> None:
        self.deadline = deadline
        self.requests = requests
        self.pages = pages
        super().__init__(
            f"the call's deadline of {deadline:g} s passed, after {requests} request(s) "
            f"and {pages} page(s); what was in flight was cancelled"
        )


class DatabaseError(OxystatsError):
    """The database of [`sync_usage`][oxystats.sync_usage] failed or refused a statement.

    The driver's own exception is the ``__cause__``. The message names the
    database by its URL with the password hidden.
    """


class SyncInProgressError(OxystatsError):
    """Another [`sync_usage`][oxystats.sync_usage] of the same table is running.

    Raised before this sync wrote or requested anything: it did nothing.
    Run it again once the other one is done (a scheduled job can simply wait
    for its next turn).
    """


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
}


def error_for_status(
    status_code: int,
    request: RequestInfo,
    body: str,
    *,
    timestamp: datetime | None = None,
    attempts: int = 1,
    retry_after: float | None = None,
) -> APIError:
    """Build the exception that documents ``status_code``."""
    if status_code == 429 or status_code >= 500:
        # The two errors a server may ask to retry later (Retry-After).
        retried = RateLimitError if status_code == 429 else ServerError
        return retried(
            status_code,
            request,
            body,
            timestamp=timestamp,
            attempts=attempts,
            retry_after=retry_after,
        )
    cls = _BY_STATUS.get(status_code, APIError)
    return cls(status_code, request, body, timestamp=timestamp, attempts=attempts)


@functools.lru_cache(maxsize=64)
def secret_forms(secret: str) -> tuple[str, ...]:
    """Every way ``secret`` may appear in a body, a URL or a message, longest first.

    As it is; JSON-escaped (``\\u0000``, ``\\"``); JSON-escaped with ``/``
    as ``\\/`` (as PHP and others send it); percent-encoded; and its repr.
    """
    if not secret:
        return ()
    escaped = json.dumps(secret)[1:-1]
    forms = {
        secret,
        escaped,
        escaped.replace("/", "\\/"),
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        repr(secret)[1:-1],
    }
    return tuple(sorted(forms, key=len, reverse=True))


# A JSON string literal, escapes included.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _redact_json_strings(text: str, secrets: Sequence[str]) -> str:
    """Redact secrets hidden by escapes in JSON strings (``\\u0073k...``, Go's ``\\u003c``)."""

    def decoded_and_redacted(match: re.Match[str]) -> str:
        literal = match.group(0)
        if "\\" not in literal:
            return literal
        try:
            value = json.loads(literal)
        except ValueError:
            return literal
        if not any(secret in value for secret in secrets if secret):
            return literal
        return json.dumps(redact(value, secrets))

    return _JSON_STRING.sub(decoded_and_redacted, text)


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every occurrence of each secret in ``text``, in any of its `secret_forms`.

    Escapes in JSON strings are seen through too: a string that decodes to
    one holding a secret is written anew, redacted.
    """
    for secret in secrets:
        for form in secret_forms(secret):
            text = text.replace(form, "[REDACTED]")
    if "\\" in text:
        text = _redact_json_strings(text, secrets)
    return text


def scrub(error: BaseException, secrets: Sequence[str]) -> None:
    """Redact ``secrets`` from ``error`` and every exception chained to it, in place.

    Their messages (``args``) and their text attributes (an error's ``body``)
    are rewritten: whatever a server echoed into a message cannot leak the key.
    """
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.args = tuple(
            redact(arg, secrets) if isinstance(arg, str) else arg for arg in current.args
        )
        for name, value in list(vars(current).items()):
            if isinstance(value, str):
                setattr(current, name, redact(value, secrets))
        pending.extend(link for link in (current.__cause__, current.__context__) if link)


class UnknownInstanceWarning(UserWarning):
    """Some requested instance ids are unknown to the API, which ignores them."""
