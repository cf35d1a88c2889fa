"""Exceptions raised by oxystats, and the support report the vendor asks for.

The hierarchy::

    OxystatsError
    ├── APIError                  the server answered with an error status
    │   ├── BadRequestError       400: the request was malformed
    │   ├── AuthenticationError   401: the API key is invalid
    │   ├── PermissionDeniedError 403: the API key is missing or not allowed
    │   ├── RateLimitError        429: too many requests, even after retries
    │   └── ServerError           5xx: the server failed, even after retries
    ├── APIConnectionError        the transport failed (connect, read, timeout) after retries
    ├── ResponseFormatError       a 2xx response did not match the documented shape
    ├── DatabaseError             sync_usage: the database failed or refused a statement
    └── SyncInProgressError       sync_usage: another sync of the same table is running

Bad arguments never reach the network: they raise `ValueError` or
`TypeError` before any request is sent.

No exception carries the API key: requests are described by `RequestInfo`
(method, path, query) and never by their headers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlencode

import attrs

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "DatabaseError",
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
    """Base class of every error oxystats raises on purpose."""


class APIError(OxystatsError):
    """The Dashboard API answered with an error status.

    Attributes:
        status_code: the HTTP status.
        request: the [`RequestInfo`][oxystats.RequestInfo] of the failing request.
        body: the response body as text (the key, if the server echoed it, redacted).
        timestamp: when the response arrived, in UTC.
        attempts: how many requests were sent, retries included.
    """

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
        except ValueError:
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

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_api_error,
            (type(self), self.status_code, self.request, self.body, self.timestamp, self.attempts),
        )

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


def _rebuild_api_error(
    cls: type[APIError],
    status_code: int,
    request: RequestInfo,
    body: str,
    timestamp: datetime,
    attempts: int,
) -> APIError:
    return cls(status_code, request, body, timestamp=timestamp, attempts=attempts)


class BadRequestError(APIError):
    """400: the server could not understand the request."""


class AuthenticationError(APIError):
    """401: the API key is invalid."""


class PermissionDeniedError(APIError):
    """403: the API key is missing, or access is denied."""


class RateLimitError(APIError):
    """429: the rate limit held even after retries.

    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    """

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

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_rate_limit_error,
            (
                self.status_code,
                self.request,
                self.body,
                self.timestamp,
                self.attempts,
                self.retry_after,
            ),
        )


def _rebuild_rate_limit_error(
    status_code: int,
    request: RequestInfo,
    body: str,
    timestamp: datetime,
    attempts: int,
    retry_after: float | None,
) -> RateLimitError:
    return RateLimitError(
        status_code,
        request,
        body,
        timestamp=timestamp,
        attempts=attempts,
        retry_after=retry_after,
    )


class ServerError(APIError):
    """5xx: the server failed."""


class APIConnectionError(OxystatsError):
    """The request never got an answer: connection refused or dropped, or a timeout.

    The transport error from httpx is the ``__cause__``.
    """

    def __init__(self, message: str, request: RequestInfo, *, attempts: int = 1) -> None:
        self.request = request
        self.attempts = attempts
        super().__init__(f"{message} ({request}, {attempts} attempt(s))")


class ResponseFormatError(OxystatsError):
    """A successful response did not match the documented shape.

    ``field`` names the offending field as a path such as ``data[3].requests``.
    """

    def __init__(self, message: str, request: RequestInfo, *, field: str | None = None) -> None:
        self.request = request
        self.field = field
        where = f" at {field}" if field else ""
        super().__init__(f"malformed response to {request}{where}: {message}")


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
    if status_code == 429:
        return RateLimitError(
            status_code,
            request,
            body,
            timestamp=timestamp,
            attempts=attempts,
            retry_after=retry_after,
        )
    cls = ServerError if status_code >= 500 else _BY_STATUS.get(status_code, APIError)
    return cls(status_code, request, body, timestamp=timestamp, attempts=attempts)


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every occurrence of each secret in ``text``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return text


class UnknownInstanceWarning(UserWarning):
    """Some requested instance ids are unknown to the API, which ignores them."""
