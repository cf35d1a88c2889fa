"""Tests of request building and response reading, with no network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

import oxystats
from oxystats import GroupBy, Window
from oxystats._protocol import (
    decode_json,
    format_datetime,
    instances_request,
    parse_usage_page,
    raise_for_status,
    request_url,
    usage_request,
)

WINDOW = Window(datetime(2025, 11, 1, tzinfo=UTC), datetime(2025, 11, 30, 23, 59, 59, tzinfo=UTC))


def test_usage_request_matches_the_vendor_example() -> None:
    """Parameters as in the page's examples: group_by[] repeated, per_page 100."""
    request = usage_request("HB", WINDOW, (GroupBy.DAY, GroupBy.TARGET), ("u1", "u2"), 3)
    assert request.params == (
        ("product", "HB"),
        ("date_from", "2025-11-01T00:00:00Z"),
        ("date_to", "2025-11-30T23:59:59Z"),
        ("group_by[]", "DAY"),
        ("group_by[]", "TARGET"),
        ("instances[]", "u1"),
        ("instances[]", "u2"),
        ("page", "3"),
        ("per_page", "100"),
    )
    assert request.path == "/stats/v1/usage"


def test_offsets_are_kept() -> None:
    """A caller's offset is sent as given; UTC is sent with Z."""
    minus = timezone(-timedelta(hours=7, minutes=30))
    assert format_datetime(datetime(2025, 1, 1, 8, 15, tzinfo=minus)) == "2025-01-01T08:15:00-07:30"
    assert format_datetime(datetime(2025, 1, 1, tzinfo=UTC)) == "2025-01-01T00:00:00Z"


def test_request_url_escapes_plus_once() -> None:
    """The URL sent carries '+' of an offset as %2B and the rest of the query intact."""
    plus_two = timezone(timedelta(hours=2))
    window = Window(datetime(2025, 1, 1, tzinfo=plus_two), datetime(2025, 1, 2, tzinfo=plus_two))
    url = request_url("http://127.0.0.1:8000", usage_request("HB", window, (GroupBy.DAY,), None, 1))
    assert url.path == "/stats/v1/usage"
    assert url.params["date_from"] == "2025-01-01T00:00:00+02:00"
    assert "%2B02%3A00" in str(url)
    assert url.params.get_list("group_by[]") == ["DAY"]


def test_instances_request() -> None:
    """products[] is repeated; all products means no products[] at all."""
    assert instances_request(("HB", "DC"), 1).params == (
        ("products[]", "HB"),
        ("products[]", "DC"),
        ("page", "1"),
        ("per_page", "100"),
    )
    assert instances_request(None, 2).params == (("page", "2"), ("per_page", "100"))


def test_raise_for_status_redacts_and_classifies() -> None:
    """A 401 body that echoes the key is redacted in the error."""
    request = instances_request(None, 1)
    raise_for_status(200, b"{}", request)
    with pytest.raises(oxystats.AuthenticationError) as caught:
        raise_for_status(401, b'{"message": "bad key sk-9"}', request, secrets=("sk-9",))
    assert "sk-9" not in caught.value.body
    assert "sk-9" not in caught.value.support_report()


def test_non_json_body() -> None:
    """A 200 that is not JSON raises ResponseFormatError."""
    with pytest.raises(oxystats.ResponseFormatError, match="not JSON"):
        decode_json(b'{"data": [', instances_request(None, 1))


def test_grouping_must_answer_the_question() -> None:
    """A page grouped otherwise than asked is a format error."""
    document = {
        "data": [],
        "totals": {"requests": 0, "traffic_bytes": 0},
        "meta": {
            "pagination": {"page": 1, "per_page": 100, "total_items": 0, "total_pages": 1},
            "grouping": ["TARGET"],
        },
    }
    request = usage_request("HB", WINDOW, (GroupBy.DAY,), None, 1)
    with pytest.raises(oxystats.ResponseFormatError, match=r"meta\.grouping"):
        parse_usage_page(document, request, (GroupBy.DAY,), number=1, window=WINDOW)
    page, _ = parse_usage_page(document, request, (GroupBy.TARGET,), number=1, window=WINDOW)
    assert page.data == ()
