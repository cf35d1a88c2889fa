"""One request, start to end: limiter, httpx, status, retries, JSON.

`RequestPipeline.get_json` is the only place where oxystats talks to the
network. Everything it decides (the URL, what a status means, whether and when
to retry) is a pure function of `oxystats._protocol` and `oxystats._retry`.
"""

from __future__ import annotations

import platform
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import httpx

from oxystats._errors import APIConnectionError, APIError, RequestInfo
from oxystats._events import Observers, PauseEvent, RequestEvent
from oxystats._limiter import RequestLimiter
from oxystats._protocol import decode_json, raise_for_status, request_url
from oxystats._retry import RetryEvent, RetryPolicy, call_with_retries, parse_retry_after
from oxystats._version import __version__

__all__: list[str] = []

USER_AGENT = f"oxystats/{__version__} python/{platform.python_version()}"
"""Says which client sent a request."""

_DEFAULT_RETRY_PAUSE = 1.0
"""How long a 429 without ``Retry-After`` pauses the key's limiter, in seconds."""

_LOOP_TOKEN: anyio.lowlevel.RunVar[object] = anyio.lowlevel.RunVar("oxystats._pipeline.loop")


@attrs.define
class Counters:
    """What a client has done so far, over every view of it."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0


@attrs.frozen
class CallOptions:
    """How one call behaves: these differ between a client and its `with_options` views."""

    timeout: float | None
    """Seconds for each attempt; `None` leaves the pool's own timeouts alone."""
    retry_policy: RetryPolicy
    """What to retry and how long to wait."""


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
        """After a 429: hold the whole key back for the server's Retry-After."""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        pause = _DEFAULT_RETRY_PAUSE if retry_after is None else retry_after
        # A Retry-After beyond the policy's cap is raised, not waited for, so it
        # must not stall this key's later calls either.
        if pause <= self.options.retry_policy.max_retry_after:
            self.connection.limiter.pause(pause)
            said = "no Retry-After" if retry_after is None else f"Retry-After: {retry_after:g}"
            self.connection.observers.pause(PauseEvent(pause, f"429 with {said}"))
        return retry_after

    async def _send_once(self, request: RequestInfo, attempts: _Attempts) -> bytes:
        connection = self.connection
        # Built before the wait: once the limiter says go, every microsecond
        # until the request is out is lost throughput.
        http_request = connection.http.build_request(
            "GET",
            request_url(connection.base_url, request),
            headers=connection.headers,
            timeout=httpx.USE_CLIENT_DEFAULT
            if self.options.timeout is None
            else self.options.timeout,
        )
        entered = anyio.current_time()
        attempts.count += 1
        async with connection.limiter.slot() as timing:
            connection.counters.requests += 1
            # Notes when the request really goes out (after any connect).
            http_request.extensions["trace"] = timing.trace
            status: int | None = None
            error: str | None = None
            try:
                response = await connection.http.send(http_request)
                status = response.status_code
            except httpx.TransportError as exc:
                error = type(exc).__name__
                raise
            finally:
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
            retry_after = None
            if status == 429:
                connection.counters.rate_limited += 1
                connection.limiter.note_refusal(timing)
                # Before the slot is given back: released first, it would go at
                # once to a task waiting for it, inside the pause.
                retry_after = self._pause_for(response)
        raise_for_status(
            response.status_code,
            response.content,
            request,
            retry_after=retry_after,
            secrets=connection.secrets,
        )
        return response.content

    async def get_json(self, request: RequestInfo) -> Any:
        """Send ``request`` (retrying what is worth it) and decode the JSON body."""
        self.connection.check_event_loop()
        attempts = _Attempts()
        try:
            content = await call_with_retries(
                lambda: self._send_once(request, attempts),
                self.options.retry_policy,
                on_retry=self._on_retry,
                describe=request,
            )
        except APIError as exc:
            exc.attempts = attempts.count
            raise
        except httpx.TransportError as exc:
            raise APIConnectionError(
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                request,
                attempts=attempts.count,
            ) from exc
        return decode_json(content, request)
