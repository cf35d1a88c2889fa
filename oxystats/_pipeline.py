"""One request, start to end: limiter, httpx, status, retries, JSON.

`RequestPipeline.get_json` is the only place where oxystats talks to the
network. Everything it decides (the URL, what a status means, whether and when
to retry) is a pure function of `oxystats._protocol` and `oxystats._retry`.

Whatever goes wrong on the way leaves as a documented exception: an answer
with an error status as `APIError`, no (complete) answer as
`APIConnectionError`, an answer that is not a page as `ResponseFormatError`.
httpx's own errors never leave, because they hold the request, and with it
the key in its headers: each is replaced by a copy that holds neither.
"""

from __future__ import annotations

import contextlib
import math
import platform
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import httpx

from oxystats._errors import (
    APIConnectionError,
    APIError,
    RequestInfo,
    ResponseFormatError,
    redact,
)
from oxystats._events import Observers, PauseEvent, RequestEvent
from oxystats._limiter import RequestLimiter
from oxystats._protocol import MAX_BODY_BYTES, decode_json, raise_for_status, request_url
from oxystats._retry import RetryEvent, RetryPolicy, call_with_retries, parse_retry_after
from oxystats._version import __version__

__all__: list[str] = []

USER_AGENT = f"oxystats/{__version__} python/{platform.python_version()}"
"""Says which client sent a request."""

_DEFAULT_RETRY_PAUSE = 1.0
"""How long a 429 without ``Retry-After`` pauses the key's limiter, in seconds."""

_PAUSING_STATUSES = frozenset({429, 503})
"""Statuses whose ``Retry-After`` holds back the whole key, not just one request."""

_LOOP_TOKEN: anyio.lowlevel.RunVar[object] = anyio.lowlevel.RunVar("oxystats._pipeline.loop")


@attrs.define
class Counters:
    """What a client has done so far, over every view of it."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0


@attrs.define
class CallProgress:
    """What one call (one `usage`, one stream) has done, and when it must be over."""

    deadline_at: float = math.inf
    """When the call must be over, on the event loop's clock."""
    requests: int = 0
    """Requests sent, retries included."""
    pages: int = 0
    """Pages fetched and checked."""


@attrs.frozen
class CallOptions:
    """How one call behaves: these differ between a client and its `with_options` views."""

    timeout: float | None
    """Seconds for each attempt, as a whole; `None` leaves an injected pool's own alone."""
    retry_policy: RetryPolicy
    """What to retry and how long to wait."""
    deadline: float | None
    """Seconds for a whole call, or `None`."""


class Connection:
    """What every view of one client shares: the pool, the key's limiter, the counters."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        base_url: str,
        headers: dict[str, str] | None,
        limiter: RequestLimiter,
        secrets: tuple[str, ...],
        observers: Observers,
    ) -> None:
        self.http = http
        self.base_url = base_url
        self.headers = headers
        self.limiter = limiter
        self.secrets = secrets
        self.observers = observers
        self.counters = Counters()
        self._loop: object | None = None

    def check_event_loop(self) -> None:
        """Refuse a second event loop: the pool's connections belong to the first."""
        token = _LOOP_TOKEN.get(None)
        if token is None:
            token = object()
            _LOOP_TOKEN.set(token)
        if self._loop is None:
            self._loop = token
        elif self._loop is not token:
            raise RuntimeError(
                "this oxystats.AsyncClient was first used in another event loop, whose "
                "connections it holds; create one client per event loop (per asyncio.run() "
                "or trio.run()), or use the blocking oxystats.Client"
            )


