"""sync_usage against the emulator over HTTP, into SQLite and into a real PostgreSQL server.

Every async test runs on asyncio and trio, and with each database; the
emulator's clock decides what usage exists, and the sync is told the same
"now".
"""

from __future__ import annotations

import functools
import inspect
import math
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import anyio
import psycopg
import pytest
import sqlalchemy as sa

import oxystats
from oxystats import GroupBy, SyncInProgressError, UsageQuery
from oxystats.emulator import Emulator, Faults, RunningEmulator
from oxystats.testing import DEFAULT_KEY

pytestmark = pytest.mark.anyio

FAST = oxystats.Limit(rate=1_000.0, burst=1_000, in_flight=4)
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
SINCE = date(2024, 10, 1)
DAY_TARGET = ("DAY", "TARGET")
USAGE_PATH = "/stats/v1/usage"

Rows = dict[tuple[str, ...], tuple[int, int]]


def client_for(running: RunningEmulator, **options: object) -> oxystats.AsyncClient:
    """A client of the emulator that the limiter never slows down."""
    return oxystats.AsyncClient(
        DEFAULT_KEY,
        base_url=running.url,
        key_limit=FAST,
        **options,  # type: ignore[arg-type]
    )


def engine_for(database: str) -> sa.Engine:
    """An engine on a database given as sync_usage takes it (a path or a URL)."""
    return sa.create_engine(database if "://" in database else f"sqlite:///{database}")


def query(database: str, sql: str) -> list[tuple[object, ...]]:
    """The rows of one SQL query."""
    engine = engine_for(database)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(sql))]
    finally:
        engine.dispose()


def table_names(database: str) -> set[str]:
    """The tables a database has."""
    engine = engine_for(database)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def table_rows(database: str, grouping: tuple[str, ...] = DAY_TARGET, table: str = "usage") -> Rows:
    """The usage table, keyed like the ground truth with the product first."""
    keys = ", ".join(group.lower() for group in grouping)
    found: Rows = {}
    for row in query(database, f"SELECT product, {keys}, requests, traffic_bytes FROM {table}"):
        *key, requests, traffic = row
        found[tuple(str(part) for part in key)] = (int(str(requests)), int(str(traffic)))
    return found


def truth(
    emulator: Emulator,
    first: date,
    now: datetime,
    grouping: tuple[str, ...] = DAY_TARGET,
    products: tuple[str, ...] = ("HB",),
) -> Rows:
    """The emulator's exact usage from ``first`` up to ``now``, keyed like `table_rows`."""
    start = datetime.combine(first, datetime.min.time(), UTC)
    rows: Rows = {}
    for product in products:
        exact = emulator.ground_truth(product, start, now, list(grouping))
        rows.update({(product, *key): value for key, value in exact.rows.items()})
    return rows


def pages_needed(
    emulator: Emulator, first: date, now: datetime, grouping: tuple[str, ...] = DAY_TARGET
) -> int:
    """The requests a complete fetch of ``first`` to today needs: every page of every window."""
    windows = UsageQuery.build("HB", first, now.date(), grouping).windows()
    rows = (
        len(emulator.ground_truth("HB", w.start, min(w.end, now), list(grouping)).rows)
        for w in windows
    )
    return sum(max(1, math.ceil(count / 100)) for count in rows)


def usage_requests(emulator: Emulator) -> list[dict[str, list[str]]]:
    """The query of every usage request the emulator answered, oldest first."""
    return [parse_qs(e.query) for e in emulator.log.snapshot() if e.path == USAGE_PATH]


def runs_of(database: str) -> list[tuple[object, ...]]:
    """``sync_runs``: id, product, status, first_day, last_day, complete_through, requests."""
    return query(
        database,
        "SELECT id, product, status, first_day, last_day, complete_through, requests, "
        "rows_written FROM sync_runs ORDER BY id",
    )


