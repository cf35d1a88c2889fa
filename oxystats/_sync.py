"""`sync_usage`: keep a database table of usage current, one scheduled run after another.

For each product: read what earlier syncs left in the table, plan the days
to fetch (`_sync_plan`), stream their pages while the database works, and
replace each window's days as soon as the window is whole (`_sync_windows`),
in one transaction with the `sync_runs` row that records it (`_sync_store`).

The database side blocks, so it runs in worker threads (`anyio.to_thread`):
the event loop goes on fetching meanwhile, on asyncio and on trio alike.
SQLAlchemy is imported only when a sync runs, so ``import oxystats`` does not
need it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import attrs

from oxystats._client import AsyncClient
from oxystats._errors import OxystatsError
from oxystats._models import GroupBy
from oxystats._query import UsageQuery
from oxystats._streams import PageStream
from oxystats._sync_plan import (
    DEFAULT_LOOKBACK,
    DEFAULT_TABLE,
    DayRange,
    SyncArguments,
    check_sync_arguments,
    complete_through,
    days_to_fetch,
    window_days,
)
from oxystats._sync_windows import WindowAssembler
from oxystats._types import Grouping, ProductLike

if TYPE_CHECKING:
    from collections.abc import Iterable

    from oxystats._sync_store import SyncStore

__all__ = ["SyncResult", "SyncRun", "sync_usage"]

logger = logging.getLogger("oxystats")


@attrs.frozen
class SyncRun:
    """What one sync did for one product: its row of the ``sync_runs`` table."""

    run_id: int
    """The row's ``id`` in ``sync_runs``; the usage rows it wrote carry it as ``run_id``."""
    product: str
    """The product."""
    first_day: date
    """The first UTC day fetched and replaced."""
    last_day: date
    """The last UTC day fetched and replaced: today (UTC) as of the sync."""
    complete_through: date | None
    """The last day fetched after it had ended (UTC), or `None` if every day was today.

    The next sync fetches again from the day after it, minus its lookback.
    """
    requests: int
    """Requests the client sent for this product, retries included."""
    rows: int
    """Rows written to the usage table."""


@attrs.frozen
class SyncResult:
    """What [`sync_usage`][oxystats.sync_usage] did, one [`SyncRun`][oxystats.SyncRun] a product."""

    table: str
    """The usage table."""
    database: str
    """The database, as a URL with any password hidden."""
    as_of: datetime
    """The sync's "now", in UTC: the end of what it fetched."""
    runs: tuple[SyncRun, ...]
    """One per product, in the order given."""

    @property
    def requests(self) -> int:
        """Requests sent, over every product."""
        return sum(run.requests for run in self.runs)

    @property
    def rows(self) -> int:
        """Rows written, over every product."""
        return sum(run.rows for run in self.runs)


def _open_store(database_url: str | os.PathLike[str], arguments: SyncArguments) -> SyncStore:
    """Check the URL and build the store (nothing is connected yet); SQLAlchemy is imported here."""
    try:
        from oxystats._sync_store import SyncStore
        from oxystats._sync_store import database_url as check_url
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "sqlalchemy":
            raise
        raise ImportError("sync_usage needs SQLAlchemy: pip install 'oxystats[sync]'") from exc
    url = check_url(database_url)
    return SyncStore(url, table=arguments.table, grouping=arguments.grouping)


