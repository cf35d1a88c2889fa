"""``oxystats emulator``: the Dashboard API emulator's own command line, under ``oxystats``."""

from __future__ import annotations

import click

__all__ = ["emulator"]


@click.command(
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
        from oxystats.emulator import main as serve_emulator
    except ImportError as exc:
        raise ImportError(
            f"oxystats emulator needs the emulator extra: pip install 'oxystats[emulator]' ({exc})"
        ) from exc
    code = serve_emulator(list(args), prog="oxystats emulator")
    if code:
        raise click.exceptions.Exit(code)
