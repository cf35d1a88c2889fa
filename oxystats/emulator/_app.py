"""The Starlette app: HTTP around an `Emulator`.

The two API endpoints are raw ASGI callables rather than request/response
functions: they must hold an in-flight slot until the last byte is sent, and
some faults send a body in pieces, fail half-way, or never answer at all.
The order for every API request is: method, authentication (403/401), one
fault draw, the arrival jitter's hold and then the arrival stamp, rate limits
(429), injected latency, then the fault or the answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

import anyio
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ._admin import admin_routes
from ._faults import NO_FAULT, DroppedConnection, Fault, FaultDecision
from ._log import ANONYMOUS, UNKNOWN_KEY
from ._ratelimit import Ticket
from ._responses import WRONG_SHAPE_BODY, error_body, headers, json_headers, with_total_pages

if TYPE_CHECKING:
    from ._emulator import Emulator

__all__ = ["build_app"]


_Render = Callable[[str], tuple[int, bytes]]

_ERROR_BODIES = {status: error_body(status) for status in (401, 403, 404, 405, 429, 500, 503)}

# What an oversized body is padded with, one send at a time: never built whole.
_PADDING = b" " * 65_536


async def _send(send: Send, status: int, body: bytes, *extra: tuple[bytes, bytes]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers(body, *extra)})
    await send({"type": "http.response.body", "body": body})


def _retry_after(seconds: int) -> tuple[bytes, bytes]:
    return (b"retry-after", str(seconds).encode())


def _without_page(query: str) -> str:
    """``query`` as a proxy that strips the ``page`` parameter forwards it."""
    return "&".join(
        part for part in query.split("&") if unquote_plus(part.partition("=")[0]) != "page"
    )


async def _until_disconnected(receive: Receive) -> None:
    """Return once the client has gone away (or, in-process, the response is complete)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _trickle(send: Send, receive: Receive, status: int, body: bytes, interval: float) -> None:
    """Send ``body`` one byte every ``interval`` seconds, stopping if the client leaves."""
    await send({"type": "http.response.start", "status": status, "headers": headers(body)})
    async with anyio.create_task_group() as group:

        async def stop_when_disconnected() -> None:
            # The server drops sends to a closed connection silently: without
            # this, a body that takes minutes would go on trickling into nothing.
            await _until_disconnected(receive)
            group.cancel_scope.cancel()

        group.start_soon(stop_when_disconnected)
        last = len(body) - 1
        for index in range(len(body)):
            if index:
                await anyio.sleep(interval)
            chunk = body[index : index + 1]
            await send({"type": "http.response.body", "body": chunk, "more_body": index < last})
        group.cancel_scope.cancel()


async def _send_padded(send: Send, body: bytes, size: int) -> None:
    """A 200 of ``body`` followed by whitespace up to ``size`` bytes, streamed in chunks."""
    await send({"type": "http.response.start", "status": 200, "headers": json_headers(size)})
    await send({"type": "http.response.body", "body": body, "more_body": True})
    left = size - len(body)
    while left > 0:
        chunk = _PADDING if left >= len(_PADDING) else _PADDING[:left]
        left -= len(chunk)
        await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})


