"""Hostile servers and the API key: whatever fails, the key shows nowhere.

The key (`KEY`) holds ``/``, ``"``, ``\\``, ``<``, ``&`` and ``>``, which JSON
encoders escape in different ways. A server written for the purpose fails in
each way the client must survive (400, 401, 403, 429, 500, a connect error, a
timeout, a dropped connection, a deadline, a 200 that quotes the key back),
echoing the key it received in its body and headers: raw, JSON-escaped (``\\"``
and ``\\\\``), with ``\\/`` as PHP writes it, with ``\\u003c`` as Go writes it,
and with every character ``\\uXXXX``-escaped.

For each, the key must not show in the exception's ``str``, ``repr`` or
``args``, in any exception of its ``__cause__``/``__context__`` chain (httpx
requests and their headers included), in its formatted traceback, in its
pickle or in the copy unpickled from it (which must equal it), in its support
report, nor in any record of any logger at DEBUG (``oxystats``, ``httpx``,
``httpcore`` and the rest). `key_leaks` walks all of that and names each
place the key shows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import subprocess
import sys
import traceback
from datetime import UTC, date, datetime
from typing import Any

import anyio
import attrs
import pytest
from click.testing import CliRunner
from hostile_servers import (
    KEY,
    Exchange,
    Handler,
    RawServer,
    closed_port_url,
    dropped,
    honest_body,
    json_forms,
    key_in,
    key_leaks,
    log_leaks,
    raised_by,
)

import oxystats
from oxystats.cli import cli

pytestmark = pytest.mark.anyio

JANUARY = (date(2025, 1, 1), date(2025, 1, 31))
LOGGERS = ("oxystats", "httpx", "httpcore")
USAGE_ARGS = ["usage", "--product", "HB", "--from", "2025-01-01", "--to", "2025-01-31"]


def echo(code: int, style: str) -> Handler:
    """A server answering ``code`` with a body that echoes the key it was sent.

    ``style`` says how: ``raw``, as plain text; ``json``, a JSON error whose
    ``message`` holds the key JSON-escaped (so the decoded message holds it
    raw) and whose ``php`` field holds it with ``\\/``; ``json-go`` and
    ``json-unicode``, a ``message`` with the key escaped as Go writes it
    (``\\u003c``), or with every character ``\\uXXXX``-escaped. The key also
    comes back in a header.
    """

    def answer(exchange: Exchange) -> None:
        key = exchange.key
        forms = json_forms(key)
        if style == "raw":
            body = f"key {key} refused"
            content_type = "text/plain"
        else:
            message = {
                "json": forms["json"],
                "json-go": forms["json-html"],
                "json-unicode": "".join(f"\\u{ord(char):04x}" for char in key),
            }[style]
            php = forms["json-slash"] if style == "json" else "-"
            body = (
                f'{{"error": "Invalid request", "message": "invalid API key {message}", '
                f'"php": "{php}"}}'
            )
            content_type = "application/json"
        headers = [("X-Echoed-Key", key)]
        if code in (429, 503):
            headers.append(("Retry-After", "0"))
        exchange.respond(code, body.encode(), headers, content_type)

    return answer


def hang(exchange: Exchange) -> None:
    """No answer, ever."""
    exchange.hang()


def quote_key_in_grouping(exchange: Exchange) -> None:
    """A 200 whose ``meta.grouping`` is the key: an error quoting it would quote the key."""
    page = json.loads(honest_body(exchange))
    page["meta"]["grouping"] = [exchange.key]
    exchange.respond(200, json.dumps(page).encode(), [("X-Echoed-Key", exchange.key)])


def quote_key_as_a_row_key(exchange: Exchange) -> None:
    """A 200 whose first two rows both have the key as their key."""
    page = json.loads(honest_body(exchange))
    page["data"][0]["grouped_by"] = page["data"][1]["grouped_by"] = [exchange.key]
    exchange.respond(200, json.dumps(page).encode())


@attrs.frozen
class Failure:
    """One way for a call to fail, and the exception it must end as."""

    id: str
    error: type[oxystats.OxystatsError]
    handler: Handler | None
    """What the server does; `None`: there is no server (connection refused)."""
    options: dict[str, Any] = attrs.field(factory=dict)


FAILURES = [
    *(
        Failure(f"{code}-{style}", cls, echo(code, style))
        for code, cls in [
            (400, oxystats.BadRequestError),
            (401, oxystats.AuthenticationError),
            (403, oxystats.PermissionDeniedError),
            (429, oxystats.RateLimitError),
            (500, oxystats.ServerError),
        ]
        for style in ("raw", "json")
    ),
    Failure("401-json-go", oxystats.AuthenticationError, echo(401, "json-go")),
    Failure("401-json-unicode", oxystats.AuthenticationError, echo(401, "json-unicode")),
    Failure("503-json", oxystats.ServerError, echo(503, "json")),
    Failure("connect-error", oxystats.APIConnectionError, None),
    Failure("timeout", oxystats.APIConnectionError, hang, {"timeout": 0.3}),
    Failure("dropped", oxystats.APIConnectionError, dropped),
    Failure("deadline", oxystats.DeadlineExceeded, hang, {"deadline": 0.3}),
    Failure("200-grouping-quotes-key", oxystats.ResponseFormatError, quote_key_in_grouping),
    Failure("200-row-key-is-the-key", oxystats.ResponseFormatError, quote_key_as_a_row_key),
]


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of every logger, from DEBUG up."""
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def assert_no_key(error: BaseException, records: list[logging.LogRecord]) -> None:
    """The key is nowhere in ``error``, its chain, its pickle, its report or the log."""
    leaks = key_leaks(error)
    assert not leaks, f"the key shows in {leaks}"
    text = "".join(traceback.format_exception(error))
    assert not key_in(text), f"the key shows in the traceback:\n{text}"
    pickled = pickle.dumps(error)
    assert not key_in(pickled.decode("latin-1")), "the key is in the pickle"
    clone = pickle.loads(pickled)
    assert type(clone) is type(error)
    assert str(clone) == str(error)
    assert clone.args == error.args
    assert vars(clone) == vars(error)
    report = getattr(error, "support_report", None)
    if report is not None:
        assert not key_in(report()), "the key shows in the support report"
    leaks = log_leaks(records)
    assert not leaks, f"the key shows in the log: {leaks}"


