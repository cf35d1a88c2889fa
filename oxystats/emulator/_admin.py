"""The emulator's own endpoints, under `ADMIN_PREFIX`: stats, log, reset and the clock.

They are for an emulator running in another process: no authentication,
never logged, never counted, and no faults.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._clock import format_instant, parse_instant
from ._config import ADMIN_PREFIX
from ._responses import error_body

if TYPE_CHECKING:
    from ._emulator import Emulator

__all__ = ["admin_routes", "move_clock"]

_CLOCK_USAGE = 'expected {"now": "2025-03-10T12:00:00Z"} (or null) or {"advance_seconds": 86400}'


def move_clock(emulator: Emulator, raw: bytes) -> None:
    """Apply a ``POST /__emulator__/now`` body to ``emulator``'s clock.

    Raises:
        ValueError: the body is not one of the two documented shapes, or its
            value is unusable (a naive or malformed datetime, a negative or
            non-finite advance, an advance without a clock).
        TypeError: the value is not a string (``now``) or a number (``advance_seconds``).
    """
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"the body is not JSON: {_CLOCK_USAGE}") from None
    if not isinstance(document, dict) or len(document) != 1:
        raise ValueError(_CLOCK_USAGE)
    if "now" in document:
        value = document["now"]
        if value is None:
            emulator.now = None
        elif isinstance(value, str):
            emulator.now = parse_instant(value)
        else:
            raise TypeError(f"now must be a string or null: {_CLOCK_USAGE}")
        return
    if "advance_seconds" not in document:
        raise ValueError(_CLOCK_USAGE)
    seconds = document["advance_seconds"]
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"advance_seconds must be a number: {_CLOCK_USAGE}")
    if not math.isfinite(seconds):
        raise ValueError(f"advance_seconds must be finite, got {seconds!r}")
    try:
        delta = timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"advance_seconds is out of range: {seconds!r}") from None
    emulator.advance(delta)


def _bad_request(message: str) -> Response:
    return Response(error_body(400, message), status_code=400, media_type="application/json")


def admin_routes(emulator: Emulator) -> list[Route]:
    """The admin endpoints of ``emulator``."""

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(emulator.stats())

    async def log(request: Request) -> JSONResponse:
        raw = request.query_params.get("last", "100")
        last = int(raw) if raw.isdigit() else 100
        return JSONResponse([entry.as_json() for entry in emulator.log.snapshot(last)])

    async def reset(request: Request) -> JSONResponse:
        emulator.reset()
        return JSONResponse({"reset": True})

    async def now(request: Request) -> Response:
        if request.method == "POST":
            try:
                move_clock(emulator, await request.body())
            except (ValueError, TypeError) as error:
                return _bad_request(str(error))
        current = emulator.now
        return JSONResponse({"now": None if current is None else format_instant(current)})

    return [
        Route(f"{ADMIN_PREFIX}/stats", stats, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/log", log, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/reset", reset, methods=["POST"]),
        Route(f"{ADMIN_PREFIX}/now", now, methods=["GET", "POST"]),
    ]