async def sync_usage(
    client: AsyncClient,
    database_url: str | os.PathLike[str],
    *,
    products: ProductLike | Iterable[ProductLike],
    group_by: Grouping = (GroupBy.DAY, GroupBy.TARGET),
    since: date | None = None,
    lookback: timedelta = DEFAULT_LOOKBACK,
    table: str = DEFAULT_TABLE,
    now: datetime | None = None,
) -> SyncResult:
    """Bring a database table of daily usage up to date: fetch what is new, replace it.

    ```python
    async with oxystats.AsyncClient() as client:
        result = await oxystats.sync_usage(
            client, "usage.sqlite", products=["HB"], since=date(2024, 1, 1)
        )
    ```

    A product's first sync backfills from ``since``. Every later sync
    fetches again from its last complete day minus ``lookback`` up to now,
    and replaces those days' rows, so each day's figures converge to the
    API's final numbers and nothing is counted twice. Days are whole UTC
    days; the table has one row per product, day and key of the grouping
    (its schema and ``sync_runs`` are described in the "Keep a database in
    sync" page). Each window of at most 31 days is replaced in one
    transaction, in order: a sync stopped at any point, even killed, leaves
    whole days, and the next sync completes the job.

    Only one sync of a table runs at a time: another one refuses at once
    with [`SyncInProgressError`][oxystats.SyncInProgressError], having done
    nothing. Products are synced one after the other; a failure stops the
    sync, keeps what was written, and is raised as itself.

    Needs the ``sync`` extra (SQLAlchemy); PostgreSQL needs ``postgresql``.

    Args:
        client: The client to fetch with (its limits, retries and key).
        database_url: A SQLite file as a path (created if missing), or a
            SQLAlchemy URL: ``sqlite:///usage.sqlite``,
            ``postgresql://user@host/db`` (psycopg 3).
        products: One product or several, such as ``"HB"`` or ``["HB", "DC"]``.
        group_by: DAY, plus TARGET and/or INSTANCE; the table keeps the
            grouping of its first sync.
        since: The first day to backfill, for a product the table has no
            usage of yet; ignored afterwards, so a scheduled job can always
            pass it.
        lookback: Complete days fetched again by each later sync (recent
            usage is still being counted); whole days, 0 or more.
        table: The usage table: lowercase letters, digits and underscores.
        now: The sync's "now" (a timezone-aware `datetime`); `None` reads the
            clock. Today (UTC) is always fetched; days before it are complete.

    Returns:
        What was fetched and written, per product.

    Raises:
        ValueError: An argument has the right type but a wrong value; or the
            table has another grouping, or a product was never synced and
            ``since`` is `None` (raised before any request, and before any row
            or run is written; a new SQLite file and its lock file may be left).
        TypeError: An argument has the wrong type.
        ImportError: The ``sync`` extra (or ``postgresql``'s driver) is missing.
        SyncInProgressError: Another sync of the table is running.
        DatabaseError: The database failed.
        OxystatsError: The API or the network failed; see the subclasses.
    """
    if not isinstance(client, AsyncClient):
        raise TypeError(f"client must be an oxystats.AsyncClient, not {type(client).__name__}")
    arguments = check_sync_arguments(
        products=products,
        group_by=group_by,
        since=since,
        lookback=lookback,
        table=table,
        now=now,
    )
    store = _open_store(database_url, arguments)
    runs: list[SyncRun] = []
    try:
        await anyio.to_thread.run_sync(store.lock)
        states = await anyio.to_thread.run_sync(store.read_states, arguments.products)
        plans = {
            product: days_to_fetch(
                states[product],
                product=product,
                table=arguments.table,
                since=arguments.since,
                lookback_days=arguments.lookback_days,
                today=arguments.today,
            )
            for product in arguments.products
        }
        for product in arguments.products:
            runs.append(await _sync_product(client, store, arguments, product, plans[product]))
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(store.close)
    return SyncResult(arguments.table, store.database, arguments.now, tuple(runs))


def _check_all_whole(assembler: WindowAssembler, windows: int, product: str) -> None:
    """Every window came whole, as the stream promised (a failure here is a bug)."""
    if assembler.handed_out != windows or assembler.waiting:  # pragma: no cover
        raise RuntimeError(f"{product}: {assembler.handed_out} of {windows} windows came whole")


async def _sync_product(
    client: AsyncClient, store: SyncStore, arguments: SyncArguments, product: str, days: DayRange
) -> SyncRun:
    """Fetch ``days`` of ``product`` and replace them, window by window, recorded as one run."""
    windows = UsageQuery.build(product, days.first, days.last, arguments.grouping).windows()
    for window in windows:
        window_days(window)  # whole days, or no request at all
    run_id = await anyio.to_thread.run_sync(store.begin_run, product, days, arguments.now)
    stream: PageStream | None = None

    def sent() -> int:
        # This stream's own requests: the client may serve other calls meanwhile.
        return 0 if stream is None else stream.requests

    assembler = WindowAssembler(arguments.grouping)
    rows = 0
    complete: date | None = None
    try:
        async with client.stream_usage_pages(
            product, days.first, days.last, arguments.grouping
        ) as stream:
            async for fetched in stream:
                for whole in assembler.add(fetched):
                    window_complete = complete_through(whole.days, arguments.today)
                    await anyio.to_thread.run_sync(
                        functools.partial(
                            store.replace_days,
                            run_id,
                            product,
                            whole.days,
                            whole.rows,
                            complete_through=window_complete,
                            requests=sent(),
                        )
                    )
                    rows += len(whole.rows)
                    complete = window_complete or complete
                    logger.debug(
                        "sync %s: %s %s: %d rows replaced",
                        store.table,
                        product,
                        whole.days,
                        len(whole.rows),
                        extra={"product": product, "days": str(whole.days)},
                    )
        _check_all_whole(assembler, len(windows), product)
    except Exception as exc:
        with anyio.CancelScope(shield=True), contextlib.suppress(OxystatsError):
            await anyio.to_thread.run_sync(
                functools.partial(
                    store.fail_run,
                    run_id,
                    requests=sent(),
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
        raise
    except BaseException:
        # Cancelled (or ^C): say so if the database still answers; if not, the
        # next sync marks the run interrupted anyway.
        with anyio.CancelScope(shield=True), contextlib.suppress(OxystatsError):
            await anyio.to_thread.run_sync(
                functools.partial(store.interrupt_run, run_id, requests=sent())
            )
        raise
    requests = sent()
    await anyio.to_thread.run_sync(functools.partial(store.complete_run, run_id, requests=requests))
    logger.debug(
        "sync %s: %s %s: complete, %d rows, %d requests",
        store.table,
        product,
        days,
        rows,
        requests,
        extra={"product": product, "days": str(days)},
    )
    return SyncRun(run_id, product, days.first, days.last, complete, requests, rows)
