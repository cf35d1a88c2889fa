"""The emulator's command line: ``python -m oxystats.emulator`` and ``oxystats emulator``.

Example::

    python -m oxystats.emulator --port 8000 --documented-limits --latency 0.06 --error-500 0.1
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from datetime import date

from ._config import DEFAULT_ACCOUNT, DEFAULT_KEY, Dataset, EmulatorConfig, Faults, RateLimits
from ._server import serve


def _key(text: str) -> tuple[str, str]:
    key, _, account = text.partition(":")
    if not key:
        raise argparse.ArgumentTypeError("expected KEY or KEY:ACCOUNT")
    return key, account or DEFAULT_ACCOUNT


def _parser(prog: str = "python -m oxystats.emulator") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a local emulation of the Oxylabs Dashboard API.",
    )
    net = parser.add_argument_group("server")
    net.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1 only)")
    net.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one")
    net.add_argument("--http", choices=["auto", "h11", "httptools"], default="auto")
    net.add_argument("--log-level", default="warning")
    net.add_argument(
        "--key",
        dest="keys",
        action="append",
        type=_key,
        metavar="KEY[:ACCOUNT]",
        help=f"accept this API key (repeatable; default {DEFAULT_KEY}:{DEFAULT_ACCOUNT})",
    )
    data = parser.add_argument_group("data")
    defaults = Dataset()
    data.add_argument("--seed", type=int, default=defaults.seed, help="dataset seed")
    data.add_argument("--products", default=",".join(defaults.products), help="comma-separated")
    data.add_argument("--instances-per-product", type=int, default=defaults.instances_per_product)
    data.add_argument("--targets", type=int, default=defaults.targets)
    data.add_argument("--start", type=date.fromisoformat, default=defaults.start, help="UTC date")
    data.add_argument("--days", type=int, default=defaults.days)
    limits = parser.add_argument_group("rate limits")
    limits.add_argument(
        "--documented-limits",
        action="store_true",
        help="10/s and 10 in flight per key, 100/s and 100 in flight per account",
    )
    faults = parser.add_argument_group("faults (probabilities per request)")
    faults.add_argument("--fault-seed", type=int, default=0)
    faults.add_argument("--error-500", type=float, default=0.0)
    faults.add_argument("--error-503", type=float, default=0.0)
    faults.add_argument("--spurious-429", type=float, default=0.0)
    faults.add_argument("--drop-connection", type=float, default=0.0)
    faults.add_argument("--malformed-body", type=float, default=0.0)
    faults.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    faults.add_argument("--latency-jitter", type=float, default=0.0, help="+/- seconds")
    faults.add_argument("--retry-after", type=int, default=1, help="for spurious 429s")
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """The `EmulatorConfig` the parsed command line asks for."""
    return EmulatorConfig(
        dataset=Dataset(
            seed=args.seed,
            products=tuple(p for p in args.products.split(",") if p),
            instances_per_product=args.instances_per_product,
            targets=args.targets,
            start=args.start,
            days=args.days,
        ),
        keys=dict(args.keys or [(DEFAULT_KEY, DEFAULT_ACCOUNT)]),
        limits=RateLimits.documented() if args.documented_limits else RateLimits(),
        faults=Faults(
            seed=args.fault_seed,
            error_500=args.error_500,
            error_503=args.error_503,
            spurious_429=args.spurious_429,
            drop_connection=args.drop_connection,
            malformed_body=args.malformed_body,
            latency=args.latency,
            latency_jitter=args.latency_jitter,
            retry_after=args.retry_after,
        ),
    )


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Parse the command line and serve until interrupted.

    ``prog`` names the command in help and errors (``oxystats emulator`` reuses this).
    """
    parser = _parser() if prog is None else _parser(prog)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValueError, TypeError) as error:
        parser.error(str(error))

    def ready(url: str) -> None:
        accounts = sorted(set(config.keys.values()))
        # Keys are never printed: only how many there are and whose they are.
        print(f"oxystats emulator listening on {url}", flush=True)
        print(f"  {len(config.keys)} key(s) for {', '.join(accounts)}", file=sys.stderr)

    # Ctrl+C is how a foreground server is meant to stop: no traceback for it.
    with contextlib.suppress(KeyboardInterrupt):
        serve(
            config, args.host, args.port, http=args.http, log_level=args.log_level, on_ready=ready
        )
    return 0
