"""Tests of the exception hierarchy and the support report."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

import oxystats
from oxystats._errors import RequestInfo, error_for_status, redact

REQUEST = RequestInfo(
    "GET", "/stats/v1/usage", (("product", "HB"), ("group_by[]", "DAY"), ("page", "2"))
)
WHEN = datetime(2025, 11, 3, 12, 0, 5, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, oxystats.BadRequestError),
        (401, oxystats.AuthenticationError),
        (403, oxystats.PermissionDeniedError),
        (429, oxystats.RateLimitError),
        (500, oxystats.ServerError),
        (503, oxystats.ServerError),
        (404, oxystats.APIError),
    ],
)
def test_each_status_has_its_class(status: int, cls: type[oxystats.APIError]) -> None:
    """error_for_status picks the documented class, all under APIError and OxystatsError."""
    error = error_for_status(status, REQUEST, '{"message": "nope"}')
    assert type(error) is cls
    assert isinstance(error, oxystats.OxystatsError)
    assert error.status_code == status
    assert "nope" in str(error)
    assert "/stats/v1/usage?product=HB&group_by[]=DAY&page=2" in str(error)


def test_support_report_has_the_vendor_checklist() -> None:
    """Endpoint, query parameters, status, full body and UTC timestamp are in the report."""
    body = '{"error": "Bad request", "message": "date_to is before date_from"}'
    report = error_for_status(400, REQUEST, body, timestamp=WHEN).support_report()
    assert "Endpoint: GET /stats/v1/usage" in report
    assert "  group_by[] = DAY" in report
    assert "HTTP status: 400" in report
    assert body in report
    assert "2025-11-03T12:00:05.123Z" in report
    assert "[REDACTED]" in report


def test_key_echoed_by_a_server_is_redacted() -> None:
    """redact() removes a secret wherever it appears."""
    assert redact("bad key sk-123 given", ("sk-123",)) == "bad key [REDACTED] given"


def test_rate_limit_error_carries_retry_after() -> None:
    """A RateLimitError says how long the server asked to wait."""
    error = error_for_status(429, REQUEST, "{}", retry_after=300.0)
    assert isinstance(error, oxystats.RateLimitError)
    assert error.retry_after == 300.0
    assert "Retry-After: 300 s" in str(error)


def test_errors_survive_pickling() -> None:
    """Errors cross process boundaries intact (multiprocessing, logging handlers)."""
    for status in (401, 429):
        error = error_for_status(status, REQUEST, "{}", timestamp=WHEN, retry_after=2.0)
        clone = pickle.loads(pickle.dumps(error))
        assert type(clone) is type(error)
        assert str(clone) == str(error)
        assert clone.timestamp == WHEN


def test_repr_is_short() -> None:
    """repr names the class, status and request."""
    error = error_for_status(401, REQUEST, "{}")
    assert repr(error).startswith("AuthenticationError(status_code=401")


def test_format_and_connection_errors() -> None:
    """ResponseFormatError names the field; APIConnectionError the request."""
    error = oxystats.ResponseFormatError("expected an integer", REQUEST, field="data[3].requests")
    assert "data[3].requests" in str(error)
    assert error.field == "data[3].requests"
    lost = oxystats.APIConnectionError("ReadTimeout", REQUEST, attempts=7)
    assert "7 attempt" in str(lost)
