"""The emulator's hostile faults, end to end: the client and the command line over real HTTP.

Each fault is switched on for every request (probability 1) in the
session's emulator on 127.0.0.1: a proxy that drops ``page``, a body trickled
one byte per 50 ms, ``total_pages`` inflated to 10**9 or growing after page
1, a 50 MB body, a server that never answers. For each, ``usage()`` raises
the documented error within its bound (the call's ``deadline`` plus 1 s), and
``oxystats usage`` prints exactly one line ``oxystats: error: ...`` on stderr
and exits 1.
"""

from __future__ import annotations

import time
from datetime import date

import anyio
import attrs
import pytest
from click.testing import CliRunner
from hostile_servers import guarded, raised_by

import oxystats
from oxystats.cli import cli
from oxystats.emulator import Faults, RunningEmulator
from oxystats.testing import DEFAULT_KEY

pytestmark = pytest.mark.anyio

MARCH = (date(2024, 3, 1), date(2024, 3, 31))
"""One window of the emulator's data: 620 DAY x TARGET rows, seven pages."""
FAST = oxystats.Limit(rate=1000.0, burst=100, in_flight=10)
COMMAND = [
    *("usage", "--product", "HB", "--from", str(MARCH[0]), "--to", str(MARCH[1])),
    *("--group-by", "DAY", "--group-by", "TARGET", "--rate", "1000", "--burst", "100", "--quiet"),
]
WITHIN = 1.0


@attrs.frozen
class Hostile:
    """One hostile fault, on every request, and what a call must end as."""

    id: str
    faults: Faults
    errors: tuple[type[oxystats.OxystatsError], ...]
    field: str | None = None
    deadline: float = 2.0
    timeout: float | None = None


HOSTILE = [
    Hostile(
        "ignore_page",
        Faults(ignore_page=1.0),
        (oxystats.ResponseFormatError,),
        "meta.pagination.page",
    ),
    Hostile(
        "grow_total_pages",
        Faults(grow_total_pages=1.0),
        (oxystats.ResponseFormatError,),
        "meta.pagination.total_pages",
    ),
    Hostile(
        "inflate_total_pages",
        Faults(inflate_total_pages=1.0, inflated_total_pages=10**9),
        (oxystats.ResponseFormatError,),
        "meta.pagination.total_pages",
    ),
    Hostile(
        "oversized_body",
        Faults(oversized_body=1.0, oversized_bytes=50_000_000),
        (oxystats.ResponseFormatError,),
        "body",
    ),
    Hostile(
        "trickle_body",
        Faults(trickle_body=1.0, trickle_interval=0.05),
        (oxystats.APIConnectionError, oxystats.DeadlineExceeded),
        deadline=0.8,
        timeout=0.3,
    ),
    Hostile("hang", Faults(hang=1.0), (oxystats.DeadlineExceeded,), deadline=0.5),
]


@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda hostile: hostile.id)
async def test_usage_against_a_hostile_emulator_raises_in_time(
    oxystats_emulator: RunningEmulator, hostile: Hostile
) -> None:
    """Each hostile fault on every request: usage() raises its documented error by deadline + 1."""
    oxystats_emulator.emulator.faults = hostile.faults
    async with oxystats.AsyncClient(
        DEFAULT_KEY,
        base_url=oxystats_emulator.url,
        key_limit=FAST,
        deadline=hostile.deadline,
        timeout=hostile.timeout,
    ) as client:
        started = time.monotonic()
        with guarded(hostile.deadline + 5), anyio.fail_after(hostile.deadline + 3):
            call = client.usage("HB", *MARCH, ["DAY", "TARGET"])
            error = await raised_by(call, oxystats.OxystatsError, hostile.id)
        elapsed = time.monotonic() - started
    assert isinstance(error, hostile.errors), f"{hostile.id}: {error!r}"
    if hostile.field is not None:
        assert isinstance(error, oxystats.ResponseFormatError)
        assert error.field == hostile.field, str(error)
    assert elapsed <= hostile.deadline + WITHIN


async def test_inflated_total_pages_cost_one_request(oxystats_emulator: RunningEmulator) -> None:
    """10**9 pages claimed by the emulator's page 1: refused after that one request."""
    oxystats_emulator.emulator.faults = Faults(inflate_total_pages=1.0)
    async with oxystats.AsyncClient(
        DEFAULT_KEY, base_url=oxystats_emulator.url, key_limit=FAST, deadline=2
    ) as client:
        with guarded(7), anyio.fail_after(5), pytest.raises(oxystats.ResponseFormatError):
            await client.usage("HB", *MARCH, ["DAY", "TARGET"])
    assert len(oxystats_emulator.emulator.log.snapshot()) == 1


@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda hostile: hostile.id)
def test_the_command_line_against_a_hostile_emulator_prints_one_line(
    oxystats_emulator: RunningEmulator, hostile: Hostile
) -> None:
    """Each hostile fault: `oxystats usage` prints one `oxystats: error:` line and exits 1."""
    oxystats_emulator.emulator.faults = hostile.faults
    with guarded(30):  # a command that never ends fails here instead of hanging the run
        result = CliRunner().invoke(
            cli,
            [
                *COMMAND,
                "--timeout",
                "0.5",
                "--max-retries",
                "0",
                "--base-url",
                oxystats_emulator.url,
            ],
            env={"OXYLABS_API_KEY": DEFAULT_KEY},
        )
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("oxystats: error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