async def sync(
    client: oxystats.AsyncClient, database: str, **options: object
) -> oxystats.SyncResult:
    """sync_usage of HB by day and target, from SINCE, as of NOW, unless told otherwise."""
    arguments: dict[str, object] = {
        "products": ["HB"],
        "group_by": DAY_TARGET,
        "since": SINCE,
        "now": NOW,
        **options,
    }
    return await oxystats.sync_usage(client, database, **arguments)  # type: ignore[arg-type]


# -- keeping the table current -------------------------------------------------------------


async def test_first_sync_equals_ground_truth(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """The first sync backfills from since up to now: exactly the API's usage, every page once."""
    emulator = oxystats_emulator.emulator
    emulator.now = NOW
    database = new_database()
    async with client_for(oxystats_emulator) as client:
        result = await sync(client, database)
    assert table_rows(database) == truth(emulator, SINCE, NOW)
    needed = pages_needed(emulator, SINCE, NOW)
    assert len(usage_requests(emulator)) == needed
    (run,) = result.runs
    assert (run.product, run.first_day, run.last_day) == ("HB", SINCE, NOW.date())
    assert run.complete_through == NOW.date() - timedelta(days=1)
    assert (run.requests, run.rows) == (needed, len(table_rows(database)))
    assert (result.requests, result.rows, result.as_of) == (run.requests, run.rows, NOW)
    (recorded,) = runs_of(database)
    assert tuple(map(str, recorded)) == tuple(
        map(
            str,
            (
                run.run_id,
                "HB",
                "complete",
                SINCE,
                NOW.date(),
                run.complete_through,
                needed,
                run.rows,
            ),
        )
    )


async def test_resync_fetches_only_the_new_days_and_the_lookback(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """Ten days later the table equals the ground truth up to the new now, for few requests."""
    emulator = oxystats_emulator.emulator
    emulator.now = NOW
    database = new_database()
    async with client_for(oxystats_emulator) as client:
        await sync(client, database)
        partial_today = table_rows(database)
        later = emulator.advance(timedelta(days=10))
        emulator.reset()  # the log, from here on
        result = await sync(client, database, since=None, now=later)
    assert table_rows(database) == truth(emulator, SINCE, later)
    # NOW's day was partial at the first sync; it has grown since, and the table with it.
    day = NOW.date().isoformat()
    assert sum(v[0] for k, v in table_rows(database).items() if k[1] == day) > sum(
        v[0] for k, v in partial_today.items() if k[1] == day
    )
    # The last complete day was NOW - 1 day; two days of lookback start the day before it.
    first = NOW.date() - timedelta(days=2)
    sent = usage_requests(emulator)
    assert len(sent) == pages_needed(emulator, first, later) == result.requests
    assert {request["date_from"][0] for request in sent} == {f"{first.isoformat()}T00:00:00Z"}
    (run,) = result.runs
    assert (run.first_day, run.last_day) == (first, later.date())


async def test_lookback_zero_fetches_from_the_first_incomplete_day(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """With no lookback, a resync starts at the day that was partial last time."""
    emulator = oxystats_emulator.emulator
    emulator.now = NOW
    database = new_database()
    async with client_for(oxystats_emulator) as client:
        await sync(client, database, lookback=timedelta(0))
        later = emulator.advance(timedelta(days=1, hours=3))
        result = await sync(client, database, lookback=timedelta(0), now=later)
    assert result.runs[0].first_day == NOW.date()
    assert table_rows(database) == truth(emulator, SINCE, later)


async def test_several_products_and_every_grouping_with_day(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """Each product gets its own run; the columns follow the grouping, whatever its order."""
    emulator = oxystats_emulator.emulator
    emulator.now = NOW
    since = date(2025, 1, 20)
    async with client_for(oxystats_emulator) as client:
        for grouping in (("DAY",), ("DAY", "INSTANCE"), ("DAY", "TARGET", "INSTANCE")):
            database = new_database()
            given = tuple(reversed(grouping))
            result = await sync(
                client, database, products=["HB", "DC"], group_by=given, since=since
            )
            assert [run.product for run in result.runs] == ["HB", "DC"]
            expected = truth(emulator, since, NOW, grouping, products=("HB", "DC"))
            assert table_rows(database, grouping) == expected


async def test_a_product_added_later_is_backfilled_from_since(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """since applies to each product the table has no usage of, and only to it."""
    emulator = oxystats_emulator.emulator
    emulator.now = NOW
    database = new_database()
    async with client_for(oxystats_emulator) as client:
        await sync(client, database, products=["HB"])
        result = await sync(client, database, products=["HB", "DC"], since=date(2025, 2, 1))
    assert [(run.product, run.first_day) for run in result.runs] == [
        ("HB", NOW.date() - timedelta(days=2)),
        ("DC", date(2025, 2, 1)),
    ]
    expected = truth(emulator, SINCE, NOW) | truth(
        emulator, date(2025, 2, 1), NOW, products=("DC",)
    )
    assert table_rows(database) == expected


async def test_the_table_is_queryable_by_hand(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """`SELECT day, target, requests FROM usage` just works, with the driver alone."""
    oxystats_emulator.emulator.now = NOW
    database = new_database()
    async with client_for(oxystats_emulator) as client:
        await sync(client, database, since=date(2025, 3, 1))
    sql = "SELECT day, target, requests FROM usage WHERE day >= '2025-03-09' ORDER BY day, target"
    if "://" in database:
        with psycopg.connect(database) as connection:
            found = connection.execute(sql).fetchall()
        assert isinstance(found[0][0], date)
    else:
        with sqlite3.connect(database) as connection:
            found = connection.execute(sql).fetchall()
    expected = sorted(
        (date.fromisoformat(key[1]), key[2], value[0])
        for key, value in table_rows(database).items()
        if key[1] >= "2025-03-09"
    )
    assert [(date.fromisoformat(str(day)), target, n) for day, target, n in found] == expected


# -- one at a time, and what is left after a stop --------------------------------------------


async def test_a_second_sync_refuses_while_one_runs(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """The second sync raises SyncInProgressError having sent and written nothing."""
    emulator = oxystats_emulator.emulator
    emulator.now = NOW
    emulator.faults = Faults(latency=0.05)
    database = new_database()
    first_request_done = anyio.Event()
    hooks = [lambda event: first_request_done.set()]
    results: list[oxystats.SyncResult] = []
    async with (
        client_for(oxystats_emulator, event_hooks=hooks) as first,
        client_for(oxystats_emulator) as second,
        anyio.create_task_group() as group,
    ):

        async def run_first() -> None:
            results.append(await sync(first, database))

        group.start_soon(run_first)
        await first_request_done.wait()
        with pytest.raises(SyncInProgressError, match="another sync of table 'usage'"):
            await sync(second, database)
        assert second.stats.requests == 0
    assert [run[2] for run in runs_of(database)] == ["complete"]
    assert table_rows(database) == truth(emulator, SINCE, NOW)
    async with client_for(oxystats_emulator) as third:
        await sync(third, database)  # the lock was let go


async def test_a_cancelled_sync_leaves_whole_days_and_the_next_completes_it(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """Cancelled mid-way: whole windows only, marked interrupted; the next sync completes it."""
    emulator = oxystats_emulator.emulator
    emulator.now = NOW
    database = new_database()
    scope = anyio.CancelScope()
    answered: list[oxystats.ClientEvent] = []

    def cancel_after_a_while(event: oxystats.ClientEvent) -> None:
        answered.append(event)
        if len(answered) == 20:
            scope.cancel()

    async with client_for(oxystats_emulator, event_hooks=[cancel_after_a_while]) as client:
        with scope:
            await sync(client, database)
        assert scope.cancelled_caught
        ((_, _, status, *_),) = runs_of(database)
        assert status == "interrupted"
        partial = table_rows(database)
        days = sorted({key[1] for key in partial})
        expected = truth(emulator, SINCE, NOW)
        # Whole days, a prefix of the range: each day in the table is exactly right.
        assert partial == {key: value for key, value in expected.items() if key[1] <= days[-1]}
        assert days[-1] < NOW.date().isoformat()
        await sync(client, database)
    assert table_rows(database) == expected


async def test_a_failed_sync_is_raised_as_itself_and_recorded(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """An API failure comes out as itself; sync_runs says failed and why; a rerun recovers."""
    emulator = oxystats_emulator.emulator
    emulator.now = NOW
    emulator.faults = Faults(error_500=1.0)
    database = new_database()
    async with client_for(oxystats_emulator, max_retries=0) as client:
        with pytest.raises(oxystats.ServerError):
            await sync(client, database)
        assert query(database, "SELECT status, error FROM sync_runs")[0][0] == "failed"
        assert "ServerError: 500" in str(query(database, "SELECT error FROM sync_runs")[0][0])
        emulator.faults = Faults()
        await sync(client, database)
    assert table_rows(database) == truth(emulator, SINCE, NOW)


async def test_syncs_of_two_tables_of_one_database_run_side_by_side(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """The lock is per table: two tables of one database sync at once, both exact."""
    emulator = oxystats_emulator.emulator
    emulator.now = NOW
    emulator.faults = Faults(latency=0.01)
    database = new_database()
    async with (
        client_for(oxystats_emulator) as first,
        client_for(oxystats_emulator) as second,
        anyio.create_task_group() as group,
    ):
        group.start_soon(functools.partial(sync, first, database, table="usage"))
        group.start_soon(
            functools.partial(sync, second, database, table="usage_by_day", group_by=["DAY"])
        )
    by_day = truth(emulator, SINCE, NOW, ("DAY",))
    assert table_rows(database) == truth(emulator, SINCE, NOW)
    assert table_rows(database, ("DAY",), table="usage_by_day") == by_day
    assert [row[2] for row in runs_of(database)] == ["complete", "complete"]


# -- refusals before anything is sent or written --------------------------------------------


async def test_a_first_sync_without_since_sends_and_writes_nothing(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """No since for a new product: ValueError, no request, no table."""
    database = new_database()
    async with client_for(oxystats_emulator) as client:
        with pytest.raises(ValueError, match="has no HB usage yet: pass since"):
            await sync(client, database, since=None)
        assert client.stats.requests == 0
    assert table_names(database) == set()


async def test_another_grouping_of_the_same_table_is_refused(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """A table keeps its first grouping; another one is a ValueError before any request."""
    oxystats_emulator.emulator.now = NOW
    database = new_database()
    async with client_for(oxystats_emulator) as client:
        await sync(client, database, since=date(2025, 3, 1))
        before = client.stats.requests
        with pytest.raises(ValueError, match="grouped by DAY,TARGET, not DAY,INSTANCE"):
            await sync(client, database, group_by=["DAY", "INSTANCE"])
        assert client.stats.requests == before
        other = await sync(client, database, group_by=["DAY"], table="usage_by_day")
    assert other.runs[0].first_day == SINCE
    assert table_names(database) == {"usage", "usage_by_day", "sync_runs"}


async def test_a_table_no_sync_made_is_left_alone(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """An existing table of another shape is refused, untouched."""
    database = new_database()
    engine = engine_for(database)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE usage (id INTEGER, note VARCHAR)")
        connection.exec_driver_sql("INSERT INTO usage VALUES (1, 'mine')")
    engine.dispose()
    async with client_for(oxystats_emulator) as client:
        with pytest.raises(ValueError, match="is not a usage table a sync made"):
            await sync(client, database)
        assert client.stats.requests == 0
    assert query(database, "SELECT id, note FROM usage") == [(1, "mine")]


BAD_ARGUMENTS: list[tuple[dict[str, object], type[Exception]]] = [
    ({"group_by": ["TARGET"]}, ValueError),
    ({"products": []}, ValueError),
    ({"lookback": 2}, TypeError),
    ({"table": "Usage"}, ValueError),
    ({"since": date(2099, 1, 1)}, ValueError),
    ({"now": datetime(2025, 3, 10)}, ValueError),
]


async def test_bad_arguments_send_and_write_nothing(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """Bad arguments raise before any connection, request or write."""
    database = new_database()
    async with client_for(oxystats_emulator) as client:
        for change, error in BAD_ARGUMENTS:
            with pytest.raises(error):
                await sync(client, database, **change)
        assert client.stats.requests == 0
    assert table_names(database) == set()


@pytest.mark.parametrize(
    ("database", "error", "words"),
    [
        (":memory:", ValueError, "in-memory database would vanish"),
        ("sqlite://", ValueError, "in-memory database would vanish"),
        ("mysql://u@127.0.0.1/db", ValueError, "supports SQLite and PostgreSQL"),
        ("postgresql+asyncpg://u@127.0.0.1/db", ValueError, "asyncio driver"),
        ("not a url://", ValueError, "not a database URL"),
        (42, TypeError, "database_url must be"),
    ],
)
async def test_bad_databases(
    oxystats_emulator: RunningEmulator, database: object, error: type[Exception], words: str
) -> None:
    """A database sync cannot use is refused by name, before any request."""
    async with client_for(oxystats_emulator) as client:
        with pytest.raises(error, match=words):
            await oxystats.sync_usage(client, database, products="HB", since=SINCE)  # type: ignore[arg-type]
        assert client.stats.requests == 0


def test_database_urls() -> None:
    """A path is a SQLite file; postgresql:// and postgres:// mean psycopg 3."""
    from oxystats._sync_store import database_url

    assert database_url(Path("data/usage.sqlite")).render_as_string() == (
        "sqlite:///data/usage.sqlite"
    )
    assert database_url("usage.sqlite").database == "usage.sqlite"
    for scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        url = database_url(f"{scheme}://me:pw@db.internal:5433/reporting?sslmode=require")
        assert url.drivername == "postgresql+psycopg"
        assert url.render_as_string(hide_password=True) == (
            "postgresql+psycopg://me:***@db.internal:5433/reporting?sslmode=require"
        )


async def test_a_client_is_required() -> None:
    """The client comes first, and must be an AsyncClient."""
    with pytest.raises(TypeError, match=r"client must be an oxystats\.AsyncClient"):
        await oxystats.sync_usage(object(), "usage.sqlite", products="HB")  # type: ignore[arg-type]


async def test_an_unreachable_database_is_a_database_error_without_its_password(
    oxystats_emulator: RunningEmulator, free_tcp_port: int
) -> None:
    """A PostgreSQL that is not there: DatabaseError, the password nowhere, no request."""
    url = f"postgresql://syncer:s3cret-pw@127.0.0.1:{free_tcp_port}/usage"
    async with client_for(oxystats_emulator) as client:
        with pytest.raises(oxystats.DatabaseError, match=r"syncer:\*\*\*@127.0.0.1") as info:
            await oxystats.sync_usage(client, url, products="HB", since=SINCE)
        assert client.stats.requests == 0
    chain: BaseException | None = info.value
    while chain is not None:
        assert "s3cret-pw" not in f"{chain} {chain!r}"
        chain = chain.__cause__ or chain.__context__


async def test_a_sqlite_file_in_a_missing_directory_is_a_database_error(
    oxystats_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """A SQLite path that cannot be created: DatabaseError naming it."""
    async with client_for(oxystats_emulator) as client:
        with pytest.raises(oxystats.DatabaseError, match="nowhere"):
            await oxystats.sync_usage(
                client, f"{tmp_path}/nowhere/usage.sqlite", products="HB", since=SINCE
            )


# -- what it needs installed ----------------------------------------------------------------


def test_import_oxystats_does_not_import_sqlalchemy() -> None:
    """SQLAlchemy is imported by a sync only; without it, the error names the extra."""
    code = (
        "import sys, asyncio, oxystats\n"
        "assert 'sqlalchemy' not in sys.modules\n"
        "sys.modules['sqlalchemy'] = None\n"
        "async def main():\n"
        "    async with oxystats.AsyncClient('k') as client:\n"
        "        await oxystats.sync_usage(client, 'x.sqlite', products='HB')\n"
        "try:\n"
        "    asyncio.run(main())\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'oxystats[sync]'" in done.stdout


def test_group_by_default_is_day_and_target() -> None:
    """The library and the command line default to DAY x TARGET, the grouping of the docs."""
    default = inspect.signature(oxystats.sync_usage).parameters["group_by"].default
    assert default == (GroupBy.DAY, GroupBy.TARGET)


# -- the documentation tells the truth ------------------------------------------------------

DOCS = Path(__file__).parent.parent / "docs" / "sync.md"


def documented_schema(table: str) -> dict[str, tuple[str, str]]:
    """docs/sync.md's table of ``table``'s columns: name -> (PostgreSQL type, SQLite type)."""
    section = DOCS.read_text(encoding="utf-8").split(f"### `{table}`\n", 1)[1].split("\n#", 1)[0]
    columns = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            # A type cell may add a note after the type: `DATE NOT NULL` (text ...).
            name, postgresql, sqlite = (cell.split("` (")[0].strip("`") for cell in cells[:3])
            columns[name] = (postgresql, sqlite)
    return columns


def documented_queries() -> list[str]:
    """Every SQL statement of docs/sync.md but the CREATE TABLE shown as an example."""
    blocks = DOCS.read_text(encoding="utf-8").split("```sql\n")[1:]
    statements = [s.strip() for block in blocks for s in block.split("```")[0].split(";")]
    return [s for s in statements if s and not s.startswith("CREATE")]


async def test_the_documented_schema_is_the_schema(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """Every column of docs/sync.md's schema, in order, with its type and nullability."""
    oxystats_emulator.emulator.now = NOW
    database = new_database()
    async with client_for(oxystats_emulator) as client:
        await sync(client, database, since=date(2025, 3, 9), group_by=["DAY", "TARGET", "INSTANCE"])
    engine = engine_for(database)
    side = 0 if engine.dialect.name == "postgresql" else 1
    try:
        inspector = sa.inspect(engine)
        for table in ("usage", "sync_runs"):
            found = {}
            for column in inspector.get_columns(table):
                kind = column["type"].compile(dialect=engine.dialect)
                found[column["name"]] = kind + ("" if column["nullable"] else " NOT NULL")
            documented = {name: types[side] for name, types in documented_schema(table).items()}
            if table == "sync_runs":
                # The key's type is shown as the DDL writes it; the database reports the rest.
                assert documented.pop("id") in ("SERIAL", "INTEGER")
                assert found.pop("id").startswith("INTEGER")
            assert list(found.items()) == list(documented.items())
        usage_key = inspector.get_pk_constraint("usage")["constrained_columns"]
        assert usage_key == ["product", "day", "target", "instance"]
        assert [index["name"] for index in inspector.get_indexes("sync_runs")] == [
            "sync_runs_by_table"
        ]
    finally:
        engine.dispose()


async def test_the_documented_queries_run(
    oxystats_emulator: RunningEmulator, new_database: Callable[[], str]
) -> None:
    """The SQL of docs/sync.md runs as written, and finds rows."""
    oxystats_emulator.emulator.now = NOW
    database = new_database()
    async with client_for(oxystats_emulator) as client:
        await sync(client, database, since=date(2025, 3, 1), products=["HB", "DC"])
    statements = documented_queries()
    assert len(statements) >= 5
    for statement in statements:
        assert query(database, statement), statement
