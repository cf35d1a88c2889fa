"""The ``oxystats`` command: ``demo``, ``instances``, ``usage`` and ``emulator``.

Thin: it parses arguments, then hands over to `AsyncClient`, `_progress`,
`_output` and `_checkpoint`. Needs the ``cli`` extra (click and rich).

Expected failures print one line, ``oxystats: error: ...``, on stderr and exit
with 2 (bad arguments) or 1 (the API or the network failed); ``--debug``
shows the traceback instead. The API key is read from ``OXYLABS_API_KEY`` or
``--api-key-file`` and is never printed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import anyio
import click

from oxystats._checkpoint import Checkpoint
from oxystats._client import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    AsyncClient,
    FetchedPage,
    _check_api_key,
    _check_base_url,
)
from oxystats._errors import (
    APIConnectionError,
    AuthenticationError,
    OxystatsError,
    PermissionDeniedError,
    UnknownInstanceWarning,
)
from oxystats._frames import column_names
from oxystats._limits import Limit
from oxystats._merge import UsageMerger
from oxystats._models import GroupBy, UsagePage, UsageTotals
from oxystats._output import (
    FORMATS,
    RecordWriter,
    atomic_output,
    format_for,
    make_writer,
    usage_records,
)
from oxystats._progress import PageProgress, progress_enabled
from oxystats._query import UsageQuery

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

_DEBUG = {"on": False}


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _DEBUG["on"] = True


def _error(message: str) -> None:
    click.echo(f"oxystats: error: {' '.join(message.split())}", err=True)


def _describe(exc: BaseException) -> str:
    """One line for an expected failure; never the key (exceptions do not carry it)."""
    if isinstance(exc, AuthenticationError):
        said = f": {exc.server_message}" if exc.server_message else ""
        return f"the API key was refused (401{said}); check {API_KEY_ENV} or --api-key-file"
    if isinstance(exc, PermissionDeniedError):
        said = f": {exc.server_message}" if exc.server_message else ""
        return f"permission denied (403{said}); the key is missing or may not do this"
    if isinstance(exc, APIConnectionError):
        return f"cannot reach the API: {exc}"
    return str(exc) or type(exc).__name__


class _Group(click.Group):
    """The command group; turns expected failures into one line and an exit code."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        _DEBUG["on"] = False  # a new run; --debug (here or on the command) sets it again
        return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("oxystats: interrupted", err=True)
            raise click.exceptions.Exit(130) from None
        except click.UsageError as exc:
            if _DEBUG["on"]:
                raise
            hint = ""
            if exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            _error(exc.format_message() + hint)
            raise click.exceptions.Exit(exc.exit_code) from None
        except click.ClickException as exc:
            if _DEBUG["on"]:
                raise
            _error(exc.format_message())
            raise click.exceptions.Exit(exc.exit_code) from None
        except (ValueError, TypeError) as exc:  # bad arguments, a foreign checkpoint
            if _DEBUG["on"]:
                raise
            _error(_describe(exc))
            raise click.exceptions.Exit(2) from None
        except BrokenPipeError:
            # The reader went away (``oxystats usage ... | head``): stop quietly.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(141) from None
        except (OxystatsError, ImportError, OSError) as exc:
            if _DEBUG["on"]:
                raise
            _error(_describe(exc))
            raise click.exceptions.Exit(1) from None


# -- parameters ---------------------------------------------------------------------------


if TYPE_CHECKING:  # click >= 8.2 types ParamType by its value; older click is not generic.
    _DateParamType = click.ParamType[date | datetime]
else:
    _DateParamType = click.ParamType


class DateOrDatetime(_DateParamType):
    """``YYYY-MM-DD`` (a whole UTC day) or an ISO 8601 datetime with an offset."""

    name = "DATE"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> date | datetime:
        if isinstance(value, date):
            return value
        text = str(value).strip()
        if "T" not in text.upper() and " " not in text:
            try:
                return date.fromisoformat(text)
            except ValueError:
                pass
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{value!r} is neither a date (YYYY-MM-DD) nor an ISO 8601 datetime "
                "(YYYY-MM-DDTHH:MM:SS+HH:MM)",
                param,
                ctx,
            )
        if parsed.utcoffset() is None:
            self.fail(
                f"{value!r} has no UTC offset; add one (Z or +HH:MM) or give a date YYYY-MM-DD",
                param,
                ctx,
            )
        return parsed


DATE = DateOrDatetime()
GROUP_BY = click.Choice([g.value for g in GroupBy], case_sensitive=False)


