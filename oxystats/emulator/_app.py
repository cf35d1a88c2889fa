"""The Starlette app: HTTP around an `Emulator`.

The two API endpoints are raw ASGI callables rather than request/response
functions: they must hold an in-flight slot until the last byte is sent, and
the dropped-connection fault needs to send a partial body and then fail.
The order for every API request is: method, authentication (403/401), one
fault draw, rate limits (429), injected latency, then the fault or the answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ._config import ADMIN_PREFIX
from ._faults import DroppedConnection, Fault, FaultDecision
from ._log import ANONYMOUS, UNKNOWN_KEY
from ._ratelimit import Ticket
from ._responses import WRONG_SHAPE_BODY, error_body, headers

if TYPE_CHECKING:
    from ._emulator import Emulator

__all__ = ["build_app"]


_Render = Callable[[str], tuple[int, bytes]]

_ERROR_BODIES = {status: error_body(status) for status in (401, 403, 404, 405, 429, 500, 503)}


async def _send(send: Send, status: int, body: bytes, *extra: tuple[bytes, bytes]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers(body, *extra)})
    await send({"type": "http.response.body", "body": body})


def _retry_after(seconds: int) -> tuple[bytes, bytes]:
    return (b"retry-after", str(seconds).encode())


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
        # Drawn before the limiter so the fault sequence does not depend on timing.
        decision = emulator.injector.draw()
        limiter = emulator.limiter
        ticket = limiter.acquire(identity.key_id, identity.account, arrived)
        if not isinstance(ticket, Ticket):
            await _send(send, 429, _ERROR_BODIES[429], _retry_after(ticket))
            emulator.record(arrived, method, path, query, identity.key_id, 429)
            return
        status = 0
        fault = None if decision.fault is Fault.NONE else decision.fault.value
        try:
            status = await self._answer(decision, query, send)
        except DroppedConnection as dropped:
            status = dropped.status
            raise
        finally:
            limiter.release(ticket)
            emulator.record(arrived, method, path, query, identity.key_id, status, fault)

    async def _answer(self, decision: FaultDecision, query: str, send: Send) -> int:
        """Send the (possibly faulty) response; return the status sent."""
        if decision.latency > 0:
            await anyio.sleep(decision.latency)
        fault = decision.fault
        if fault is Fault.ERROR_500 or fault is Fault.ERROR_503:
            status = 500 if fault is Fault.ERROR_500 else 503
            await _send(send, status, _ERROR_BODIES[status])
            return status
        if fault is Fault.SPURIOUS_429:
            retry_after = self.emulator.faults.retry_after
            extra = (_retry_after(retry_after),) if retry_after else ()
            await _send(send, 429, _ERROR_BODIES[429], *extra)
            return 429
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
        if fault is Fault.DROP_CONNECTION:
            # Promise the whole body, deliver half, then fail: the server closes
            # the connection and the client sees it die mid-response.
            await send({"type": "http.response.start", "status": status, "headers": headers(body)})
            await send(
                {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
            )
            raise DroppedConnection("emulated fault: connection dropped mid-response", status)
        if status == 200 and fault is Fault.TRUNCATED_BODY:
            body = body[: len(body) // 2]
        elif status == 200 and fault is Fault.WRONG_SHAPE_BODY:
            body = WRONG_SHAPE_BODY
        await _send(send, status, body)
        return status


class _NotFound:
    """Any other path: a JSON 404 (Starlette's default is plain text)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send(send, 404, _ERROR_BODIES[404])


def build_app(emulator: Emulator) -> Starlette:
    """The Starlette app serving ``emulator``; also reachable as ``app.state.emulator``."""

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(emulator.stats())

    async def log(request: Request) -> JSONResponse:
        raw = request.query_params.get("last", "100")
        last = int(raw) if raw.isdigit() else 100
        return JSONResponse([entry.as_json() for entry in emulator.log.snapshot(last)])

    async def reset(request: Request) -> JSONResponse:
        emulator.reset()
        return JSONResponse({"reset": True})

    routes = [
        Route(
            "/stats/v1/usage",
            _ApiEndpoint(emulator, emulator.usage_response, emulator.cached_usage_response),
        ),
        Route("/stats/v1/filters/instances", _ApiEndpoint(emulator, emulator.instances_response)),
        # Admin endpoints for an emulator in another process; no auth, never logged.
        Route(f"{ADMIN_PREFIX}/stats", stats, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/log", log, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/reset", reset, methods=["POST"]),
        Route("/{path:path}", _NotFound()),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = emulator
    return app