@pytest.mark.parametrize("failure", FAILURES, ids=lambda failure: failure.id)
async def test_the_key_shows_nowhere(failure: Failure, every_log: pytest.LogCaptureFixture) -> None:
    """Each failure, the key echoed back: the key is in no message, chain, pickle, report or log."""
    options: dict[str, Any] = {"max_retries": 1, **failure.options}
    with contextlib.ExitStack() as stack:
        if failure.handler is None:
            url = closed_port_url()
        else:
            url = stack.enter_context(RawServer(failure.handler)).url
        async with oxystats.AsyncClient(KEY, base_url=url, **options) as client:
            with anyio.fail_after(10):
                call = client.usage("HB", *JANUARY, ["TARGET"])
                error = await raised_by(call, failure.error, failure.id)
    assert_no_key(error, every_log.records)
    assert any(record.name.startswith("httpcore") for record in every_log.records), (
        "httpcore logged nothing at DEBUG: the log was not captured"
    )


async def test_a_connect_errors_cause_is_a_key_free_copy() -> None:
    """A refused connection: APIConnectionError whose cause is httpx's class, with no request."""
    async with oxystats.AsyncClient(KEY, base_url=closed_port_url(), max_retries=0) as client:
        with anyio.fail_after(10), pytest.raises(oxystats.APIConnectionError) as caught:
            await client.usage("HB", *JANUARY, ["TARGET"])
    cause = caught.value.__cause__
    assert type(cause).__module__ == "httpx", repr(cause)
    assert type(cause).__name__ == "ConnectError"
    with pytest.raises(RuntimeError):
        _ = cause.request  # type: ignore[union-attr]


async def test_a_redirect_is_not_followed() -> None:
    """A 302 to another server: an APIError for the 302, and the other server sees nothing."""
    with RawServer(echo(200, "json")) as elsewhere:

        def redirect(exchange: Exchange) -> None:
            exchange.respond(302, b"", [("Location", f"{elsewhere.url}/steal")])

        with RawServer(redirect) as server:
            async with oxystats.AsyncClient(KEY, base_url=server.url) as client:
                with anyio.fail_after(10), pytest.raises(oxystats.APIError) as caught:
                    await client.usage("HB", *JANUARY, ["TARGET"])
    assert caught.value.status_code == 302
    assert elsewhere.exchanges == []


