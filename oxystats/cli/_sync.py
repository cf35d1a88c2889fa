"""``oxystats sync``: keep a database table of daily usage current, run after run."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import anyio
import click

from oxystats import SyncInProgressError, SyncResult, sync_usage
from oxystats.cli._dates import DATE
from oxystats.cli._group import error_line
from oxystats.cli._logging import command_logging, say
from oxystats.cli._options import GROUP_BY, ClientSettings, client_options

__all__ = ["IN_PROGRESS_EXIT", "sync"]

IN_PROGRESS_EXIT = 75
"""The exit status when another sync of the table is running (EX_TEMPFAIL: try again later)."""

DATABASE_ENV = "OXYSTATS_DATABASE_URL"
"""Where ``--db`` is read from when not given (keeps a password off the command line)."""


def _as_instant(value: date | datetime | None) -> datetime | None:
    # A bare day given as --now means its first second, in UTC.
    if value is None or isinstance(value, datetime):
        return value
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _summary(result: SyncResult, seconds: float) -> list[str]:
    lines = []
    for run in result.runs:
        complete = run.complete_through.isoformat() if run.complete_through else "none yet"
        lines.append(
            f"{run.product}: replaced {run.first_day}..{run.last_day} "
            f"({run.rows:,} rows, {run.requests} request(s)); complete through {complete}"
        )
    lines.append(
        f"synced table {result.table} in {result.database} "
        f"as of {result.as_of.isoformat().replace('+00:00', 'Z')} in {seconds:.1f} s"
    )
    return lines


@click.command()
@click.option(
    "--db",
    "database",
    required=True,
    envvar=DATABASE_ENV,
    metavar="PATH|URL",
    help=(f"A SQLite file (created if missing) or a postgresql:// URL (default: ${DATABASE_ENV})."),
)
@click.option(
    "--product",
    "products",
    required=True,
    multiple=True,
    metavar="PRODUCT",
    help="HB, DC, or another product; repeat for several.",
)
@click.option(
    "--group-by",
    "group_by",
    type=GROUP_BY,
    multiple=True,
    default=("DAY", "TARGET"),
    show_default=True,
    help="DAY, plus TARGET and/or INSTANCE; repeat for several. Fixed by a table's first sync.",
)
@click.option(
    "--since",
    type=DATE,
    help="The first day to backfill, for a product the table has no usage of yet "
    "(ignored afterwards, so a scheduled job may always pass it).",
)
@click.option(
    "--lookback",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    metavar="DAYS",
    help="Complete days fetched again by each later run (recent usage is still being counted).",
)
@click.option(
    "--table", default="usage", show_default=True, metavar="NAME", help="The usage table."
)
@click.option(
    "--now",
    type=DATE,
    help="Sync as if it were this instant, such as an emulator's clock "
    "(default: the current time).",
)
@client_options
def sync(
    database: str,
    products: tuple[str, ...],
    group_by: tuple[str, ...],
    since: date | datetime | None,
    lookback: int,
    table: str,
    now: date | datetime | None,
    settings: ClientSettings,
) -> None:
    """Keep a database table of daily usage current: fetch what is new, replace it.

    The first run backfills from --since; each later run fetches again from
    the last complete day minus --lookback, up to now, and replaces those
    days' rows in one transaction. Days are whole UTC days. Run it from cron
    or a systemd timer; -q prints nothing on success. Exits 75 when another
    sync of the table is running (it then did nothing).
    """
    client = settings.make_client()
    started = time.monotonic()

    async def run() -> SyncResult:
        async with client:
            return await sync_usage(
                client,
                database,
                products=products,
                group_by=group_by,
                since=since,
                lookback=timedelta(days=lookback),
                table=table,
                now=_as_instant(now),
            )

    # Retries and pauses are not silent under cron; -v, -vv and --log-format
    # json apply as to every command.
    with command_logging(quiet=settings.quiet, progress_bar=False):
        try:
            result = anyio.run(run, backend=settings.backend)
        except SyncInProgressError as exc:
            error_line(str(exc))
            raise click.exceptions.Exit(IN_PROGRESS_EXIT) from None
        if not settings.quiet:
            for line in _summary(result, time.monotonic() - started):
                say("info", line)
