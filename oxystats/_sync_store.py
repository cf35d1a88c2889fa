"""The database side of a sync: the URL, the engine, the lock, the state and the writes.

Every method blocks: the orchestration runs each one in a worker thread, so
that fetching goes on meanwhile. Each write is one transaction, and each
window's days are replaced (deleted, then inserted) in the same transaction
as the `sync_runs` row that says so: whenever a sync stops, the table and
its record of what is in it agree.

SQLite (the standard library's driver) and PostgreSQL (psycopg 3) are
supported. SQLite runs in WAL mode, so the table can be read while a sync
writes, and every transaction starts with ``BEGIN IMMEDIATE``, so two writers
queue instead of deadlocking.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from oxystats._errors import DatabaseError
from oxystats._models import GroupBy, UsageRow
from oxystats._sync_lock import SCHEMA_KEY, AdvisoryLock, FileLock, RunLock
from oxystats._sync_plan import DayRange, ProductState, grouping_label
from oxystats._sync_schema import (
    COMPLETE,
    FAILED,
    INTERRUPTED,
    KEY_COLUMNS,
    RUNNING,
    grouping_of_columns,
    is_runs_table,
    runs_table,
    usage_table,
)

__all__: list[str] = []

_SQLITE_TIMEOUT = 30.0
"""Seconds a SQLite transaction waits for another writer (someone's open transaction)."""

_ERROR_TEXT_LIMIT = 500
"""`sync_runs.error` keeps this many characters of a failure's message."""


def database_url(database: object) -> sa.URL:
    """The SQLAlchemy URL of ``database``: a URL, or a path to a SQLite file.

    ``postgresql://`` (and ``postgres://``) without a driver means psycopg 3.

    Raises:
        ValueError: Not a URL SQLAlchemy reads, not SQLite or PostgreSQL, an
            asyncio driver, or an in-memory SQLite database.
        TypeError: Neither a string nor a path.
    """
    if isinstance(database, os.PathLike):
        database = os.fspath(database)
    if not isinstance(database, str):
        raise TypeError(
            f"database_url must be a URL string or a path, not {type(database).__name__}"
        )
    if not database.strip():
        raise ValueError("database_url must not be empty")
    if "://" not in database:
        url = sa.URL.create("sqlite", database=database)
    else:
        try:
            url = sa.make_url(database)
        except sa.exc.ArgumentError:
            raise ValueError(
                "database_url is not a database URL such as sqlite:///usage.sqlite or "
                "postgresql://user@host/db"
            ) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"sync supports SQLite and PostgreSQL databases, not {shown}")
    try:
        dialect = url.get_dialect()
    except sa.exc.NoSuchModuleError:
        raise ValueError(f"SQLAlchemy has no driver {url.drivername!r} ({shown})") from None
    if dialect.is_async:
        raise ValueError(
            f"{url.drivername} is an asyncio driver; sync runs its own threads: "
            f"use a blocking one, such as postgresql:// (psycopg) ({shown})"
        )
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
            raise ValueError("sync needs a SQLite file; an in-memory database would vanish")
        if url.query.get("uri"):
            raise ValueError(f"give the SQLite database as a path, not a file: URI ({shown})")
    return url


def _one_line(exc: sa.exc.SQLAlchemyError) -> str:
    # The driver's own message, without SQLAlchemy's statement dump and link.
    origin: BaseException = exc
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        origin = exc.orig
    lines = str(origin).strip().splitlines()
    return lines[0] if lines else type(origin).__name__


