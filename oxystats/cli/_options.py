"""The options the commands share: groupings, where output goes, and how to reach the API."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import click

from oxystats import (
    DEFAULT_BASE_URL,
    Account,
    AsyncClient,
    EventHook,
    GroupBy,
    Limit,
    UnknownInstanceWarning,
)
from oxystats.cli._destination import isatty
from oxystats.cli._group import API_KEY_ENV, F, debug_option
from oxystats.cli._logging import log_options, say
from oxystats.cli._output import format_for

__all__ = ["GROUP_BY", "ClientSettings", "client_options", "force_option", "output_option"]

GROUP_BY = click.Choice([g.value for g in GroupBy], case_sensitive=False)

REDIS_URL_ENV = "OXYSTATS_REDIS_URL"


@attrs.frozen
class ClientSettings:
    """What the shared options say about the client to build."""

    api_key_file: Path | None
    base_url: str | None
    limit: Limit
    timeout: float
    max_retries: int
    deadline: float | None
    allow_insecure_http: bool
    quiet: bool
    backend: str
    redis_url: str | None = None
    account_name: str = "default"

    def read_key(self) -> str:
        """The API key, from ``--api-key-file`` or the environment; never printed."""
        if self.api_key_file is not None:
            try:
                key = self.api_key_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"cannot read --api-key-file {self.api_key_file}: {exc.strerror or exc}"
                ) from None
            if not key:
                raise ValueError(f"--api-key-file {self.api_key_file} is empty")
            return key
        key = os.environ.get(API_KEY_ENV, "").strip()
        if not key:
            raise ValueError(f"no API key: set {API_KEY_ENV} or pass --api-key-file FILE")
        return key

    def make_client(self, *, event_hooks: Sequence[EventHook] = ()) -> AsyncClient:
        """The client, checked now, before any event loop or request: bad options exit 2."""
        # With --redis-url, the limits are shared with every process using the same
        # Redis and account name (other runs, web workers, cron jobs).
        account = (
            None
            if self.redis_url is None
            else Account(redis_url=self.redis_url, name=self.account_name)
        )
        return AsyncClient(
            self.read_key(),
            base_url=self.base_url,
            timeout=self.timeout,
            max_retries=self.max_retries,
            deadline=self.deadline,
            key_limit=self.limit,
            account=account,
            allow_insecure_http=self.allow_insecure_http,
            event_hooks=event_hooks,
        )


def output_option(command: F) -> F:
    """``-o/--output FILE``: where to write; see `oxystats.cli._destination`."""
    return click.option(
        "-o",
        "--output",
        metavar="FILE",
        help="Write to this file (new, or replaced with --force) instead of stdout; - is stdout.",
    )(command)


def force_option(command: F) -> F:
    """``--force``: let ``--output`` replace an existing regular file."""
    return click.option("--force", is_flag=True, help="Replace the --output file if it exists.")(
        command
    )


def client_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add where the API is, how to authenticate, how fast to go and how much to say.

    The command receives them as one `ClientSettings`, ``settings``.
    """
    options: list[Callable[[Any], Any]] = [
        click.option(
            "--api-key-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help=f"Read the API key from this file (default: ${API_KEY_ENV}).",
        ),
        click.option(
            "--base-url",
            metavar="URL",
            help=(
                "Where the API is, for example a local `oxystats emulator` "
                f"(default: $OXYLABS_BASE_URL, else {DEFAULT_BASE_URL})."
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
            help="Seconds for each attempt of a request, as a whole.",
        ),
        click.option(
            "--max-retries",
            type=click.IntRange(min=0),
            default=6,
            show_default=True,
            help="Retries of a request after 429, 5xx or a network failure.",
        ),
        click.option(
            "--deadline",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            metavar="SECONDS",
            help="Give up a backfill (in sync: each product's) after this long (default: never).",
        ),
        click.option(
            "--redis-url",
            metavar="URL",
            envvar=REDIS_URL_ENV,
            help=(
                "Share the rate limits through this Redis (redis://host:6379/0) with every "
                f"process using it and the same --account-name (default: ${REDIS_URL_ENV}; "
                "unset: limits kept in this process)."
            ),
        ),
        click.option(
            "--account-name",
            metavar="NAME",
            default="default",
            show_default=True,
            help="Which account's limits, in that Redis.",
        ),
        click.option(
            "--allow-insecure-http",
            is_flag=True,
            help="Allow an http:// --base-url that is not this machine (the key goes in clear).",
        ),
        click.option(
            "-q",
            "--quiet",
            is_flag=True,
            help="No progress bar; only warnings and errors on stderr.",
        ),
        click.option(
            "--backend",
            type=click.Choice(["asyncio", "trio"]),
            default="asyncio",
            hidden=True,
        ),
        log_options,
        debug_option,
    ]

    @functools.wraps(command)
    def with_settings(
        *args: Any,
        api_key_file: Path | None,
        base_url: str | None,
        rate: float,
        burst: int,
        in_flight: int,
        timeout: float,
        max_retries: int,
        deadline: float | None,
        allow_insecure_http: bool,
        quiet: bool,
        backend: str,
        redis_url: str | None,
        account_name: str,
        **kwargs: Any,
    ) -> Any:
        settings = ClientSettings(
            api_key_file=api_key_file,
            base_url=base_url,
            limit=Limit(rate, burst, in_flight),
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            allow_insecure_http=allow_insecure_http,
            quiet=quiet,
            backend=backend,
            redis_url=redis_url or None,
            account_name=account_name,
        )
        return command(*args, settings=settings, **kwargs)

    decorated: Callable[..., Any] = with_settings
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Show the library's warnings as ``oxystats: warning: ...`` lines on stderr."""

    def show(message: Warning | str, *args: Any, **kwargs: Any) -> None:
        say("warning", str(message))

    with warnings.catch_warnings():
        warnings.simplefilter("always", UnknownInstanceWarning)
        warnings.showwarning = show
        yield


def pick_format(fmt: str | None, output: str | None) -> str:
    """The output format asked for, else one from the file name or the terminal."""
    return fmt or format_for(output, interactive=isatty(sys.stdout))