class _ApiEndpoint:
    """One API endpoint: authentication, limits, faults, then ``render(query_string)``."""

    def __init__(
        self,
        emulator: Emulator,
        render: _Render,
        render_cached: Callable[[str], tuple[int, bytes] | None] | None = None,
    ) -> None:
        self.emulator = emulator
        self.render = render
        self.render_cached = render_cached

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        emulator = self.emulator
        arrived = time.monotonic()
        method: str = scope["method"]
        path: str = scope["path"]
        query = scope["query_string"].decode("latin-1")
        if method != "GET":
            await _send(send, 405, _ERROR_BODIES[405], (b"allow", b"GET"))
            emulator.record(arrived, method, path, query, ANONYMOUS, 405)
            return
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
                break
        identity = emulator.identify(authorization)
        if isinstance(identity, int):
            await _send(send, identity, _ERROR_BODIES[identity])
            key_id = ANONYMOUS if identity == 403 else UNKNOWN_KEY
            emulator.record(arrived, method, path, query, key_id, identity)
            return
        # Drawn before the limiter (and before any jitter) so the fault
        # sequence does not depend on timing.
        decision = emulator.injector.draw()
        delays = emulator.arrival_delays
        if delays is not None:
            # A network path: the request reaches the gateway, which stamps
            # its arrival and applies the limits, only once it is through.
            # Held by the stamping clock, until an instant rather than for an
            # event: a loop's timer may fire a little early (uvloop rounds to
            # milliseconds from a cached time).
            through = arrived + delays.draw()
            while (arrived := time.monotonic()) < through:  # noqa: ASYNC110
                await anyio.sleep(through - arrived)
        limiter = emulator.limiter
        ticket = limiter.acquire(identity.key_id, identity.account, arrived)
        if not isinstance(ticket, Ticket):
            await _send(send, 429, _ERROR_BODIES[429], _retry_after(ticket))
            emulator.record(arrived, method, path, query, identity.key_id, 429)
            return
        status = 0
        fault = None if decision.fault is Fault.NONE else decision.fault.value
        try:
            if decision is NO_FAULT:
                status = await self._answer(query, send)
            else:
                status = await self._answer_with_fault(decision, query, receive, send)
        except DroppedConnection as dropped:
            status = dropped.status
            raise
        finally:
            limiter.release(ticket)
            emulator.record(arrived, method, path, query, identity.key_id, status, fault)

    async def _answer(self, query: str, send: Send) -> int:
        """Send the real answer; return its status. The path of every request without faults."""
        if self.render_cached is None:
            answer: tuple[int, bytes] | None = self.render(query)
        else:
            answer = self.render_cached(query)
        if answer is None:
            # A fresh aggregate takes tens of milliseconds. Computed on the event
            # loop, it would hold back the requests arriving meanwhile, and the
            # rate limiter would stamp them late and bunched together, which a
            # real gateway does not do. In a thread, the loop keeps stamping.
            answer = await anyio.to_thread.run_sync(self.render, query)
        status, body = answer
        await _send(send, status, body)
        return status

    async def _answer_with_fault(
        self, decision: FaultDecision, query: str, receive: Receive, send: Send
    ) -> int:
        """Send the faulty (or only late) response; return the status sent, 0 for none."""
        if decision.latency > 0:
            await anyio.sleep(decision.latency)
        fault = decision.fault
        faults = self.emulator.faults
        if fault is Fault.NONE:
            return await self._answer(query, send)
        if fault is Fault.ERROR_500 or fault is Fault.ERROR_503:
            status = 500 if fault is Fault.ERROR_500 else 503
            await _send(send, status, _ERROR_BODIES[status])
            return status
        if fault is Fault.SPURIOUS_429:
            extra = (_retry_after(faults.retry_after),) if faults.retry_after else ()
            await _send(send, 429, _ERROR_BODIES[429], *extra)
            return 429
        if fault is Fault.HANG:
            # Accepted, then nothing: the slot stays taken until the client
            # gives up or the server stops (and closes the connection).
            await _until_disconnected(receive)
            return 0
        if fault is Fault.IGNORE_PAGE:
            query = _without_page(query)
        status, body = await self._render(query)
        if fault is Fault.DROP_CONNECTION:
            # Promise the whole body, deliver half, then fail: the server closes
            # the connection and the client sees it die mid-response.
            await send({"type": "http.response.start", "status": status, "headers": headers(body)})
            await send(
                {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
            )
            raise DroppedConnection("emulated fault: connection dropped mid-response", status)
        if fault is Fault.TRICKLE_BODY:
            await _trickle(send, receive, status, body, faults.trickle_interval)
            return status
        if status == 200:
            if fault is Fault.TRUNCATED_BODY:
                body = body[: len(body) // 2]
            elif fault is Fault.WRONG_SHAPE_BODY:
                body = WRONG_SHAPE_BODY
            elif fault is Fault.INFLATE_TOTAL_PAGES:
                inflated = faults.inflated_total_pages
                body = with_total_pages(body, lambda page, total: inflated)
            elif fault is Fault.GROW_TOTAL_PAGES:
                body = with_total_pages(body, lambda page, total: total + 1 if page >= 2 else total)
            elif fault is Fault.OVERSIZED_BODY and faults.oversized_bytes > len(body):
                await _send_padded(send, body, faults.oversized_bytes)
                return status
        await _send(send, status, body)
        return status

    async def _render(self, query: str) -> tuple[int, bytes]:
        """Status and body of the real answer to ``query``."""
        if self.render_cached is None:
            return self.render(query)
        answer = self.render_cached(query)
        if answer is None:
            answer = await anyio.to_thread.run_sync(self.render, query)
        return answer


class _NotFound:
    """Any other path: a JSON 404 (Starlette's default is plain text)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send(send, 404, _ERROR_BODIES[404])


def build_app(emulator: Emulator) -> Starlette:
    """The Starlette app serving ``emulator``; also reachable as ``app.state.emulator``."""
    routes = [
        Route(
            "/stats/v1/usage",
            _ApiEndpoint(emulator, emulator.usage_response, emulator.cached_usage_response),
        ),
        Route("/stats/v1/filters/instances", _ApiEndpoint(emulator, emulator.instances_response)),
        # Admin endpoints for an emulator in another process; no auth, never logged.
        *admin_routes(emulator),
        Route("/{path:path}", _NotFound()),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = emulator
    return app
