"""One request, start to end: limiter, httpx, status, retries, JSON.

`RequestPipeline.get_json` is the only place where oxystats talks to the
network. Everything it decides (the URL, what a status means, whether and when
to retry) is a pure function of `oxystats._protocol` and `oxystats._retry`.
"""

from __future__ import annotations

from typing import Any

import attrs
import httpx

from oxystats._errors import APIConnectionError, APIError, RequestInfo
from oxystats._limiter import RequestLimiter
from oxystats._protocol import decode_json, raise_for_status, request_url
from oxystats._retry import RetryEvent, RetryPolicy, call_with_retries, parse_retry_after

__all__: list[str] = []

_DEFAULT_RETRY_PAUSE = 1.0
"""How long a 429 without ``Retry-After`` pauses the key's limiter, in seconds."""


@attrs.define
class Counters:
    """What a pipeline has done so far."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0


class RequestPipeline:
    """Sends requests for one API key: through its limiter, with retries.

    Args:
        http: The pool to send with.
        base_url: Where the API lives.
        headers: Headers for every request (the key), or `None` if ``http``
            carries them itself.
        limiter: The key's limiter.
        retry_policy: What to retry and how long to wait.
        secrets: Strings to redact from anything the pipeline raises.
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        base_url: str,
        headers: dict[str, str] | None,
        limiter: RequestLimiter,
        retry_policy: RetryPolicy,
        secrets: tuple[str, ...],
    ) -> None:
        self.http = http
        self.base_url = base_url
        self.headers = headers
        self.limiter = limiter
        self.retry_policy = retry_policy
        self.secrets = secrets
        self.counters = Counters()

    def _on_retry(self, event: RetryEvent) -> None:
        self.counters.retries += 1

    async def _send_once(self, request: RequestInfo) -> bytes:
        # Built before the wait: once the limiter says go, every microsecond
        # until the request is out is lost throughput.
        http_request = self.http.build_request(
            "GET", request_url(self.base_url, request), headers=self.headers
        )
        async with self.limiter.slot() as timing:
            self.counters.requests += 1
            # Notes when the request really goes out (after any connect).
            http_request.extensions["trace"] = timing.trace
            response = await self.http.send(http_request)
            # Only a 429's Retry-After is used (RateLimitError carries it).
            retry_after = None
            if response.status_code == 429:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                self.counters.rate_limited += 1
                # Hold back every task of this key, not just the one that was
                # refused, and before the slot is given back: released first, it
                # would go at once to a task waiting for it, inside the pause.
                pause = _DEFAULT_RETRY_PAUSE if retry_after is None else retry_after
                # A Retry-After beyond the policy's cap is raised, not waited
                # for, so it must not stall this key's later calls either.
                if pause <= self.retry_policy.max_retry_after:
                    self.limiter.pause(pause)
        raise_for_status(
            response.status_code,
            response.content,
            request,
            retry_after=retry_after,
            secrets=self.secrets,
        )
        return response.content

    async def get_json(self, request: RequestInfo) -> Any:
        """Send ``request`` (retrying what is worth it) and decode the JSON body."""
        sent_before = self.counters.requests
        try:
            content = await call_with_retries(
                lambda: self._send_once(request),
                self.retry_policy,
                on_retry=self._on_retry,
                describe=request,
            )
        except APIError as exc:
            exc.attempts = self.counters.requests - sent_before
            raise
        except httpx.TransportError as exc:
            raise APIConnectionError(
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                request,
                attempts=self.counters.requests - sent_before,
            ) from exc
        return decode_json(content, request)
