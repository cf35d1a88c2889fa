"""``oxystats instances``: the product instances the key may see."""

from __future__ import annotations

import anyio
import click

from oxystats.cli._destination import Destination
from oxystats.cli._logging import command_logging
from oxystats.cli._options import (
    ClientSettings,
    client_options,
    force_option,
    output_option,
    pick_format,
)
from oxystats.cli._output import open_writer

__all__ = ["instances"]


@click.command()
@click.option(
    "--product", "products", multiple=True, metavar="PRODUCT", help="Only these (repeatable)."
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json", "jsonl"]), help="Output format."
)
@output_option
@force_option
@client_options
def instances(
    products: tuple[str, ...],
    fmt: str | None,
    output: str | None,
    force: bool,
    settings: ClientSettings,
) -> None:
    """List the product instances the key may see."""
    fmt = pick_format(fmt, output)
    if fmt == "parquet":
        raise click.BadParameter("parquet is for usage only", param_hint="'--format'")
    destination = Destination.check(output, force=force)
    with command_logging(quiet=settings.quiet, progress_bar=False):
        client = settings.make_client()

        async def fetch() -> list[tuple[str, str, str, str]]:
            async with client:
                found = await client.instances(products or None)
            return [(i.uuid, i.name, i.status, i.product) for i in found]

        records = anyio.run(fetch, backend=settings.backend)
    columns = ["uuid", "name", "status", "product"]
    with open_writer(destination, fmt, columns, title="instances") as writer:
        writer.write(records)
        writer.close()