def _prepare_sqlite(engine: sa.Engine) -> None:
    """WAL, and ``BEGIN IMMEDIATE`` for every transaction (SQLAlchemy's documented recipe)."""

    @sa.event.listens_for(engine, "connect")
    def connect(dbapi_connection: Any, record: Any) -> None:
        # The driver's own transaction handling would begin late and never for
        # DDL; SQLAlchemy's "begin" event below begins every transaction instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            # Switching a new file to WAL needs it to itself, and SQLite does not
            # wait for that: another connection is writing it. WAL is for readers'
            # comfort, not for correctness, and the mode is kept in the file, so
            # whichever connection gets there first converts it for all.
            pass
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class SyncStore:
    """One database and one usage table, for the length of one sync.

    Args:
        url: The database, from `database_url`.
        table: The usage table's name.
        grouping: The table's grouping, DAY first.
    """

    def __init__(self, url: sa.URL, *, table: str, grouping: tuple[GroupBy, ...]) -> None:
        self.database = url.render_as_string(hide_password=True)
        self.table = table
        self._grouping = grouping
        self._metadata = sa.MetaData()
        self._usage = usage_table(self._metadata, table, grouping)
        self._runs = runs_table(self._metadata)
        self._postgresql = url.get_backend_name() == "postgresql"
        try:
            if self._postgresql:
                self._engine = sa.create_engine(url)
            else:
                self._engine = sa.create_engine(url, connect_args={"timeout": _SQLITE_TIMEOUT})
                _prepare_sqlite(self._engine)
        except ImportError as exc:
            extra = "postgresql" if self._postgresql else "sync"
            raise ImportError(
                f"{url.drivername} needs its driver: pip install 'oxystats[{extra}]' ({exc})"
            ) from exc
        self._lock: RunLock
        if self._postgresql:
            self._lock = AdvisoryLock(self._engine, table=table, database=self.database)
        else:
            path = Path(url.database or "")
            self._lock = FileLock(
                path.with_name(f"{path.name}.{table}.lock"), table=table, database=self.database
            )

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseError(f"database error in {self.database}: {_one_line(exc)}") from exc

    def lock(self) -> None:
        """Take the table's lock, or raise `SyncInProgressError`."""
        with self._errors():
            self._lock.acquire()

    def close(self) -> None:
        """Let the lock go and close every connection."""
        try:
            with self._errors():
                self._lock.release()
        finally:
            self._engine.dispose()

    def read_states(self, products: Sequence[str]) -> dict[str, ProductState | None]:
        """What earlier syncs left of each product in the table (`None`: nothing).

        Raises:
            ValueError: The table exists with another grouping, or the table or
                `sync_runs` is not one a sync made.
        """
        states: dict[str, ProductState | None] = dict.fromkeys(products)
        with self._errors(), self._engine.connect() as connection:
            inspector = sa.inspect(connection)
            if not inspector.has_table(self.table):
                return states
            self._check_usage_columns([c["name"] for c in inspector.get_columns(self.table)])
            runs = self._runs
            if not inspector.has_table(runs.name):
                return states
            if not is_runs_table([c["name"] for c in inspector.get_columns(runs.name)]):
                raise ValueError(
                    f"{self.database} has a table {runs.name!r} that no sync made; "
                    "sync into another database"
                )
            query = (
                sa.select(
                    runs.c.product,
                    sa.func.min(runs.c.first_day),
                    sa.func.max(runs.c.complete_through),
                )
                .where(
                    runs.c.usage_table == self.table,
                    runs.c.product.in_(products),
                    # Runs that committed nothing left nothing to build on.
                    runs.c.written_through.is_not(None),
                )
                .group_by(runs.c.product)
            )
            for product, first_day, complete in connection.execute(query):
                states[product] = ProductState(first_day, complete)
        return states

    def _check_usage_columns(self, columns: list[str]) -> None:
        found = grouping_of_columns(columns)
        if found is None:
            raise ValueError(
                f"table {self.table!r} in {self.database} is not a usage table a sync made "
                f"(its columns: {', '.join(columns)}); pick another table"
            )
        if found != self._grouping:
            raise ValueError(
                f"table {self.table!r} in {self.database} is grouped by {grouping_label(found)}, "
                f"not {grouping_label(self._grouping)}: sync it with its own grouping, "
                "or into another table"
            )

    def begin_run(self, product: str, days: DayRange, as_of: datetime) -> int:
        """Create the tables if need be and record a new run; return its id.

        Runs of the table still marked running are marked interrupted: the
        lock says none of them is.
        """
        runs = self._runs
        with self._errors(), self._engine.begin() as connection:
            if self._postgresql:
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(SCHEMA_KEY)))
            self._metadata.create_all(connection, checkfirst=True)
            connection.execute(
                sa.update(runs)
                .where(runs.c.usage_table == self.table, runs.c.status == RUNNING)
                .values(status=INTERRUPTED)
            )
            inserted = connection.execute(
                sa.insert(runs).values(
                    usage_table=self.table,
                    product=product,
                    group_by=grouping_label(self._grouping),
                    status=RUNNING,
                    started_at=datetime.now(UTC),
                    as_of=as_of,
                    first_day=days.first,
                    last_day=days.last,
                    requests=0,
                    rows_written=0,
                )
            )
            key = inserted.inserted_primary_key
        run_id = None if key is None else key[0]
        if not isinstance(run_id, int):  # pragma: no cover - both dialects return an int
            raise DatabaseError(f"{self.database} gave the new run the id {run_id!r}")
        return run_id

    def replace_days(
        self,
        run_id: int,
        product: str,
        days: DayRange,
        rows: Sequence[UsageRow],
        *,
        complete_through: date | None,
        requests: int,
    ) -> None:
        """Replace the rows of ``product`` on ``days`` and record it, in one transaction."""
        usage, runs = self._usage, self._runs
        names = [KEY_COLUMNS[group] for group in self._grouping]
        records = []
        for row in rows:
            record: dict[str, Any] = dict(zip(names, row.grouped_by, strict=True))
            record["day"] = date.fromisoformat(record["day"])
            record.update(
                product=product,
                requests=row.requests,
                traffic_bytes=row.traffic_bytes,
                run_id=run_id,
            )
            records.append(record)
        progress: dict[str, Any] = {
            "written_through": days.last,
            "rows_written": runs.c.rows_written + len(records),
            "requests": requests,
        }
        if complete_through is not None:
            progress["complete_through"] = complete_through
        with self._errors(), self._engine.begin() as connection:
            connection.execute(
                sa.delete(usage).where(
                    usage.c.product == product, usage.c.day.between(days.first, days.last)
                )
            )
            if records:
                connection.execute(sa.insert(usage), records)
            connection.execute(sa.update(runs).where(runs.c.id == run_id).values(**progress))

    def complete_run(self, run_id: int, *, requests: int) -> None:
        """Record that a run fetched and wrote every day it meant to."""
        self._end_run(run_id, status=COMPLETE, requests=requests)

    def fail_run(self, run_id: int, *, requests: int, error: str) -> None:
        """Record that a run failed, and why; its committed windows stay."""
        self._end_run(run_id, status=FAILED, requests=requests, error=error)

    def interrupt_run(self, run_id: int, *, requests: int) -> None:
        """Record that a run was cancelled; its committed windows stay."""
        self._end_run(run_id, status=INTERRUPTED, requests=requests)

    def _end_run(
        self, run_id: int, *, status: str, requests: int, error: str | None = None
    ) -> None:
        runs = self._runs
        values: dict[str, Any] = {
            "status": status,
            "finished_at": datetime.now(UTC),
            "requests": requests,
        }
        if error is not None:
            values["error"] = error[:_ERROR_TEXT_LIMIT]
        with self._errors(), self._engine.begin() as connection:
            connection.execute(sa.update(runs).where(runs.c.id == run_id).values(**values))
