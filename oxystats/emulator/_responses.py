"""Response bodies: the documented errors and the JSON pages, as bytes.

Bodies are compact JSON. Error bodies carry the page's error names and
messages; the 503 (not on the page) follows the same pattern.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from ._dataset import Row

__all__ = [
    "ERRORS",
    "WRONG_SHAPE_BODY",
    "error_body",
    "headers",
    "instances_page",
    "json_headers",
    "total_pages",
    "usage_page",
    "with_total_pages",
]

ERRORS: dict[int, tuple[str, str]] = {
    400: (
        "Bad request",
        "The request could not be understood. Please check if the request is formatted correctly.",
    ),
    401: ("Invalid request", "User has entered an invalid API key."),
    403: (
        "Forbidden",
        "Access denied: missing API key. Please contact support or your account manager.",
    ),
    404: ("Not found", "No such endpoint."),
    405: ("Method not allowed", "Only GET is supported."),
    429: ("Too many requests", "User has reached the thread/concurrent session limit."),
    500: (
        "Internal server error",
        "We had an unexpected problem with the server. Try again later.",
    ),
    503: ("Service unavailable", "The service is temporarily unavailable. Try again later."),
}

# Valid JSON that is not the documented shape, for the malformed-body fault.
WRONG_SHAPE_BODY = b'{"data":"temporarily unavailable","meta":null}'


def _dump(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def error_body(status: int, message: str | None = None) -> bytes:
    """The JSON error body for ``status``, optionally with a specific message."""
    error, default = ERRORS[status]
    return _dump({"error": error, "message": message or default})


def headers(body: bytes, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """Content type and length for a JSON body, plus any extra headers."""
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]


def json_headers(length: int) -> list[tuple[bytes, bytes]]:
    """Content type and length for a JSON body of ``length`` bytes sent in pieces."""
    return [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]


def with_total_pages(body: bytes, claim: Callable[[int, int], int]) -> bytes:
    """A page's ``body`` claiming ``claim(page, total_pages)`` as its ``total_pages``."""
    document = json.loads(body)
    pagination = document["meta"]["pagination"]
    pagination["total_pages"] = claim(pagination["page"], pagination["total_pages"])
    return _dump(document)


def total_pages(total_items: int, per_page: int) -> int:
    """Pages needed for ``total_items``; at least 1, as the page promises."""
    return max(1, -(-total_items // per_page))


def _pagination(page: int, per_page: int, total_items: int) -> dict[str, int]:
    return {
        "page": page,
        "per_page": per_page,
        "total_items": total_items,
        "total_pages": total_pages(total_items, per_page),
    }


def usage_page(
    rows: Sequence[Row],
    totals: tuple[int, int],
    grouping: Sequence[str],
    page: int,
    per_page: int,
) -> bytes:
    """One page of a usage result; ``totals`` cover every page."""
    chunk = rows[(page - 1) * per_page : page * per_page]
    return _dump(
        {
            "data": [
                {"grouped_by": list(key), "requests": requests, "traffic_bytes": size}
                for key, requests, size in chunk
            ],
            "totals": {"requests": totals[0], "traffic_bytes": totals[1]},
            "meta": {
                "pagination": _pagination(page, per_page, len(rows)),
                "grouping": list(grouping),
            },
        }
    )


def instances_page(items: Sequence[dict[str, str]], page: int, per_page: int) -> bytes:
    """One page of the instance list."""
    chunk = items[(page - 1) * per_page : page * per_page]
    return _dump(
        {"data": list(chunk), "meta": {"pagination": _pagination(page, per_page, len(items))}}
    )
