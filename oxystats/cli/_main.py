"""The ``oxystats`` command group and its entry point."""

from __future__ import annotations

from collections.abc import Sequence

import click

from oxystats.cli._demo import demo
from oxystats.cli._emulator import emulator
from oxystats.cli._exporter import exporter
from oxystats.cli._group import OxystatsGroup, debug_option
from oxystats.cli._instances import instances
from oxystats.cli._logging import log_options
from oxystats.cli._sync import sync
from oxystats.cli._usage import usage

__all__ = ["cli", "main"]


@click.group(cls=OxystatsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="oxystats", prog_name="oxystats")
@log_options
@debug_option
def cli() -> None:
    """Usage statistics from the Oxylabs Dashboard API: fanned out, rate-limited, resumable.

    Start with `oxystats demo`: a one-year backfill against a local emulator,
    with no key and no network.
    """


for _command in (demo, instances, usage, sync, exporter, emulator):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> None:
    """The console script's entry point."""
    cli.main(args=argv, prog_name="oxystats")
