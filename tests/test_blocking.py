"""`oxystats.Client`: the blocking facade, against the emulator over real HTTP."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, date, datetime

import pytest

import oxystats
from oxystats.emulator import RunningEmulator
from oxystats.testing import DEFAULT_KEY

FAST = oxystats.Limit(rate=1000.0, burst=100, in_flight=10)
START, END = date(2025, 1, 1), date(2025, 3, 15)


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    """The event loop the client runs in its thread."""
    return str(request.param)


def make(running: RunningEmulator, backend: str, key: str = DEFAULT_KEY) -> oxystats.Client:
    """A blocking client of the emulator."""
    return oxystats.Client(key, base_url=running.url, key_limit=FAST, backend=backend)


def test_usage_equals_async_client_and_truth(
    oxystats_emulator: RunningEmulator, backend: str
) -> None:
    """`Client.usage` returns what `AsyncClient.usage` does: the exact merged report."""
    with make(oxystats_emulator, backend) as client:
        report = client.usage("HB", START, END, ["DAY", "TARGET"])
        assert client.stats.requests > 0
    truth = oxystats_emulator.emulator.ground_truth(
        "HB",
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2025, 3, 15, 23, 59, 59, tzinfo=UTC),
        ["DAY", "TARGET"],
    )
    assert {r.grouped_by: (r.requests, r.traffic_bytes) for r in report.rows} == truth.rows
    assert (report.totals.requests, report.totals.traffic_bytes) == truth.totals
    assert report.grouping == (oxystats.GroupBy.DAY, oxystats.GroupBy.TARGET)


def test_instances(oxystats_emulator: RunningEmulator, backend: str) -> None:
    """`Client.instances` lists instances like the async client."""
    with make(oxystats_emulator, backend) as client:
        found = client.instances("DC")
    assert [i.name for i in found] == ["dc-instance-1", "dc-instance-2", "dc-instance-3"]


def test_iter_usage_pulls_pages_one_at_a_time(
    oxystats_emulator: RunningEmulator, backend: str
) -> None:
    """`iter_usage` is a plain iterator that fetches only as far as it is read."""
    with make(oxystats_emulator, backend) as client:
        rows = client.iter_usage("HB", date(2024, 1, 1), date(2025, 12, 31), ["DAY", "TARGET"])
        first = next(rows)
        sent = oxystats_emulator.emulator.counters.total
        assert first.grouped_by[0] == "2024-01-01"
        rows.close()
        assert oxystats_emulator.emulator.counters.total == sent
        # Two years by day and target is about 150 pages; one round is 10 slots x 4 pages.
        assert sent <= 40
        all_rows = list(client.iter_usage("HB", START, END, ["DAY"]))
    assert [r.grouped_by[0] for r in all_rows][:2] == ["2025-01-01", "2025-01-02"]
    assert len(all_rows) == (END - START).days + 1


def test_iter_usage_pages_resumes(oxystats_emulator: RunningEmulator, backend: str) -> None:
    """`iter_usage_pages(done=...)` skips the pages already fetched."""
    with make(oxystats_emulator, backend) as client:
        pages = list(client.iter_usage_pages("HB", START, END, ["DAY", "TARGET"]))
        done = {(p.window_index, p.number): p.total_pages for p in pages[:3]}
        rest = list(client.iter_usage_pages("HB", START, END, ["DAY", "TARGET"], done=done))
    assert len(rest) == len(pages) - 3
    assert {(p.window_index, p.number) for p in rest}.isdisjoint(done)


def test_errors_come_through_as_themselves(
    oxystats_emulator: RunningEmulator, backend: str
) -> None:
    """API errors and bad arguments raise the same exceptions as with AsyncClient."""
    with make(oxystats_emulator, backend, key="wrong-key") as client:
        with pytest.raises(oxystats.AuthenticationError):
            client.instances()
        with pytest.raises(ValueError, match="naive"):
            client.usage("HB", datetime(2025, 1, 1), END, ["DAY"])
        with pytest.raises(ValueError, match="group_by"):
            list(client.iter_usage("HB", START, END, ["WEEK"]))


def test_close_stops_the_loop_thread(oxystats_emulator: RunningEmulator, backend: str) -> None:
    """`close` stops the portal's thread; it is idempotent and the client is then unusable."""
    before = threading.active_count()
    client = make(oxystats_emulator, backend)
    assert threading.active_count() == before + 1
    assert "test-key" not in repr(client)
    assert repr(client).startswith("Client(")
    client.close()
    client.close()
    assert client.closed
    assert threading.active_count() == before
    with pytest.raises(RuntimeError, match="closed"):
        client.instances()


def test_bad_constructor_arguments_leave_no_thread(backend: str) -> None:
    """A constructor error is raised as itself and stops the thread it started."""
    before = threading.active_count()
    with pytest.raises(ValueError, match="base_url"):
        oxystats.Client(DEFAULT_KEY, base_url="ftp://nowhere", backend=backend)
    assert threading.active_count() == before


def test_a_forgotten_client_does_not_hang_exit() -> None:
    """A script that never closes its Client still exits (the thread is stopped at exit)."""
    code = (
        "import oxystats\n"
        "client = oxystats.Client('some-key', base_url='http://127.0.0.1:9')\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"


def test_streams_read_in_a_with_block(oxystats_emulator: RunningEmulator, backend: str) -> None:
    """`stream_usage` gives every row; `stream_usage_pages` may be left early, cleanly."""
    with make(oxystats_emulator, backend) as client:
        with client.stream_usage("HB", START, END, ["DAY"]) as rows:
            streamed = sum(row.requests for row in rows)
        assert streamed == client.usage("HB", START, END, ["DAY"]).totals.requests
        with client.stream_usage_pages("HB", START, END, ["DAY", "TARGET"]) as pages:
            first = next(iter(pages))
        assert first.number == 1
        assert client._client._limiter.stats.in_flight == 0
        with pytest.raises(ValueError, match="buffer"):
            client.stream_usage("HB", START, END, ["DAY"], buffer=0)