def _debug_option(command: F) -> F:
    return click.option(
        "--debug",
        is_flag=True,
        is_eager=True,
        expose_value=False,
        callback=_set_debug,
        help="Show tracebacks instead of one-line errors.",
    )(command)


def _common_options(command: F) -> F:
    """Where the API is, how to authenticate, how fast to go, how much to say."""
    options = [
        click.option(
            "--api-key-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help=f"Read the API key from this file (default: ${API_KEY_ENV}).",
        ),
        click.option(
            "--base-url",
            metavar="URL",
            help=(
                f"Where the API is, for example a local `oxystats emulator` "
                f"(default: ${BASE_URL_ENV}, else {DEFAULT_BASE_URL})."
            ),
        ),
        click.option(
            "--rate",
            type=click.FloatRange(min=0, min_open=True),
            default=10.0,
            show_default=True,
            help="Requests per second for this key.",
        ),
        click.option(
            "--burst",
            type=click.IntRange(min=1),
            default=10,
            show_default=True,
            help="Requests that may start at once after a quiet spell.",
        ),
        click.option(
            "--in-flight",
            type=click.IntRange(min=1),
            default=10,
            show_default=True,
            help="Requests outstanding at once.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=30.0,
            show_default=True,
            help="Seconds per request.",
        ),
        click.option(
            "--max-retries",
            type=click.IntRange(min=0),
            default=6,
            show_default=True,
            help="Retries of a request after 429, 5xx or a network failure.",
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
        click.option(
            "--backend",
            type=click.Choice(["asyncio", "trio"]),
            default="asyncio",
            hidden=True,
        ),
        _debug_option,
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _read_key(api_key_file: Path | None) -> str:
    if api_key_file is not None:
        try:
            key = api_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(
                f"cannot read --api-key-file {api_key_file}: {exc.strerror or exc}"
            ) from None
        if not key:
            raise ValueError(f"--api-key-file {api_key_file} is empty")
        return key
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise ValueError(f"no API key: set {API_KEY_ENV} or pass --api-key-file FILE")
    return key


def _client_factory(
    api_key_file: Path | None,
    base_url: str | None,
    rate: float,
    burst: int,
    in_flight: int,
    timeout: float,
    max_retries: int,
) -> tuple[Callable[[], AsyncClient], str]:
    """A maker of the client (to call inside the event loop), and the URL it will use."""
    key = _read_key(api_key_file)
    limit = Limit(rate, burst, in_flight)
    # Check the arguments now, before any loop or request: errors exit with 2.
    _check_api_key(key)
    base_url = _check_base_url(base_url)

    def make() -> AsyncClient:
        # Called inside the event loop: the connection pool belongs to it.
        return AsyncClient(
            key, base_url=base_url, timeout=timeout, max_retries=max_retries, key_limit=limit
        )

    return make, base_url


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    def show(message: Warning | str, *args: Any, **kwargs: Any) -> None:
        click.echo(f"oxystats: warning: {message}", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("always", UnknownInstanceWarning)
        warnings.showwarning = show
        yield


def _pick_format(fmt: str | None, output: str | None) -> str:
    return fmt or format_for(output, interactive=_isatty(sys.stdout))


def _isatty(stream: IO[Any]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- the group ----------------------------------------------------------------------------


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="oxystats", prog_name="oxystats")
@_debug_option
def cli() -> None:
    """Usage statistics from the Oxylabs Dashboard API: fanned out, rate-limited, resumable.

    Start with `oxystats demo`: a one-year backfill against a local emulator,
    with no key and no network.
    """


def main(argv: Sequence[str] | None = None) -> None:
    """The console script's entry point."""
    cli.main(args=argv, prog_name="oxystats")


# -- instances ----------------------------------------------------------------------------


@cli.command()
@click.option(
    "--product", "products", multiple=True, metavar="PRODUCT", help="Only these (repeatable)."
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json", "jsonl"]), help="Output format."
)
@click.option("-o", "--output", metavar="FILE", help="Write here instead of standard output.")
@_common_options
def instances(
    products: tuple[str, ...],
    fmt: str | None,
    output: str | None,
    api_key_file: Path | None,
    base_url: str | None,
    rate: float,
    burst: int,
    in_flight: int,
    timeout: float,
    max_retries: int,
    quiet: bool,
    backend: str,
) -> None:
    """List the product instances the key may see."""
    fmt = _pick_format(fmt, output)
    if fmt == "parquet":
        raise click.BadParameter("parquet is for usage only", param_hint="'--format'")
    make, _ = _client_factory(api_key_file, base_url, rate, burst, in_flight, timeout, max_retries)

    async def fetch() -> list[tuple[str, str, str, str]]:
        async with make() as client:
            found = await client.instances(products or None)
        return [(i.uuid, i.name, i.status, i.product) for i in found]

    records = anyio.run(fetch, backend=backend)
    with atomic_output(output) as stream:
        writer = make_writer(fmt, stream, ["uuid", "name", "status", "product"], title="instances")
        writer.write(records)
        writer.close()


# -- usage ----------------------------------------------------------------------------------


class _UsageSink:
    """Pages in, rows out: merged (summed by key, like `AsyncClient.usage`) or raw.

    Raw rows come out in (window, page, row) order whatever order pages arrive
    in: a page that arrives early waits for the ones before it.
    """

    def __init__(self, writer: RecordWriter, grouping: tuple[GroupBy, ...], merge: bool) -> None:
        self._writer = writer
        self._grouping = grouping
        self._merger = UsageMerger(grouping) if merge else None
        self._waiting: dict[tuple[int, int], UsagePage] = {}
        self._next = (0, 1)
        self._requests = 0
        self._traffic = 0
        self.rows = 0

    def add(self, window_index: int, number: int, page: UsagePage) -> None:
        if number == 1:
            self._requests += page.totals.requests
            self._traffic += page.totals.traffic_bytes
        if self._merger is not None:
            self._merger.add_rows(page, window_index, number)
            return
        self._waiting[(window_index, number)] = page
        while self._next in self._waiting:
            ready = self._waiting.pop(self._next)
            self._writer.write(usage_records(ready.data))
            self.rows += len(ready.data)
            window, current = self._next
            more = current < ready.pagination.total_pages
            self._next = (window, current + 1) if more else (window + 1, 1)

    def finish(self) -> UsageTotals:
        totals = UsageTotals(self._requests, self._traffic)
        if self._merger is not None:
            report = self._merger.report()
            self._writer.write(usage_records(report.rows))
            self.rows = len(report.rows)
        elif self._waiting:  # pragma: no cover - only if the server skipped a page
            for key in sorted(self._waiting):
                self._writer.write(usage_records(self._waiting.pop(key).data))
        footer = ["total"] + [""] * (len(self._grouping) - 1)
        self._writer.close([*footer, totals.requests, totals.traffic_bytes])
        return totals


def _fingerprint_arguments(query: UsageQuery, base_url: str) -> dict[str, Any]:
    return {
        "product": query.product,
        "date_from": query.start.isoformat(),
        "date_to": query.end.isoformat(),
        "group_by": [g.value for g in query.grouping],
        "instances": list(query.instances) if query.instances else None,
        "base_url": base_url.rstrip("/"),
    }


@cli.command()
@click.option("--product", required=True, metavar="PRODUCT", help="HB, DC, or another product.")
@click.option(
    "--from", "date_from", type=DATE, required=True, help="Start, inclusive (UTC day or ISO 8601)."
)
@click.option("--to", "date_to", type=DATE, required=True, help="End, inclusive (UTC day or ISO).")
@click.option(
    "--group-by",
    "group_by",
    type=GROUP_BY,
    multiple=True,
    default=("DAY",),
    show_default=True,
    help="DAY, TARGET or INSTANCE; repeat for several, in order.",
)
@click.option(
    "--instance", "instance_ids", multiple=True, metavar="UUID", help="Only these (repeatable)."
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Output format.")
@click.option("-o", "--output", metavar="FILE", help="Write here instead of standard output.")
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite file that makes the run resumable: rerun the same command to continue.",
)
@click.option(
    "--no-merge",
    is_flag=True,
    help="Raw per-window rows (a key may repeat across 31-day windows), streamed as they come.",
)
@_common_options
def usage(
    product: str,
    date_from: date | datetime,
    date_to: date | datetime,
    group_by: tuple[str, ...],
    instance_ids: tuple[str, ...],
    fmt: str | None,
    output: str | None,
    checkpoint: Path | None,
    no_merge: bool,
    api_key_file: Path | None,
    base_url: str | None,
    rate: float,
    burst: int,
    in_flight: int,
    timeout: float,
    max_retries: int,
    quiet: bool,
    backend: str,
) -> None:
    """Usage of one product over any range, grouped by day, target and/or instance.

    Rows are merged like `AsyncClient.usage` (summed by key across the 31-day
    windows) unless --no-merge. Columns: the groupings in order, then
    requests and traffic_bytes.
    """
    query = UsageQuery.build(product, date_from, date_to, group_by, instance_ids or None)
    fmt = _pick_format(fmt, output)
    make, base_url = _client_factory(
        api_key_file, base_url, rate, burst, in_flight, timeout, max_retries
    )
    windows = query.windows()
    store = None
    if checkpoint is not None:
        store = Checkpoint(checkpoint, _fingerprint_arguments(query, base_url))
    show = progress_enabled(quiet)
    with contextlib.ExitStack() as stack:
        if store is not None:
            stack.enter_context(store)
        stack.enter_context(_warnings_as_lines())
        stream = stack.enter_context(atomic_output(output, binary=fmt == "parquet"))
        title = f"{query.product} usage, {query.start.isoformat()} to {query.end.isoformat()}"
        writer = make_writer(
            fmt,
            stream,
            column_names(query.grouping),
            grouping=query.grouping,
            title=title,
        )
        sink = _UsageSink(writer, query.grouping, merge=not no_merge)
        done = store.done() if store is not None else {}
        started = time.monotonic()

        async def fetch() -> tuple[int, int, int]:
            async with make() as client:
                with PageProgress(
                    windows=len(windows),
                    stats=lambda: client.stats,
                    enabled=show,
                    done=done,
                    description=f"{query.product} usage",
                ) as progress:
                    pages = client.iter_usage_pages(
                        query.product,
                        query.start,
                        query.end,
                        query.grouping,
                        query.instances,
                        done=done,
                    )
                    async with contextlib.aclosing(pages):
                        async for fetched in pages:
                            _take(fetched, store, sink)
                            progress.page(fetched)
                stats = client.stats
            return stats.requests, stats.retries, stats.rate_limited

        try:
            sent, retries, limited = anyio.run(fetch, backend=backend)
        except KeyboardInterrupt:
            if store is not None:
                saved = len(store.done())
                click.echo(
                    f"oxystats: interrupted; {saved} page(s) saved in {store.path}: "
                    "run the same command again to resume",
                    err=True,
                )
                raise click.exceptions.Exit(130) from None
            raise
        if store is not None:
            for stored in store.pages():
                page = store.as_usage_page(stored, query.grouping)
                sink.add(stored.window_index, stored.page_number, page)
        sink.finish()
    if show:
        click.echo(
            f"oxystats: {sink.rows:,} rows from {len(windows)} window(s); {sent} request(s) sent "
            f"({len(done)} page(s) from the checkpoint), {retries} retries, "
            f"{limited} x 429, in {time.monotonic() - started:.1f} s",
            err=True,
        )


def _take(fetched: FetchedPage, store: Checkpoint | None, sink: _UsageSink) -> None:
    if store is not None:
        store.add(fetched)  # written out from the checkpoint at the end, in order
    else:
        sink.add(fetched.window_index, fetched.number, fetched.page)


# -- demo -----------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    default=365,
    show_default=True,
    help="How many days from 2025-01-01 to fetch (shorter is quicker).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--backend", type=click.Choice(["asyncio", "trio"]), default="asyncio", hidden=True)
@_debug_option
def demo(days: int, quiet: bool, backend: str) -> None:
    """A one-year backfill (HB, by day and target) against a local emulator: no key, no network.

    The emulator enforces the documented limits (10 requests per second per
    key) with 40 ms of latency; the client uses its defaults. The summary
    compares the wall time with the physical bound: N requests at 10 per
    second cannot take less than (N - burst) / 10 s plus one round trip.
    """
    from oxystats._demo import run_demo

    run_demo(days=days, quiet=quiet, backend=backend)


# -- emulator -------------------------------------------------------------------------------


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def emulator(args: tuple[str, ...]) -> None:
    """Serve the Dashboard API emulator on 127.0.0.1 (see `oxystats emulator --help`).

    Options: --port N (0 picks a free one), --documented-limits, --latency S,
    --error-500 P, --error-503 P, --spurious-429 P, --drop-connection P,
    --malformed-body P, dataset and key options. Stop it with Ctrl+C.
    """
    try:
        from oxystats.emulator.__main__ import main as serve_emulator
    except ImportError as exc:
        raise ImportError(
            f"oxystats emulator needs the emulator extra: pip install 'oxystats[emulator]' ({exc})"
        ) from exc
    code = serve_emulator(list(args), prog="oxystats emulator")
    if code:
        raise click.exceptions.Exit(code)