class _Attempts:
    """Counts the attempts of one request (not of the client: requests run concurrently)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


def sanitized(exc: httpx.HTTPError, secrets: tuple[str, ...]) -> httpx.HTTPError:
    """A copy of an httpx error without its request (whose headers hold the key).

    Same class, so ``isinstance(error.__cause__, httpx.ConnectTimeout)`` and
    the retry policy still work; the message is redacted; no cause, no context.
    """
    message = redact(str(exc), secrets)
    try:
        clone = type(exc)(message)
    except TypeError:  # a subclass with another signature: keep the family
        clone = httpx.TransportError(message)
    clone.__suppress_context__ = True
    return clone


def _too_large(request: RequestInfo, detail: str) -> ResponseFormatError:
    return ResponseFormatError(
        f"the body is more than the {MAX_BODY_BYTES:,} bytes a page can be: {detail}",
        request,
        field="body",
    )


def _capped(body: bytes, request: RequestInfo) -> bytes:
    if len(body) > MAX_BODY_BYTES:
        raise _too_large(request, f"it has {len(body):,}")
    return body


async def _read_raw(chunks: AsyncIterator[bytes], request: RequestInfo) -> bytes:
    """The body as sent, read until its end or until it is too large."""
    raw = bytearray()
    async for chunk in chunks:
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise _too_large(request, "the rest was not read")
    return bytes(raw)


async def _abandon(response: httpx.Response, chunks: AsyncIterator[bytes]) -> None:
    """Stop reading a response midway, and leave none of httpx's generators half-run.

    httpx reads a body through several nested async generators; one left
    suspended is finalised by the garbage collector (trio warns of it). Closing
    the response first makes the rest of the iteration fail at once, which
    runs every one of them to its end.
    """
    await response.aclose()
    with contextlib.suppress(httpx.HTTPError, httpx.StreamError):
        async for _ in chunks:
            pass


class RequestPipeline:
    """Sends requests for one API key: through its limiter, with retries.

    Args:
        connection: The pool, limiter and counters, shared by every view.
        options: How calls made through this pipeline behave.
    """

    def __init__(self, connection: Connection, options: CallOptions) -> None:
        self.connection = connection
        self.options = options

    def with_options(self, options: CallOptions) -> RequestPipeline:
        """A pipeline on the same connection that behaves as ``options`` say."""
        return RequestPipeline(self.connection, options)

    def _on_retry(self, event: RetryEvent) -> None:
        self.connection.counters.retries += 1
        self.connection.observers.retry(event)

    def _pause_for(self, response: httpx.Response) -> float | None:
        """After a 429 or a 503: hold the whole key back for the server's Retry-After."""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None and response.status_code != 429:
            return None
        pause = _DEFAULT_RETRY_PAUSE if retry_after is None else retry_after
        # A Retry-After beyond the policy's cap is raised, not waited for, so it
        # must not stall this key's later calls either.
        if pause <= self.options.retry_policy.max_retry_after:
            self.connection.limiter.pause(pause)
            said = "no Retry-After" if retry_after is None else f"Retry-After: {retry_after:g}"
            self.connection.observers.pause(
                PauseEvent(pause, f"{response.status_code} with {said}")
            )
        return retry_after

    async def _read_body(self, response: httpx.Response, request: RequestInfo) -> bytes:
        """The whole body, decoded, but never more than `MAX_BODY_BYTES` of it.

        Raises:
            ResponseFormatError: The body is larger (declared, sent or decoded).
            httpx.DecodingError: The body is not encoded as its headers declare.
        """
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise _too_large(request, f"would be {int(declared):,} bytes; it was not read")
        if response.is_stream_consumed:
            # Built in memory (a test transport): already read and decoded.
            return _capped(response.content, request)
        chunks = response.aiter_raw()
        try:
            raw = await _read_raw(chunks, request)
        except BaseException:
            await _abandon(response, chunks)
            raise
        if response.headers.get("Content-Encoding", "identity").strip().lower() == "identity":
            return raw
        # Decoded here, step by step and synchronously, so that a small body
        # that decodes to gigabytes (a compression bomb) is cut off early.
        encoded = httpx.Response(response.status_code, headers=response.headers, content=raw)
        body = bytearray()
        for chunk in encoded.iter_bytes():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise _too_large(request, "once decoded; the rest was not decoded")
        return bytes(body)

    async def _exchange(
        self, http_request: httpx.Request, request: RequestInfo
    ) -> tuple[httpx.Response, bytes]:
        response = await self.connection.http.send(http_request, stream=True)
        try:
            content = await self._read_body(response, request)
        finally:
            await response.aclose()
        return response, content

    async def _send_once(
        self, request: RequestInfo, attempts: _Attempts, progress: CallProgress
    ) -> bytes:
        connection = self.connection
        timeout = self.options.timeout
        # Built before the wait: once the limiter says go, every microsecond
        # until the request is out is lost throughput.
        http_request = connection.http.build_request(
            "GET",
            request_url(connection.base_url, request),
            headers=connection.headers,
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
        )
        entered = anyio.current_time()
        attempts.count += 1
        async with connection.limiter.slot() as timing:
            connection.counters.requests += 1
            progress.requests += 1
            # Notes when the request really goes out (after any connect).
            http_request.extensions["trace"] = timing.trace
            status: int | None = None
            error: str | None = None
            # Raised below, outside the handler: inside it, the original httpx
            # error (whose request holds the key) would become the new one's context.
            lost: tuple[str, httpx.HTTPError] | None = None
            try:
                # The whole attempt, not each socket read: a server that trickles
                # its body byte by byte cannot hold it longer than `timeout`.
                with anyio.fail_after(math.inf if timeout is None else timeout):
                    response, content = await self._exchange(http_request, request)
                status = response.status_code
            except TimeoutError:
                error = "AttemptTimeout"
                lost = (
                    f"no complete answer within the {timeout:g} s timeout",
                    httpx.TimeoutException(f"the attempt took longer than {timeout:g} s"),
                )
            except httpx.HTTPError as exc:
                error = type(exc).__name__
                message = redact(str(exc), connection.secrets)
                lost = (
                    f"{error}: {message}" if message else error,
                    sanitized(exc, connection.secrets),
                )
            except BaseException:
                # Cancelled (the call's deadline, or the caller), or our own bug.
                error = "Cancelled"
                raise
            finally:
                if connection.observers.wants_requests:
                    connection.observers.request(
                        RequestEvent(
                            request=request,
                            attempt=attempts.count,
                            status=status,
                            error=error,
                            elapsed=anyio.current_time() - (timing.sent_at or timing.granted_at),
                            limiter_wait=timing.granted_at - entered,
                        )
                    )
            if lost is not None:
                message, cause = lost
                raise APIConnectionError(
                    message, request, attempts=attempts.count, reason=error or ""
                ) from cause
            retry_after = None
            if response.status_code == 429:
                connection.counters.rate_limited += 1
                connection.limiter.note_refusal(timing)
            if response.status_code in _PAUSING_STATUSES:
                # Before the slot is given back: released first, it would go at
                # once to a task waiting for it, inside the pause.
                retry_after = self._pause_for(response)
        raise_for_status(
            response.status_code,
            content,
            request,
            retry_after=retry_after,
            secrets=connection.secrets,
        )
        return content

    async def get_json(self, request: RequestInfo, progress: CallProgress) -> Any:
        """Send ``request`` (retrying what is worth it) and decode the JSON body.

        The call it belongs to has checked the event loop (`Connection.check_event_loop`).

        Raises:
            APIError: The server answered with an error status, after retries.
            APIConnectionError: No complete answer came, after retries.
            ResponseFormatError: The body is not JSON (or is too large).
        """
        attempts = _Attempts()
        try:
            content = await call_with_retries(
                lambda: self._send_once(request, attempts, progress),
                self.options.retry_policy,
                on_retry=self._on_retry,
                describe=request,
                deadline_at=progress.deadline_at,
            )
        except (APIError, APIConnectionError) as exc:
            exc.attempts = attempts.count
            raise
        return decode_json(content, request)