async def test_reprs_of_clients_never_show_the_key() -> None:
    """repr() of a client and of a view of it hold no key."""
    async with oxystats.AsyncClient(KEY, base_url="http://127.0.0.1:9") as client:
        assert not key_in(repr(client))
        assert not key_in(repr(client.with_options(timeout=1)))


def test_the_blocking_clients_repr_never_shows_the_key() -> None:
    """repr() of the blocking client holds no key."""
    with oxystats.Client(KEY, base_url="http://127.0.0.1:9") as blocking:
        assert not key_in(repr(blocking))


# --- every exception pickles ------------------------------------------------------

REQUEST = oxystats.RequestInfo("GET", "/stats/v1/usage", (("product", "HB"), ("page", "2")))
WHEN = datetime(2025, 11, 3, 12, 0, 5, 123000, tzinfo=UTC)


def one_of_each() -> dict[str, BaseException]:
    """One instance of every exception class ``oxystats`` exports, by class name."""
    return {
        "OxystatsError": oxystats.OxystatsError("something failed"),
        "APIError": oxystats.APIError(404, REQUEST, '{"message": "no"}', timestamp=WHEN),
        "BadRequestError": oxystats.BadRequestError(400, REQUEST, "bad", attempts=1),
        "AuthenticationError": oxystats.AuthenticationError(401, REQUEST, "{}", timestamp=WHEN),
        "PermissionDeniedError": oxystats.PermissionDeniedError(403, REQUEST, "", attempts=2),
        "RateLimitError": oxystats.RateLimitError(
            429, REQUEST, "{}", timestamp=WHEN, attempts=7, retry_after=3.0
        ),
        "ServerError": oxystats.ServerError(
            503, REQUEST, "down", timestamp=WHEN, attempts=3, retry_after=1.0
        ),
        "APIConnectionError": oxystats.APIConnectionError("ReadTimeout", REQUEST, attempts=7),
        "ResponseFormatError": oxystats.ResponseFormatError(
            "page 1 came back for page 2", REQUEST, field="meta.pagination.page"
        ),
        "DeadlineExceeded": oxystats.DeadlineExceeded(2.5, requests=12, pages=9),
        "DatabaseError": oxystats.DatabaseError("database error in sqlite:///u.sqlite: locked"),
        "SyncInProgressError": oxystats.SyncInProgressError("another sync of table 'usage'"),
        "UnknownInstanceWarning": oxystats.UnknownInstanceWarning("2 unknown instances"),
    }


def test_every_public_exception_pickles_to_an_equal_one() -> None:
    """Every exception class oxystats exports unpickles to its class, message and attributes."""
    made = one_of_each()
    exported = {
        name
        for name in oxystats.__all__
        if isinstance(getattr(oxystats, name), type)
        and issubclass(getattr(oxystats, name), BaseException)
    }
    assert exported == set(made), "a new exception class needs an entry here"
    for name, error in made.items():
        clone = pickle.loads(pickle.dumps(error))
        assert type(clone) is type(error), name
        assert str(clone) == str(error), name
        assert clone.args == error.args, name
        assert vars(clone) == vars(error), name
        assert repr(clone) == repr(error), name


# --- the command line ------------------------------------------------------------


def test_the_command_line_never_prints_the_key() -> None:
    """`oxystats usage` against a 401 echoing the key: one stderr line, exit 1, no key anywhere."""
    with RawServer(echo(401, "json-go")) as server:
        result = CliRunner().invoke(
            cli,
            [*USAGE_ARGS, "--base-url", server.url, "--quiet"],
            env={"OXYLABS_API_KEY": KEY},
        )
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("oxystats: error: ")
    assert result.stderr.count("\n") == 1
    assert not key_in(result.stdout + result.stderr)


def test_the_command_lines_debug_log_never_prints_the_key() -> None:
    """`oxystats usage`, OXYSTATS_LOG=debug, against a 500 echoing the key: no key in any line."""
    with RawServer(echo(500, "raw")) as server:
        options = ["--max-retries", "1", "--base-url", server.url, "--quiet"]
        process = subprocess.run(
            [sys.executable, "-m", "oxystats", *USAGE_ARGS, *options],
            env={**os.environ, "OXYLABS_API_KEY": KEY, "OXYSTATS_LOG": "debug"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert process.returncode == 1, process.stderr
    assert " DEBUG " in process.stderr, "no DEBUG line: the log was not on"
    assert not key_in(process.stdout + process.stderr), process.stderr
    assert process.stderr.splitlines()[-1].startswith("oxystats: error: ")
